//! Interop with securesystemslib, an independent DSSE implementation (SPEC §6): it verifies
//! our envelopes, and we verify its.

use std::path::Path;
use std::process::{Command, Output};

use export_signing::{
    provenance_statement, sign_envelope, verify_envelope, DsseEnvelope, SigningKey, VerifyingKey,
    IN_TOTO_PAYLOAD_TYPE, MANIFEST_PAYLOAD_TYPE,
};

use crate::{data_path, ed25519_key, ed25519_public, p256_key, p256_public};

/// Runs `tests/verify_dsse.py` with `args`, after checking that securesystemslib is there.
fn verify_dsse_py(args: &[&Path]) -> Output {
    let check = Command::new("python3")
        .args(["-c", "import securesystemslib, cryptography"])
        .output()
        .expect("running python3 (is Python 3 installed?)");
    assert!(
        check.status.success(),
        "securesystemslib is not installed for python3: run `pip install 'securesystemslib[crypto]'`\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_dsse.py");
    Command::new("python3").arg(script).args(args).output().unwrap()
}

fn assert_python_verifies(envelope: &DsseEnvelope, public: &VerifyingKey, dir: &Path) {
    let envelope_path = dir.join("envelope.json");
    let key_path = dir.join("key.pub.pem");
    std::fs::write(&envelope_path, envelope.envelope_bytes()).unwrap();
    std::fs::write(&key_path, public.to_public_key_pem()).unwrap();
    let output = verify_dsse_py(&[Path::new("verify"), &envelope_path, &key_path]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "securesystemslib rejected the envelope:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(public.keyid()), "{stdout}");
    assert!(stdout.contains(&envelope.payload_type), "{stdout}");
}

#[test]
fn securesystemslib_verifies_our_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let statement = provenance_statement(&export_signing::ProvenanceInput {
        run_id: "run-01".into(),
        builder_id: "https://export-center.dev/builder".into(),
        builder_version: "0.1.0".into(),
        external_parameters: serde_json::json!({}),
        watermark: 1,
        started_on: chrono::DateTime::UNIX_EPOCH,
        finished_on: chrono::DateTime::UNIX_EPOCH,
        subjects: vec![],
    });
    for (key, public) in [(ed25519_key(), ed25519_public()), (p256_key(), p256_public())] {
        let manifest = sign_envelope(
            &key,
            MANIFEST_PAYLOAD_TYPE,
            br#"{"schema":"export-center/manifest/v1"}"#,
        );
        assert_python_verifies(&manifest, &public, dir.path());
        let provenance = sign_envelope(&key, IN_TOTO_PAYLOAD_TYPE, &statement);
        assert_python_verifies(&provenance, &public, dir.path());
    }
}

#[test]
fn securesystemslib_rejects_a_tampered_envelope() {
    let dir = tempfile::tempdir().unwrap();
    for (key, public) in [(ed25519_key(), ed25519_public()), (p256_key(), p256_public())] {
        let mut envelope = sign_envelope(&key, MANIFEST_PAYLOAD_TYPE, b"{}");
        envelope.payload = b"{ }".to_vec();
        let envelope_path = dir.path().join("envelope.json");
        let key_path = dir.path().join("key.pub.pem");
        std::fs::write(&envelope_path, envelope.envelope_bytes()).unwrap();
        std::fs::write(&key_path, public.to_public_key_pem()).unwrap();
        let output = verify_dsse_py(&[Path::new("verify"), &envelope_path, &key_path]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn we_verify_securesystemslib_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let payload = br#"{"items":[],"schema":"export-center/manifest/v1"}"#;
    let payload_path = dir.path().join("payload.json");
    std::fs::write(&payload_path, payload).unwrap();
    for (key_file, key) in [("ed25519.pem", ed25519_key()), ("p256.pem", p256_key())] {
        let output = verify_dsse_py(&[
            Path::new("sign"),
            &data_path(key_file),
            Path::new(MANIFEST_PAYLOAD_TYPE),
            &payload_path,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let envelope = DsseEnvelope::from_json(&output.stdout).unwrap();
        assert_eq!(envelope.signatures[0].keyid, key.keyid());
        assert_eq!(verify_envelope(&envelope, key.verifying_key()).unwrap(), payload);
    }
}

#[test]
fn generated_keys_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [
        export_signing::KeyAlgorithm::Ed25519,
        export_signing::KeyAlgorithm::P256,
    ] {
        let (private_pem, public_pem) = export_signing::generate(algorithm).unwrap();
        let key = SigningKey::from_pkcs8_pem(&private_pem).unwrap();
        let public = VerifyingKey::from_public_key_pem(&public_pem).unwrap();
        assert_python_verifies(
            &sign_envelope(&key, MANIFEST_PAYLOAD_TYPE, b"{}"),
            &public,
            dir.path(),
        );
    }
}

/// OpenSSL (`openssl pkey`) and Python's `cryptography` both load the private keys we
/// generate, and find the same public key in them (SPEC §17).
#[test]
fn openssl_and_python_cryptography_load_generated_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [
        export_signing::KeyAlgorithm::Ed25519,
        export_signing::KeyAlgorithm::P256,
    ] {
        let (private_pem, public_pem) = export_signing::generate(algorithm).unwrap();
        let path = dir.path().join(format!("{algorithm}.pem"));
        std::fs::write(&path, &private_pem).unwrap();

        let openssl = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&path)
            .output()
            .expect("running openssl (is it installed?)");
        assert!(
            openssl.status.success(),
            "openssl pkey refused the generated {algorithm} key:\n{}\n{private_pem}",
            String::from_utf8_lossy(&openssl.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&openssl.stdout),
            public_pem,
            "{algorithm}"
        );

        let python = Command::new("python3")
            .args([
                "-c",
                "import sys\n\
                 from cryptography.hazmat.primitives import serialization\n\
                 key = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n\
                 sys.stdout.write(key.public_key().public_bytes(serialization.Encoding.PEM, \
                 serialization.PublicFormat.SubjectPublicKeyInfo).decode())",
            ])
            .arg(&path)
            .output()
            .expect("running python3 (is Python 3 with `cryptography` installed?)");
        assert!(
            python.status.success(),
            "python cryptography refused the generated {algorithm} key:\n{}\n{private_pem}",
            String::from_utf8_lossy(&python.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&python.stdout), public_pem, "{algorithm}");
    }
}
