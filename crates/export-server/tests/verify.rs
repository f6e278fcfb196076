//! Offline verification (`export_verify`) of synthetic run outputs: directories and
//! bundles in every format, encrypted runs, and every kind of tampering the exit codes name.

#[path = "verify/hostile.rs"]
mod hostile;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use export_core::manifest::{ManifestItem, ManifestProfile, Snapshot};
use export_core::{checksums_txt, BundleFormat, Manifest, ProfileId, Sha256Digest, TenantId};
use export_server::keys::{generate_keys, GeneratedKey};
use export_signing::{
    provenance_statement, sign_envelope, KeyAlgorithm, ProvenanceInput, SigningKey, IN_TOTO_PAYLOAD_TYPE,
    MANIFEST_PAYLOAD_TYPE,
};
use export_verify::{render_text, verify, CheckStatus, Verdict, VerifyOptions};

const FORMATS: [BundleFormat; 3] = [BundleFormat::TarZst, BundleFormat::TarGz, BundleFormat::Zip];

/// What the synthetic run produces besides its data files and signed manifest.
#[derive(Clone)]
struct RunSpec {
    algorithm: KeyAlgorithm,
    bundle: Option<BundleFormat>,
    /// Encrypts a tar.zst bundle to this recipient and leaves no plaintext data file.
    encrypt_to: Option<age::x25519::Recipient>,
    provenance: bool,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            algorithm: KeyAlgorithm::Ed25519,
            bundle: None,
            encrypt_to: None,
            provenance: true,
        }
    }
}

struct Fixture {
    _root: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
    key: GeneratedKey,
}

impl Fixture {
    fn new(spec: RunSpec) -> Self {
        let root = tempfile::tempdir().unwrap();
        let key = generate_keys(spec.algorithm, &root.path().join("keys"), "signing").unwrap();
        let run = root.path().join("run");
        fs::create_dir(&run).unwrap();
        let fixture = Self {
            root: root.path().to_owned(),
            _root: root,
            run,
            key,
        };
        fixture.write_run(&spec);
        fixture
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_pkcs8_pem(&fs::read_to_string(&self.key.private_path).unwrap()).unwrap()
    }

    fn options(&self, target: &Path) -> VerifyOptions {
        VerifyOptions {
            target: target.to_owned(),
            keys: vec![self.key.public_path.clone()],
            provenance: None,
            identity: None,
            limits: Default::default(),
        }
    }

    fn verify_dir(&self) -> Verdict {
        verify(&self.options(&self.run))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.run.join(name)
    }

    fn write_run(&self, spec: &RunSpec) {
        let key = self.signing_key();
        // (path, bytes, target id)
        let data: [(&str, &[u8], &str); 2] = [
            (
                "advisory.json",
                br#"{"items":[{"digest":"sha256:00","id":"GO-2023-1840","kind":"advisory"}],"kind":"advisory","target":"advisory"}"#,
                "advisory",
            ),
            (
                "vex-osv.ndjson",
                b"{\"id\":\"CVE-2024-0001\",\"kind\":\"vex\"}\n{\"id\":\"CVE-2024-0002\",\"kind\":\"vex\"}\n",
                "vex:osv",
            ),
        ];
        let mut items = Vec::new();
        for (path, bytes, id) in data {
            fs::write(self.path(path), bytes).unwrap();
            let (format, media_type, records) = match path.rsplit_once('.') {
                Some((_, "ndjson")) => (
                    "ndjson",
                    "application/x-ndjson",
                    bytes.split(|b| *b == b'\n').count() - 1,
                ),
                _ => ("json", "application/json", 1),
            };
            items.push(ManifestItem {
                kind: id.split(':').next().unwrap().to_owned(),
                id: id.to_owned(),
                format: format.to_owned(),
                path: path.to_owned(),
                sha256: Sha256Digest::of(bytes),
                bytes: bytes.len() as u64,
                records: records as u64,
                media_type: media_type.to_owned(),
            });
        }
        let tenant = TenantId::parse("acme").unwrap();
        let manifest = Manifest::new(
            tenant.clone(),
            ManifestProfile {
                id: ProfileId::parse("export-profile::acme::nightly").unwrap(),
                revision: "3".into(),
            },
            serde_json::json!({"targets": ["advisory", "vex:osv"], "signing": true}),
            Snapshot {
                watermark: 42,
                items: 3,
            },
            items,
        );
        let manifest_bytes = manifest.to_bytes();
        fs::write(self.path("manifest.json"), &manifest_bytes).unwrap();
        let envelope = sign_envelope(&key, MANIFEST_PAYLOAD_TYPE, &manifest_bytes);
        fs::write(self.path("manifest.dsse.json"), envelope.envelope_bytes()).unwrap();
        self.rewrite_checksums();

        let mut subjects: Vec<(String, Sha256Digest)> = data
            .iter()
            .map(|(path, bytes, _)| ((*path).to_owned(), Sha256Digest::of(bytes)))
            .collect();
        subjects.push(("manifest.json".into(), Sha256Digest::of(&manifest_bytes)));

        if let Some(format) = spec
            .bundle
            .or(spec.encrypt_to.as_ref().map(|_| BundleFormat::TarZst))
        {
            let bundle = write_bundle(&self.run, format);
            if let Some(recipient) = &spec.encrypt_to {
                let sealed = encrypt(&bundle, recipient);
                let name = format!("{}.age", format.file_name());
                fs::write(self.path(&name), &sealed).unwrap();
                subjects.push((name, Sha256Digest::of(&sealed)));
                for (path, ..) in &data {
                    fs::remove_file(self.path(path)).unwrap();
                }
            } else {
                fs::write(self.path(format.file_name()), &bundle).unwrap();
                subjects.push((format.file_name().into(), Sha256Digest::of(&bundle)));
            }
        }
        if spec.provenance {
            self.write_provenance(&key, subjects);
        }
    }

    fn write_provenance(&self, key: &SigningKey, subjects: Vec<(String, Sha256Digest)>) {
        let statement = provenance_statement(&ProvenanceInput {
            run_id: "export-run::acme::2025-12-06::0001".into(),
            builder_id: "https://export-center.dev/builder".into(),
            builder_version: "0.1.0".into(),
            external_parameters: serde_json::json!({"targets": ["advisory", "vex:osv"]}),
            watermark: 42,
            started_on: Utc.with_ymd_and_hms(2025, 12, 6, 10, 0, 0).unwrap(),
            finished_on: Utc.with_ymd_and_hms(2025, 12, 6, 10, 0, 5).unwrap(),
            subjects,
        });
        let envelope = sign_envelope(key, IN_TOTO_PAYLOAD_TYPE, &statement);
        fs::write(self.path("provenance.dsse.json"), envelope.envelope_bytes()).unwrap();
    }

    /// Rewrites `checksums.txt` over whatever data files, manifest and envelope are there.
    fn rewrite_checksums(&self) {
        let mut entries = Vec::new();
        for name in [
            "advisory.json",
            "vex-osv.ndjson",
            "manifest.json",
            "manifest.dsse.json",
        ] {
            if let Ok(bytes) = fs::read(self.path(name)) {
                entries.push((name, Sha256Digest::of(&bytes)));
            }
        }
        fs::write(self.path("checksums.txt"), checksums_txt(entries)).unwrap();
    }

    fn age_identity(&self) -> (PathBuf, age::x25519::Recipient) {
        use age::secrecy::ExposeSecret as _;
        let identity = age::x25519::Identity::generate();
        let path = self.root.join(format!("identity-{}.txt", rand_suffix()));
        fs::write(
            &path,
            format!("# created: test\n{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        (path, identity.to_public())
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The run's bundle bytes: data files, manifest, envelope and checksums, sorted by path.
fn write_bundle(run: &Path, format: BundleFormat) -> Vec<u8> {
    let mut names: Vec<&str> = vec![
        "advisory.json",
        "checksums.txt",
        "manifest.dsse.json",
        "manifest.json",
        "vex-osv.ndjson",
    ];
    names.sort();
    let entries = names
        .into_iter()
        .map(|name| {
            let bytes = fs::read(run.join(name)).unwrap();
            let size = bytes.len() as u64;
            (
                name.to_owned(),
                Box::new(std::io::Cursor::new(bytes)) as Box<dyn std::io::Read + Send>,
                size,
            )
        })
        .collect();
    export_bundle::write_bundle(format, 1_765_015_200, entries, Vec::new()).unwrap()
}

fn encrypt(plain: &[u8], recipient: &age::x25519::Recipient) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).unwrap();
    writer.write_all(plain).unwrap();
    writer.finish().unwrap();
    out
}

fn check<'a>(verdict: &'a Verdict, name: &str) -> &'a export_verify::Check {
    verdict
        .checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no `{name}` check in\n{}", render_text(verdict)))
}

#[track_caller]
fn assert_exit(verdict: &Verdict, code: u8) {
    assert_eq!(verdict.exit_code, code, "\n{}", render_text(verdict));
}

#[track_caller]
fn assert_failed(verdict: &Verdict, name: &str, needle: &str) {
    let found = check(verdict, name);
    assert!(!found.ok, "`{name}` passed:\n{}", render_text(verdict));
    assert!(
        found.detail.contains(needle),
        "`{name}` detail lacks {needle:?}:\n{}",
        render_text(verdict)
    );
}

fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_complete_directory_verifies_with_both_algorithms() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256] {
        let fixture = Fixture::new(RunSpec {
            algorithm,
            ..RunSpec::default()
        });
        let verdict = fixture.verify_dir();
        assert_exit(&verdict, 0);
        for name in [
            "key",
            "checksums",
            "manifest",
            "rerun-hash",
            "signature",
            "provenance",
            "provenance-subjects",
        ] {
            assert_eq!(
                check(&verdict, name).status,
                CheckStatus::Ok,
                "{}",
                render_text(&verdict)
            );
        }
        let text = render_text(&verdict);
        assert!(
            text.contains("ok    checksums            4 files match\n"),
            "{text}"
        );
        assert!(text.contains("2 of 2 items match"), "{text}");
        assert!(text.ends_with("verified\n"), "{text}");
        assert!(text.contains(&fixture.key.keyid), "{text}");
    }
}

#[test]
fn the_verdict_serializes_for_json_output() {
    let fixture = Fixture::new(RunSpec::default());
    fs::remove_file(fixture.path("vex-osv.ndjson")).unwrap();
    let json = serde_json::to_value(fixture.verify_dir()).unwrap();
    assert_eq!(json["exitCode"], 2);
    let checksums = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "checksums")
        .unwrap();
    assert_eq!(checksums["ok"], false);
    assert_eq!(checksums["status"], "fail");
    assert_eq!(checksums["code"], 2);
    assert!(checksums["detail"]
        .as_str()
        .unwrap()
        .contains("vex-osv.ndjson is missing"));
}

#[test]
fn a_directory_without_provenance_verifies_and_says_so() {
    let fixture = Fixture::new(RunSpec {
        provenance: false,
        ..RunSpec::default()
    });
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 0);
    assert_eq!(check(&verdict, "provenance").status, CheckStatus::Skip);
}

#[test]
fn every_bundle_format_verifies_as_a_directory_and_as_a_file() {
    for format in FORMATS {
        let fixture = Fixture::new(RunSpec {
            bundle: Some(format),
            ..RunSpec::default()
        });
        let verdict = fixture.verify_dir();
        assert_exit(&verdict, 0);
        assert!(check(&verdict, "bundle")
            .detail
            .contains("5 entries match the directory"));
        assert!(check(&verdict, "provenance-subjects")
            .detail
            .contains("the bundle's included"));

        // The bundle file alone, with the provenance beside it.
        let verdict = verify(&fixture.options(&fixture.path(format.file_name())));
        assert_exit(&verdict, 0);
        assert!(
            check(&verdict, "bundle").detail.contains("(nothing extracted)"),
            "{}",
            render_text(&verdict)
        );
        assert!(check(&verdict, "provenance-subjects")
            .detail
            .contains("4 of 4 subjects match"));

        // Moved elsewhere, with the provenance passed explicitly.
        let elsewhere = fixture.root.join(format!("copy-{}", format.file_name()));
        fs::copy(fixture.path(format.file_name()), &elsewhere).unwrap();
        let mut options = fixture.options(&elsewhere);
        let verdict = verify(&options);
        assert_exit(&verdict, 0);
        assert_eq!(check(&verdict, "provenance").status, CheckStatus::Skip);
        options.provenance = Some(fixture.path("provenance.dsse.json"));
        let verdict = verify(&options);
        // Renamed after download, it is still checked as the run's bundle subject.
        assert_exit(&verdict, 0);
        assert_eq!(check(&verdict, "provenance-subjects").status, CheckStatus::Ok);
        assert!(check(&verdict, "provenance-subjects")
            .detail
            .contains("4 of 4 subjects match"));
        // And a renamed bundle whose bytes differ fails that subject.
        let mut bytes = fs::read(&elsewhere).unwrap();
        bytes.push(0);
        fs::write(&elsewhere, bytes).unwrap();
        let verdict = verify(&options);
        assert_failed(&verdict, "provenance-subjects", "does not match");
    }
}

#[test]
fn a_flipped_byte_in_a_data_file_exits_2() {
    let fixture = Fixture::new(RunSpec::default());
    flip_byte(&fixture.path("advisory.json"));
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 2);
    assert_failed(&verdict, "checksums", "advisory.json does not match");
    assert_failed(&verdict, "manifest", "advisory.json does not match");
    assert_failed(
        &verdict,
        "provenance-subjects",
        "subject advisory.json does not match",
    );
    assert!(check(&verdict, "signature").ok);
    assert!(render_text(&verdict).contains("FAIL  checksums "));
}

#[test]
fn a_flipped_byte_inside_a_bundle_is_caught() {
    for format in FORMATS {
        let fixture = Fixture::new(RunSpec {
            bundle: Some(format),
            provenance: false,
            ..RunSpec::default()
        });
        // Rebuild the bundle over a tampered data file, keeping the directory's checksums.
        let original = fs::read(fixture.path("vex-osv.ndjson")).unwrap();
        flip_byte(&fixture.path("vex-osv.ndjson"));
        let tampered = write_bundle(&fixture.run, format);
        fs::write(fixture.path("vex-osv.ndjson"), original).unwrap();
        let bundle = fixture.path(format.file_name());
        fs::write(&bundle, tampered).unwrap();

        let verdict = verify(&fixture.options(&bundle));
        assert_exit(&verdict, 2);
        assert_failed(&verdict, "checksums", "vex-osv.ndjson does not match");

        let verdict = fixture.verify_dir();
        assert_exit(&verdict, 2);
        assert_failed(&verdict, "bundle", "vex-osv.ndjson in");
    }
}

#[test]
fn a_missing_data_file_exits_2() {
    let fixture = Fixture::new(RunSpec::default());
    fs::remove_file(fixture.path("vex-osv.ndjson")).unwrap();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 2);
    assert_failed(&verdict, "checksums", "vex-osv.ndjson is missing");
    assert_failed(&verdict, "manifest", "vex-osv.ndjson is missing");
    assert_failed(&verdict, "provenance-subjects", "vex-osv.ndjson is missing");
}

#[test]
fn a_data_file_left_out_of_the_checksums_exits_2() {
    let fixture = Fixture::new(RunSpec::default());
    let text = fs::read_to_string(fixture.path("checksums.txt")).unwrap();
    let kept: String = text
        .lines()
        .filter(|line| !line.ends_with("advisory.json"))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(fixture.path("checksums.txt"), kept).unwrap();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 2);
    assert_failed(
        &verdict,
        "checksums",
        "advisory.json is not listed in checksums.txt",
    );
}

#[test]
fn an_edited_manifest_exits_3_even_with_matching_checksums() {
    let fixture = Fixture::new(RunSpec {
        provenance: false,
        ..RunSpec::default()
    });
    let mut manifest: Manifest =
        serde_json::from_slice(&fs::read(fixture.path("manifest.json")).unwrap()).unwrap();
    manifest.snapshot.watermark = 43;
    fs::write(fixture.path("manifest.json"), manifest.to_bytes()).unwrap();
    fixture.rewrite_checksums();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 3);
    assert_failed(
        &verdict,
        "signature",
        "manifest.json differs from the payload signed",
    );
    assert!(check(&verdict, "checksums").ok);
    assert!(check(&verdict, "manifest").ok);
}

#[test]
fn a_manifest_edited_along_with_a_data_file_still_exits_3() {
    // Both tampered: the signature failure outranks the checksum failure.
    let fixture = Fixture::new(RunSpec::default());
    flip_byte(&fixture.path("advisory.json"));
    let mut manifest: Manifest =
        serde_json::from_slice(&fs::read(fixture.path("manifest.json")).unwrap()).unwrap();
    manifest.tenant = TenantId::parse("other").unwrap();
    fs::write(fixture.path("manifest.json"), manifest.to_bytes()).unwrap();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 3);
    assert_failed(&verdict, "checksums", "does not match");
}

#[test]
fn a_wrong_rerun_hash_under_a_valid_signature_exits_2() {
    let fixture = Fixture::new(RunSpec {
        provenance: false,
        ..RunSpec::default()
    });
    let mut manifest: Manifest =
        serde_json::from_slice(&fs::read(fixture.path("manifest.json")).unwrap()).unwrap();
    manifest.rerun_hash = format!("sha256:{}", "0".repeat(64));
    let bytes = manifest.to_bytes();
    fs::write(fixture.path("manifest.json"), &bytes).unwrap();
    // Signed by the trusted key (a producer bug rather than tampering): only the hash fails.
    let envelope = sign_envelope(&fixture.signing_key(), MANIFEST_PAYLOAD_TYPE, &bytes);
    fs::write(fixture.path("manifest.dsse.json"), envelope.envelope_bytes()).unwrap();
    fixture.rewrite_checksums();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 2);
    assert_failed(&verdict, "rerun-hash", "the items give sha256:");
}

#[test]
fn a_wrong_key_exits_3() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256] {
        let fixture = Fixture::new(RunSpec::default());
        let other = generate_keys(algorithm, &fixture.root.join("other"), "other").unwrap();
        let mut options = fixture.options(&fixture.run);
        options.keys = vec![other.public_path.clone()];
        let verdict = verify(&options);
        assert_exit(&verdict, 3);
        assert_failed(
            &verdict,
            "signature",
            &format!("has no signature by key {}", other.keyid),
        );
        assert_failed(&verdict, "provenance", "has no signature by key");
        assert!(check(&verdict, "checksums").ok);
    }
}

#[test]
fn a_signature_by_any_of_several_trusted_keys_verifies() {
    let fixture = Fixture::new(RunSpec::default());
    let others: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| generate_keys(KeyAlgorithm::P256, &fixture.root.join(name), name).unwrap())
        .collect();
    let mut options = fixture.options(&fixture.run);
    options.keys = vec![others[0].public_path.clone(), fixture.key.public_path.clone()];
    let verdict = verify(&options);
    assert!(verdict.verified(), "{}", render_text(&verdict));
    assert!(check(&verdict, "signature").detail.contains(&fixture.key.keyid));

    options.keys = others.iter().map(|keys| keys.public_path.clone()).collect();
    let verdict = verify(&options);
    assert_exit(&verdict, 3);
    assert_failed(&verdict, "signature", "is signed by none of the 2 trusted keys");
    // One unusable key among good ones is a usage error, not a quiet pass.
    options.keys.push(fixture.key.public_path.clone());
    options.keys.push(fixture.root.join("no-such-key.pem"));
    assert_exit(&verify(&options), 1);
}

#[test]
fn a_forged_signature_under_the_right_keyid_exits_3() {
    let fixture = Fixture::new(RunSpec::default());
    let path = fixture.path("manifest.dsse.json");
    let mut envelope = export_signing::DsseEnvelope::from_json(&fs::read(&path).unwrap()).unwrap();
    envelope.signatures[0].sig[10] ^= 0x80;
    fs::write(&path, envelope.envelope_bytes()).unwrap();
    fixture.rewrite_checksums();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 3);
    assert_failed(&verdict, "signature", "does not verify");
}

#[test]
fn an_unsigned_manifest_exits_3() {
    let fixture = Fixture::new(RunSpec {
        provenance: false,
        ..RunSpec::default()
    });
    fs::remove_file(fixture.path("manifest.dsse.json")).unwrap();
    fixture.rewrite_checksums();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 3);
    assert_failed(&verdict, "signature", "manifest is not signed");
}

#[test]
fn a_truncated_bundle_fails_with_a_clear_message() {
    for format in FORMATS {
        let fixture = Fixture::new(RunSpec {
            bundle: Some(format),
            ..RunSpec::default()
        });
        let bundle = fixture.path(format.file_name());
        let bytes = fs::read(&bundle).unwrap();
        for keep in [bytes.len() / 2, bytes.len() - 3] {
            fs::write(&bundle, &bytes[..keep]).unwrap();
            let verdict = verify(&fixture.options(&bundle));
            assert_ne!(
                verdict.exit_code,
                0,
                "{format:?} cut to {keep}\n{}",
                render_text(&verdict)
            );
            assert_exit(&verdict, 1);
            assert_failed(
                &verdict,
                "bundle",
                &format!("{} is corrupt or truncated", format.file_name()),
            );
            // Beside the files, the truncated bundle also fails its provenance subject.
            let verdict = fixture.verify_dir();
            assert_exit(&verdict, 1);
            assert_failed(&verdict, "provenance-subjects", format.file_name());
        }
    }
}

#[test]
fn a_provenance_subject_mismatch_exits_2() {
    let fixture = Fixture::new(RunSpec::default());
    let manifest_bytes = fs::read(fixture.path("manifest.json")).unwrap();
    fixture.write_provenance(
        &fixture.signing_key(),
        vec![
            ("advisory.json".into(), Sha256Digest::of(b"something else")),
            (
                "vex-osv.ndjson".into(),
                Sha256Digest::of(&fs::read(fixture.path("vex-osv.ndjson")).unwrap()),
            ),
            ("manifest.json".into(), Sha256Digest::of(&manifest_bytes)),
        ],
    );
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 2);
    assert_failed(
        &verdict,
        "provenance-subjects",
        "subject advisory.json does not match",
    );
    assert!(check(&verdict, "provenance").ok);
    assert!(check(&verdict, "checksums").ok);
}

#[test]
fn a_data_file_that_is_not_a_subject_is_a_warning() {
    let fixture = Fixture::new(RunSpec::default());
    let manifest_bytes = fs::read(fixture.path("manifest.json")).unwrap();
    fixture.write_provenance(
        &fixture.signing_key(),
        vec![("manifest.json".into(), Sha256Digest::of(&manifest_bytes))],
    );
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 0);
    let subjects = check(&verdict, "provenance-subjects");
    assert_eq!(subjects.status, CheckStatus::Warn);
    assert!(subjects
        .detail
        .contains("not a subject: advisory.json, vex-osv.ndjson"));
    assert!(render_text(&verdict).contains("warn  provenance-subjects"));
}

#[test]
fn an_encrypted_run_verifies_with_the_identity_and_what_is_in_the_clear_without() {
    let probe = Fixture::new(RunSpec::default());
    let (identity, recipient) = probe.age_identity();
    let fixture = Fixture::new(RunSpec {
        encrypt_to: Some(recipient),
        ..RunSpec::default()
    });
    assert!(!fixture.path("advisory.json").exists());
    let sealed = fixture.path("bundle.tar.zst.age");

    // The directory, with the identity: everything is checked.
    let mut options = fixture.options(&fixture.run);
    options.identity = Some(identity.clone());
    let verdict = verify(&options);
    assert_exit(&verdict, 0);
    assert!(check(&verdict, "bundle")
        .detail
        .contains("decrypted bundle.tar.zst.age"));
    assert!(check(&verdict, "manifest").detail.contains("2 of 2 items match"));
    assert!(check(&verdict, "checksums").detail.contains("4 files match"));
    assert!(check(&verdict, "provenance-subjects")
        .detail
        .contains("4 of 4 subjects match"));

    // The directory, without: what is in the clear is checked, and the verdict says what not.
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 0);
    let bundle = check(&verdict, "bundle");
    assert_eq!(bundle.status, CheckStatus::Skip);
    assert!(bundle.detail.contains("pass --identity"), "{}", bundle.detail);
    assert!(check(&verdict, "checksums")
        .detail
        .contains("2 files match; 2 data files not checked"));
    assert!(check(&verdict, "manifest")
        .detail
        .contains("not checked: the bundle is encrypted"));
    assert_eq!(check(&verdict, "signature").status, CheckStatus::Ok);
    assert_eq!(check(&verdict, "rerun-hash").status, CheckStatus::Ok);

    // Without the identity, tampering with what is in the clear is still caught.
    flip_byte(&sealed);
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 2);
    assert_failed(
        &verdict,
        "provenance-subjects",
        "bundle.tar.zst.age does not match",
    );
    // With it, the damaged ciphertext does not decrypt.
    let verdict = verify(&options);
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "bundle", "bundle.tar.zst.age");
}

#[test]
fn an_encrypted_bundle_file_needs_the_identity() {
    let probe = Fixture::new(RunSpec::default());
    let (identity, recipient) = probe.age_identity();
    let fixture = Fixture::new(RunSpec {
        encrypt_to: Some(recipient),
        ..RunSpec::default()
    });
    let sealed = fixture.path("bundle.tar.zst.age");
    let mut options = fixture.options(&sealed);
    options.identity = Some(identity);
    let verdict = verify(&options);
    assert_exit(&verdict, 0);
    assert!(check(&verdict, "bundle")
        .detail
        .contains("decrypted and read bundle.tar.zst.age"));

    let verdict = verify(&fixture.options(&sealed));
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "bundle", "the bundle is encrypted: pass --identity");
    // The provenance beside it is still checked, the encrypted bundle's digest included.
    assert!(check(&verdict, "provenance").ok);
    assert!(
        check(&verdict, "provenance-subjects").ok,
        "{}",
        render_text(&verdict)
    );

    // Another identity cannot decrypt it.
    let (wrong, _) = fixture.age_identity();
    options.identity = Some(wrong.clone());
    let verdict = verify(&options);
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "bundle", &format!("no identity in {}", wrong.display()));
}

#[test]
fn usage_errors_exit_1() {
    let fixture = Fixture::new(RunSpec::default());

    let mut options = fixture.options(&fixture.run);
    options.keys = vec![fixture.root.join("no-such-key.pem")];
    let verdict = verify(&options);
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "key", "cannot read key file");
    assert_failed(&verdict, "key", "no-such-key.pem");
    // The checks that do not need the key still ran.
    assert!(check(&verdict, "checksums").ok);

    options.keys = vec![fixture.key.private_path.clone()];
    let verdict = verify(&options);
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "key", "is a private key");

    let garbage = fixture.root.join("garbage.pem");
    fs::write(&garbage, "not a key").unwrap();
    options.keys = vec![garbage];
    assert_exit(&verify(&options), 1);

    let verdict = verify(&fixture.options(&fixture.root.join("nowhere")));
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "target", "nowhere");

    let stray = fixture.root.join("notes.txt");
    fs::write(&stray, "hello").unwrap();
    let verdict = verify(&fixture.options(&stray));
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "bundle", "is not a bundle");

    let mut options = fixture.options(&fixture.run);
    options.provenance = Some(fixture.root.join("missing.dsse.json"));
    let verdict = verify(&options);
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "provenance", "missing.dsse.json");
}

#[test]
fn an_unparsable_manifest_exits_1() {
    let fixture = Fixture::new(RunSpec::default());
    fs::write(fixture.path("manifest.json"), b"{not json").unwrap();
    let verdict = fixture.verify_dir();
    assert_exit(&verdict, 1);
    assert_failed(&verdict, "manifest", "cannot parse manifest.json");
}

#[test]
fn bundle_entries_that_escape_are_refused() {
    let fixture = Fixture::new(RunSpec::default());
    for evil in ["../escaped.json", "/tmp/absolute.json"] {
        let mut header = tar::Header::new_ustar();
        let name = &mut header.as_old_mut().name;
        name[..evil.len()].copy_from_slice(evil.as_bytes());
        header.set_mode(0o644);
        header.set_size(2);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut archive = Vec::new();
        {
            let encoder = flate2::write::GzEncoder::new(&mut archive, flate2::Compression::fast());
            let mut builder = tar::Builder::new(encoder);
            builder.append(&header, &b"{}"[..]).unwrap();
            builder.into_inner().unwrap().finish().unwrap();
        }
        let bundle = fixture.root.join("evil.tar.gz");
        fs::write(&bundle, archive).unwrap();
        let verdict = verify(&fixture.options(&bundle));
        assert_exit(&verdict, 2);
        assert_failed(&verdict, "bundle", &format!("refusing entry `{evil}`"));
        assert!(!fixture.root.join("escaped.json").exists());
    }
}

#[test]
fn generated_keys_refuse_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate_keys(KeyAlgorithm::P256, dir.path(), "k").unwrap();
    let err = generate_keys(KeyAlgorithm::Ed25519, dir.path(), "k").unwrap_err();
    assert!(
        err.to_string().contains(&key.private_path.display().to_string()),
        "{err}"
    );
}
