//! Verifiable exports end to end: signed manifests, provenance, reproducible bundles,
//! age encryption, and keys refused at creation.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use export_core::Sha256Digest;
use export_signing::{verify_envelope, DsseEnvelope, VerifyingKey, MANIFEST_PAYLOAD_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, download_all, files_under, TestApp, TEST_AGE_IDENTITY};

async fn signed_app() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let public = app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    (app, public)
}

fn write_all(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_signed_run_has_a_verifiable_manifest_envelope_provenance_and_bundle() {
    let (app, public) = signed_app().await;
    let done = app.tenant("acme").export("signed", json!({})).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);
    let kinds: Vec<(&str, &str)> = done
        .outputs
        .iter()
        .map(|o| (o.kind.as_str(), o.format.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("advisory", "json"),
            ("advisory", "ndjson"),
            ("bundle", "tar.zst"),
            ("checksums", "txt"),
            ("manifest", "json"),
            ("policy", "json"),
            ("policy", "ndjson"),
            ("provenance", "dsse"),
            ("vex", "json"),
            ("vex", "ndjson"),
        ]
    );
    let manifest = done.outputs.iter().find(|o| o.kind == "manifest").unwrap();
    let dsse_url = manifest
        .dsse_url
        .clone()
        .expect("the manifest output links its envelope");
    let envelope_bytes = app.get(&dsse_url).await.bytes().await.unwrap();
    let manifest_bytes = app.get(&manifest.url).await.bytes().await.unwrap();

    let key = VerifyingKey::from_public_key_pem(&public).unwrap();
    let envelope = DsseEnvelope::from_json(&envelope_bytes).unwrap();
    assert_eq!(envelope.payload_type, MANIFEST_PAYLOAD_TYPE);
    assert_eq!(
        verify_envelope(&envelope, &key).unwrap(),
        manifest_bytes.to_vec(),
        "the payload is manifest.json"
    );
    assert_eq!(envelope.signatures[0].keyid, key.keyid());

    // The independent DSSE implementation agrees.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.dsse.json"), &envelope_bytes).unwrap();
    std::fs::write(dir.path().join("key.pub.pem"), &public).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../export-signing/tests/verify_dsse.py");
    run(Command::new("python3")
        .arg(&script)
        .arg("verify")
        .arg(dir.path().join("manifest.dsse.json"))
        .arg(dir.path().join("key.pub.pem")));

    // Provenance: an in-toto statement over every data file, the manifest and the bundle.
    let files = download_all(&app, &done).await;
    let provenance = DsseEnvelope::from_json(&files["provenance.dsse.json"]).unwrap();
    let statement: Value = serde_json::from_slice(&verify_envelope(&provenance, &key).unwrap()).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        done.run_id
    );
    let subjects: BTreeMap<String, String> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["digest"]["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<&str> = vec![
        "advisory.json",
        "advisory.ndjson",
        "bundle.tar.zst",
        "manifest.json",
        "policy.json",
        "policy.ndjson",
        "vex.json",
        "vex.ndjson",
    ];
    assert_eq!(subjects.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    for (name, hex) in &subjects {
        assert_eq!(&Sha256Digest::of(&files[name]).hex(), hex, "{name}");
    }
    std::fs::write(
        dir.path().join("provenance.dsse.json"),
        &files["provenance.dsse.json"],
    )
    .unwrap();
    run(Command::new("python3")
        .arg(&script)
        .arg("verify")
        .arg(dir.path().join("provenance.dsse.json"))
        .arg(dir.path().join("key.pub.pem")));

    // checksums.txt covers the data files, the manifest and its envelope.
    let checksums = String::from_utf8(files["checksums.txt"].clone()).unwrap();
    assert!(checksums.contains("  manifest.dsse.json\n"));
    assert!(!checksums.contains("provenance") && !checksums.contains("bundle"));

    // The bundle extracts with the stock tools and checks with coreutils alone.
    let extract = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bundle.tar.zst"), &files["bundle.tar.zst"]).unwrap();
    run(Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(dir.path().join("bundle.tar.zst"))
        .arg("-C")
        .arg(extract.path()));
    run(Command::new("sha256sum")
        .arg("-c")
        .arg("checksums.txt")
        .current_dir(extract.path()));
    let listing = run(Command::new("tar")
        .arg("--zstd")
        .arg("-tvf")
        .arg(dir.path().join("bundle.tar.zst")));
    assert!(
        listing.lines().all(|line| line.starts_with("-rw-r--r-- 0/0")),
        "{listing}"
    );
    assert!(
        !listing.contains("provenance"),
        "the provenance travels beside the bundle"
    );
    let mut names: Vec<String> = listing
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted);
    names.retain(|n| n.ends_with(".json") || n.ends_with(".ndjson"));
    assert_eq!(names.len(), 8, "six data files, the manifest and its envelope");
}

#[tokio::test]
async fn bundles_and_envelopes_are_byte_identical_across_reruns_in_every_format() {
    let (app, _) = signed_app().await;
    app.install_signing_key("acme", "p256", "p256");
    let acme = app.tenant("acme");
    for (profile, bundle, extract) in [
        ("signed", "bundle.tar.zst", vec!["tar", "--zstd", "-xf"]),
        ("signed-gz", "bundle.tar.gz", vec!["tar", "-xzf"]),
        ("signed-zip", "bundle.zip", vec!["unzip", "-q"]),
    ] {
        let first = download_all(&app, &acme.export(profile, json!({})).await).await;
        let second = download_all(&app, &acme.export(profile, json!({ "priority": "low" })).await).await;
        for name in [bundle, "manifest.json", "checksums.txt", "advisory.ndjson"] {
            assert!(
                first[name] == second[name],
                "{profile}: {name} differs between reruns"
            );
        }
        assert_ne!(first["provenance.dsse.json"], Vec::<u8>::new());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(bundle), &first[bundle]).unwrap();
        let mut command = Command::new(extract[0]);
        command.args(&extract[1..]).arg(bundle).current_dir(dir.path());
        run(&mut command);
        run(Command::new("sha256sum")
            .arg("-c")
            .arg("checksums.txt")
            .current_dir(dir.path()));
    }
    // ECDSA P-256 envelopes are deterministic too (RFC 6979).
    let body = json!({ "distribution": { "signing": { "enabled": true, "keyRef": "kms://acme/p256" } } });
    let a = download_all(&app, &acme.export("signed", body.clone()).await).await;
    let b = download_all(&app, &acme.export("signed", body).await).await;
    assert!(
        a["bundle.tar.zst"] == b["bundle.tar.zst"],
        "the bundle holds the P-256 manifest envelope"
    );
    assert!(
        a["checksums.txt"] == b["checksums.txt"],
        "checksums.txt lists the envelope's digest"
    );
}

#[tokio::test]
async fn an_encrypted_bundle_decrypts_with_age_and_no_plaintext_is_at_rest() {
    let (app, _) = signed_app().await;
    let identity = app.install_age_key("acme", "backup");
    let done = app
        .tenant("acme")
        .export(
            "sealed-off",
            json!({ "encryption": { "enabled": true, "kmsKey": "kms://acme/backup" } }),
        )
        .await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);
    let files = download_all(&app, &done).await;
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "bundle.tar.zst.age",
            "checksums.txt",
            "manifest.json",
            "provenance.dsse.json"
        ]
    );

    // Both recipients can decrypt with the stock age command.
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &files);
    for (name, secret) in [("kms.key", identity.as_str()), ("profile.key", TEST_AGE_IDENTITY)] {
        std::fs::write(dir.path().join(name), secret).unwrap();
        let out = dir.path().join(format!("{name}.tar.zst"));
        run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(dir.path().join(name))
            .arg("-o")
            .arg(&out)
            .arg(dir.path().join("bundle.tar.zst.age")));
        let extract = tempfile::tempdir().unwrap();
        run(Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(extract.path()));
        run(Command::new("sha256sum")
            .arg("-c")
            .arg("checksums.txt")
            .current_dir(extract.path()));
        assert!(extract.path().join("advisory.json").is_file());
    }

    // Nothing in the artifact store is a plaintext data file or bundle.
    let mut stored = Vec::new();
    for entry in files_under(&app.data_dir.join("artifacts")) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        stored.push(name.clone());
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !name.ends_with(".ndjson") && !name.ends_with("advisory.json") && name != "bundle.tar.zst",
            "{name} at rest"
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("\"schema_version\""),
            "{name} holds a plaintext document"
        );
    }
    assert!(stored.iter().any(|n| n == "bundle.tar.zst.age"), "{stored:?}");
}

#[tokio::test]
async fn unusable_keys_are_refused_when_the_run_is_created() {
    let (app, _) = signed_app().await;
    let acme = app.tenant("acme");
    for (key_ref, needle) in [
        ("vault://acme/signer", "unknown scheme"),
        ("kms://acme/absent", "not found"),
        ("kms://globex/signer", "another tenant"),
    ] {
        let body = json!({
            "profileId": acme.profile_id("signed"),
            "distribution": { "signing": { "enabled": true, "keyRef": key_ref } },
        });
        let response = acme.post("/export-center/runs").json(&body).send().await.unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
        assert_eq!(problem["errors"][0]["field"], "distribution.signing.keyRef");
        assert!(problem["detail"].as_str().unwrap().contains(needle), "{problem}");
    }
    let body = json!({ "profileId": acme.profile_id("sealed-off"), "encryption": { "enabled": true, "kmsKey": "kms://acme/nothing" } });
    let problem = assert_problem(
        acme.post("/export-center/runs").json(&body).send().await.unwrap(),
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "encryption.kmsKey");
}

#[tokio::test]
async fn a_sealed_site_refuses_unsigned_runs() {
    let app = TestApp::spawn_with(|config| config.sealed = true).await;
    app.install_signing_key("acme", "signer", "ed25519");
    let acme = app.tenant("acme");
    let unsigned = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("daily") }))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.headers()["x-sealed-mode"], "true");
    let problem = assert_problem(unsigned, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(problem["errors"][0]["field"], "distribution.signing.enabled");
    let signed = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("signed") }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_bundle_over_the_cap_fails_the_run_and_leaves_no_bytes() {
    let app = TestApp::spawn_with(|config| config.limits.max_bundle_bytes = 4096).await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let done = app.tenant("acme").export("signed", json!({})).await;
    assert_eq!(done.status, "failed");
    assert_eq!(done.errors[0].code, "ERR_EXPORT_TOO_LARGE");
    assert!(done.outputs.is_empty());
    let left = files_under(&app.data_dir.join("artifacts"));
    assert!(
        left.iter().all(|p| p.to_string_lossy().contains("_health")),
        "partial bytes left: {left:?}"
    );
}

fn export_center() -> Command {
    Command::new(env!("CARGO_BIN_EXE_export-center"))
}

/// Runs `export-center verify` and returns its exit code and output.
fn verify(target: &Path, key: &Path) -> (i32, String) {
    let output = export_center()
        .arg("verify")
        .arg(target)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), text)
}

#[tokio::test]
async fn the_verify_command_accepts_a_downloaded_run_and_catches_each_tampering() {
    let (app, public) = signed_app().await;
    let done = app.tenant("acme").export("signed", json!({})).await;
    let mut files = download_all(&app, &done).await;
    let dsse_url = done.outputs.iter().find_map(|o| o.dsse_url.clone()).unwrap();
    files.insert(
        "manifest.dsse.json".into(),
        app.get(&dsse_url).await.bytes().await.unwrap().to_vec(),
    );
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("acme.pub.pem");
    std::fs::write(&key, &public).unwrap();
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &files);
        dir
    };

    let good = fresh();
    let (code, text) = verify(good.path(), &key);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verified"), "{text}");
    let (code, text) = verify(&good.path().join("bundle.tar.zst"), &key);
    assert_eq!(code, 0, "the bundle file alone verifies: {text}");

    let flipped = fresh();
    let mut bytes = files["advisory.ndjson"].clone();
    bytes[10] ^= 1;
    std::fs::write(flipped.path().join("advisory.ndjson"), bytes).unwrap();
    assert_eq!(verify(flipped.path(), &key).0, 2);

    let missing = fresh();
    std::fs::remove_file(missing.path().join("vex.json")).unwrap();
    assert_eq!(verify(missing.path(), &key).0, 2);

    // An edited manifest with checksums.txt rewritten to match: only the signature catches it.
    let edited = fresh();
    let mut manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest["tenant"] = json!("globex");
    let manifest_bytes = export_core::canonical_json(&manifest);
    std::fs::write(edited.path().join("manifest.json"), &manifest_bytes).unwrap();
    let checksums = String::from_utf8(files["checksums.txt"].clone())
        .unwrap()
        .replace(
            &Sha256Digest::of(&files["manifest.json"]).hex(),
            &Sha256Digest::of(&manifest_bytes).hex(),
        );
    std::fs::write(edited.path().join("checksums.txt"), checksums).unwrap();
    std::fs::remove_file(edited.path().join("bundle.tar.zst")).unwrap();
    std::fs::remove_file(edited.path().join("provenance.dsse.json")).unwrap();
    let (code, text) = verify(edited.path(), &key);
    assert_eq!(code, 3, "{text}");

    // A key generated by the command itself is not the run's key.
    let generated = export_center()
        .args(["keys", "generate", "--alg", "p256", "--name", "other", "--out"])
        .arg(keys.path())
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(String::from_utf8_lossy(&generated.stdout).contains("keyid:"));
    assert_eq!(verify(good.path(), &keys.path().join("other.pub.pem")).0, 3);
    let again = export_center()
        .args(["keys", "generate", "--name", "other", "--out"])
        .arg(keys.path())
        .output()
        .unwrap();
    assert!(!again.status.success(), "an existing key is never overwritten");

    let truncated = fresh();
    let bundle = &files["bundle.tar.zst"];
    std::fs::write(
        truncated.path().join("bundle.tar.zst"),
        &bundle[..bundle.len() / 2],
    )
    .unwrap();
    let (code, text) = verify(&truncated.path().join("bundle.tar.zst"), &key);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("corrupt or truncated"), "{text}");

    // A usage error is 1, never 2.
    let usage = export_center().arg("verify").arg(good.path()).output().unwrap();
    assert_eq!(usage.status.code(), Some(1));
}

#[tokio::test]
async fn the_janitor_expires_runs_past_retention_and_keeps_their_record() {
    let (app, _) = signed_app().await;
    let acme = app.tenant("acme");
    let short = acme.export("signed", json!({ "retentionDays": 1 })).await;
    let long = acme.export("signed", json!({ "retentionDays": 30 })).await;
    let url = short.outputs[0].url.clone();
    assert_eq!(app.get(&url).await.status(), StatusCode::OK);

    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(app.app.runner.expire_due().await.unwrap(), 1);
    let expired = acme.run(&short.run_id).await;
    assert_eq!(expired.status, "expired");
    assert!(expired.outputs.is_empty());
    assert_problem(app.get(&url).await, 410, "ERR_EXPORT_EXPIRED").await;
    assert!(
        !app.run_dir(&short.run_id).exists(),
        "the expired run's bytes are deleted"
    );
    assert!(
        app.run_dir(&long.run_id).is_dir(),
        "the other run keeps its bytes"
    );
    assert_eq!(acme.run(&long.run_id).await.status, "succeeded");
    assert_eq!(app.app.runner.expire_due().await.unwrap(), 0);
    let listed: Value = acme
        .get("/export-center/runs?status=expired")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

/// A request cannot make the server read a file of its choosing (SPEC §17): a `file:`
/// key that the profile does not list is refused before anything is read, whether the
/// file exists, is a device or is absent, with one answer that names no server path.
#[tokio::test]
async fn a_request_cannot_name_a_server_file_as_its_key() {
    let (app, _) = signed_app().await;
    let acme = app.tenant("acme");
    let keyring = app.app.state.keyring.root().display().to_string();
    let mut details = Vec::new();
    for kms_key in [
        "file:/etc/passwd",
        "file:/dev/zero",
        "file:/no/such/file",
        "kms://globex/backup",
    ] {
        let body = json!({
            "profileId": acme.profile_id("sealed-off"),
            "encryption": { "enabled": true, "kmsKey": kms_key },
        });
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            acme.post("/export-center/runs").json(&body).send(),
        )
        .await
        .expect("answered without reading the file")
        .unwrap();
        let problem = assert_problem(answer, 400, "ERR_EXPORT_REQUEST_INVALID").await;
        assert_eq!(problem["errors"][0]["field"], "encryption.kmsKey", "{problem}");
        details.push(problem["detail"].as_str().unwrap().to_owned());
    }
    assert!(
        details.windows(2).all(|pair| pair[0] == pair[1]),
        "the answers tell files apart: {details:?}"
    );
    assert!(
        !details[0].contains("passwd") && !details[0].contains("/dev/"),
        "{details:?}"
    );

    // A key of the tenant's own keyring that is missing is named, its file is not.
    let body = json!({
        "profileId": acme.profile_id("sealed-off"),
        "encryption": { "enabled": true, "kmsKey": "kms://acme/absent" },
    });
    let problem = assert_problem(
        acme.post("/export-center/runs").json(&body).send().await.unwrap(),
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("kms://acme/absent"), "{detail}");
    assert!(!detail.contains(&keyring), "{detail}");
}
