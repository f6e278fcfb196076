//! Integration tests of export-signing: keys, DSSE envelopes, provenance, and interop with
//! securesystemslib as an independent DSSE implementation.

mod dsse;
mod interop;
mod keys;
mod provenance;

use std::path::PathBuf;

use export_signing::{SigningKey, VerifyingKey};

/// `tests/data/<name>`, where the fixed test keys made with `openssl genpkey` live.
fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read_data(name: &str) -> String {
    std::fs::read_to_string(data_path(name)).unwrap()
}

fn ed25519_key() -> SigningKey {
    SigningKey::from_pkcs8_pem(&read_data("ed25519.pem")).unwrap()
}

fn p256_key() -> SigningKey {
    SigningKey::from_pkcs8_pem(&read_data("p256.pem")).unwrap()
}

fn ed25519_public() -> VerifyingKey {
    VerifyingKey::from_public_key_pem(&read_data("ed25519.pub.pem")).unwrap()
}

fn p256_public() -> VerifyingKey {
    VerifyingKey::from_public_key_pem(&read_data("p256.pub.pem")).unwrap()
}
