//! Fuzzes the verifier's bundle reader (SPEC §6, §17): `export_verify::read_files`, the
//! import's reader, and `export_verify::verify` of a bundle file with a trusted key and an
//! age identity. A bundle is hostile input: whatever its bytes, both must answer without a
//! panic, within the limits, and every file `read_files` hands over has the digest and size
//! it reports.
//!
//! The first byte picks the file name, and so the format the bytes after it are read as:
//! `bundle.tar.zst`, `bundle.tar.gz`, `bundle.zip` or `bundle.tar.zst.age` (by its value
//! modulo 4).
//!
//! With `FUZZ_BUNDLE_SEEDS=<dir>` set, the target writes a small signed run's bundle in each
//! of the four forms to `<dir>` when it starts (the run of `export-server`'s
//! `tests/verify.rs`, signed with the key below): `scripts/fuzz` builds the seeds so.
#![no_main]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use export_core::manifest::{ManifestItem, ManifestProfile, Snapshot};
use export_core::{checksums_txt, BundleFormat, Manifest, ProfileId, Sha256Digest, TenantId};
use export_signing::{sign_envelope, SigningKey, MANIFEST_PAYLOAD_TYPE};
use export_verify::{read_files, verify, Limits, VerifyOptions};
use libfuzzer_sys::fuzz_target;

/// A fixed Ed25519 signing key (made with `openssl genpkey -algorithm ed25519` for this
/// target; it protects nothing): the seeds are signed with it and the verifier trusts it.
const SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEID2vd+q5Ii6ywpIBhMLB6hMl1jEhQ5psa7bwGuPOyJ6/
-----END PRIVATE KEY-----
";
/// A fixed age identity (made with `age-keygen` for this target; it protects nothing): the
/// encrypted seed is encrypted to it and the verifier decrypts with it.
const AGE_IDENTITY: &str = "AGE-SECRET-KEY-164CSZACDFC6ZHYNHKAD4EW0UE7K7CSL53QDJNHZ203ZDZM7VDNKQHPTS4Q";

const NAMES: [&str; 4] = [
    "bundle.tar.zst",
    "bundle.tar.gz",
    "bundle.zip",
    "bundle.tar.zst.age",
];

/// A private directory with the trusted public key and the identity, where each input is
/// written under its bundle name.
struct Workspace {
    dir: tempfile::TempDir,
    public_key: PathBuf,
    identity: PathBuf,
}

fn workspace() -> &'static Workspace {
    static WORKSPACE: OnceLock<Workspace> = OnceLock::new();
    WORKSPACE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = SigningKey::from_pkcs8_pem(SIGNING_KEY).expect("the signing key reads");
        let public_key = dir.path().join("signing.pub.pem");
        std::fs::write(&public_key, key.verifying_key().to_public_key_pem()).expect("writes");
        let identity = dir.path().join("identity.txt");
        std::fs::write(&identity, format!("{AGE_IDENTITY}\n")).expect("writes");
        Workspace {
            dir,
            public_key,
            identity,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: Once = Once::new();
    SEEDS.call_once(|| {
        if let Some(dir) = std::env::var_os("FUZZ_BUNDLE_SEEDS") {
            write_seeds(Path::new(&dir));
        }
    });
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let workspace = workspace();
    let bundle = workspace.dir.path().join(NAMES[usize::from(selector % 4)]);
    std::fs::write(&bundle, bytes).expect("the input can be written");
    let limits = Limits::default();

    // What the visitor read of each file, hashed here; `read_files` must report the same.
    let mut seen = Vec::new();
    let mut visit = |path: &str, data: &mut dyn Read| {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        seen.push((path.to_owned(), Sha256Digest::of(&bytes), bytes.len() as u64));
        Ok(())
    };
    if let Ok(files) = read_files(&bundle, &limits, &mut visit) {
        assert_eq!(files.len(), seen.len(), "every file is visited once");
        for (path, digest, size) in seen {
            assert_eq!(files.get(&path), Some(&(digest, size)), "{path}");
            assert!(
                !path.starts_with('/') && !path.split('/').any(|part| matches!(part, "" | "." | "..")),
                "an unsafe path was accepted: {path:?}"
            );
        }
    }

    let _verdict = verify(&VerifyOptions {
        target: bundle.clone(),
        keys: vec![workspace.public_key.clone()],
        provenance: None,
        identity: Some(workspace.identity.clone()),
        limits,
    });
    std::fs::remove_file(&bundle).expect("the input can be removed");
});

/// Writes the seeds: a small signed run (two data files, the manifest, its envelope and
/// `checksums.txt`) as each bundle format, and encrypted, each behind its selector byte.
fn write_seeds(dir: &Path) {
    let key = SigningKey::from_pkcs8_pem(SIGNING_KEY).expect("the signing key reads");
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
    let items = data
        .iter()
        .map(|(path, bytes, id)| {
            let ndjson = path.ends_with(".ndjson");
            ManifestItem {
                kind: id.split(':').next().expect("a kind").to_owned(),
                id: (*id).to_owned(),
                format: if ndjson { "ndjson" } else { "json" }.to_owned(),
                path: (*path).to_owned(),
                sha256: Sha256Digest::of(bytes),
                bytes: bytes.len() as u64,
                records: if ndjson { 2 } else { 1 },
                media_type: if ndjson {
                    "application/x-ndjson"
                } else {
                    "application/json"
                }
                .to_owned(),
            }
        })
        .collect();
    let manifest = Manifest::new(
        TenantId::parse("acme").expect("a tenant"),
        ManifestProfile {
            id: ProfileId::parse("export-profile::acme::nightly").expect("a profile"),
            revision: "3".into(),
        },
        serde_json::json!({"targets": ["advisory", "vex:osv"], "signing": true}),
        Snapshot {
            watermark: 42,
            items: 3,
        },
        items,
    )
    .to_bytes();
    let envelope = sign_envelope(&key, MANIFEST_PAYLOAD_TYPE, &manifest).envelope_bytes();
    let mut files: Vec<(&str, Vec<u8>)> = data
        .iter()
        .map(|(path, bytes, _)| (*path, bytes.to_vec()))
        .collect();
    files.push(("manifest.json", manifest));
    files.push(("manifest.dsse.json", envelope));
    let checksums = checksums_txt(files.iter().map(|(path, bytes)| (*path, Sha256Digest::of(bytes))));
    files.push(("checksums.txt", checksums));
    files.sort();

    std::fs::create_dir_all(dir).expect("the seed directory can be made");
    let bundle = |format| {
        let entries = files
            .iter()
            .map(|(path, bytes)| {
                let reader = Box::new(std::io::Cursor::new(bytes.clone())) as Box<dyn Read + Send>;
                ((*path).to_owned(), reader, bytes.len() as u64)
            })
            .collect();
        export_bundle::write_bundle(format, 1_765_015_200, entries, Vec::new()).expect("a bundle")
    };
    let formats = [BundleFormat::TarZst, BundleFormat::TarGz, BundleFormat::Zip];
    for (selector, format) in formats.into_iter().enumerate() {
        let seed = [&[selector as u8][..], &bundle(format)].concat();
        std::fs::write(dir.join(format.file_name()), seed).expect("a seed can be written");
    }
    let identity: age::x25519::Identity = AGE_IDENTITY.parse().expect("the identity reads");
    let recipient = identity.to_public();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .expect("one recipient");
    let mut sealed = vec![3u8];
    let mut writer = encryptor.wrap_output(&mut sealed).expect("encrypts");
    writer.write_all(&bundle(BundleFormat::TarZst)).expect("encrypts");
    writer.finish().expect("encrypts");
    std::fs::write(dir.join("bundle.tar.zst.age"), sealed).expect("a seed can be written");
}
