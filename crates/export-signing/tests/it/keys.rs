//! Key loading, keyids, generation and known-answer signatures.

use export_signing::{generate, pae, KeyAlgorithm, SigningKey, VerifyingKey, MANIFEST_PAYLOAD_TYPE};

use crate::{ed25519_key, ed25519_public, p256_key, p256_public, read_data};

// Computed with `openssl pkey -pubin -in tests/data/<key>.pub.pem -outform DER | sha256sum`.
const ED25519_KEYID: &str = "7a4882461a1057f5482273968f070a0209b0bfa0c0747f0553f85cac5ac3873d";
const P256_KEYID: &str = "aa4f31678f71569b67e57c962bca8e790e0a328ed7be9959893f5bc34c2b7a9d";

#[test]
fn keyid_is_the_sha256_of_the_spki_der_for_both_halves() {
    assert_eq!(ed25519_key().keyid(), ED25519_KEYID);
    assert_eq!(ed25519_public().keyid(), ED25519_KEYID);
    assert_eq!(p256_key().keyid(), P256_KEYID);
    assert_eq!(p256_public().keyid(), P256_KEYID);
}

#[test]
fn keys_know_their_algorithm_and_public_half() {
    assert_eq!(ed25519_key().algorithm(), KeyAlgorithm::Ed25519);
    assert_eq!(p256_public().algorithm(), KeyAlgorithm::P256);
    assert_eq!(ed25519_key().verifying_key(), &ed25519_public());
    assert_eq!(p256_key().verifying_key(), &p256_public());
}

#[test]
fn public_keys_are_written_back_as_openssl_writes_them() {
    assert_eq!(ed25519_public().to_public_key_pem(), read_data("ed25519.pub.pem"));
    assert_eq!(p256_public().to_public_key_pem(), read_data("p256.pub.pem"));
}

#[test]
fn algorithm_names_parse_and_print() {
    assert_eq!("ed25519".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::Ed25519);
    assert_eq!("p256".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::P256);
    assert_eq!(KeyAlgorithm::P256.to_string(), "p256");
    assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::Ed25519);
    let err = "rsa".parse::<KeyAlgorithm>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown key algorithm `rsa` (expected `ed25519` or `p256`)"
    );
}

#[test]
fn generated_key_pairs_load_and_sign() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256] {
        let (private_pem, public_pem) = generate(algorithm).unwrap();
        assert!(
            private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{private_pem}"
        );
        assert!(
            public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{public_pem}"
        );
        let key = SigningKey::from_pkcs8_pem(&private_pem).unwrap();
        let public = VerifyingKey::from_public_key_pem(&public_pem).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        assert_eq!(key.keyid(), public.keyid());
        public.verify(b"message", &key.sign(b"message")).unwrap();
        assert_ne!(generate(algorithm).unwrap().1, public_pem, "keys must be random");
    }
}

#[test]
fn ed25519_signature_matches_openssl() {
    // printf 'DSSEv1 43 application/vnd.export-center.manifest+json 7 {"a":1}' > pae.bin
    // openssl pkeyutl -sign -rawin -inkey tests/data/ed25519.pem -in pae.bin | base64 -w0
    let expected = "w0Xxe7KfS9nZ0H1K2YtdzXSkN7/qkZ3ldkzJJ+qb8luu3+rWChZRrgIph9sOiQvBYpK4JloXdvOep+Uty3gOCw==";
    let message = br#"DSSEv1 43 application/vnd.export-center.manifest+json 7 {"a":1}"#;
    assert_eq!(message.to_vec(), pae(MANIFEST_PAYLOAD_TYPE, br#"{"a":1}"#));
    let signature = ed25519_key().sign(message);
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(signature),
        expected
    );
}

#[test]
fn p256_signatures_follow_rfc_6979_and_are_der() {
    // RFC 6979 A.2.5: P-256, SHA-256, message "sample"; the key is the RFC's private key x.
    let key = SigningKey::from_pkcs8_pem(&read_data("p256-rfc6979.pem")).unwrap();
    let expected = concat!(
        "3046",
        "022100efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
        "022100f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
    );
    assert_eq!(hex::encode(key.sign(b"sample")), expected);
}

#[test]
fn other_key_types_are_unsupported() {
    let err = SigningKey::from_pkcs8_pem(&read_data("p384.pem")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported key type ECDSA on curve P-384 (expected Ed25519 or ECDSA P-256)"
    );
}

#[test]
fn only_pkcs8_private_keys_are_read() {
    let err = SigningKey::from_pkcs8_pem(&read_data("p256.sec1.pem")).unwrap_err();
    assert!(err.to_string().starts_with("reading PKCS#8 PEM: "), "{err}");
    let err = SigningKey::from_pkcs8_pem(&read_data("p256.pub.pem")).unwrap_err();
    assert!(err.to_string().starts_with("reading PKCS#8 PEM: "), "{err}");
    let err = SigningKey::from_pkcs8_pem("not a key").unwrap_err();
    assert!(err.to_string().starts_with("reading PKCS#8 PEM: "), "{err}");
    let err = VerifyingKey::from_public_key_pem(&read_data("ed25519.pem")).unwrap_err();
    assert!(
        err.to_string().starts_with("reading SPKI public key PEM: "),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_the_secret() {
    let debug = format!("{:?}", ed25519_key());
    assert_eq!(
        debug,
        format!("SigningKey {{ algorithm: Ed25519, keyid: \"{ED25519_KEYID}\", .. }}")
    );
}

#[test]
fn ed25519_keys_written_as_pkcs8_v2_still_load_and_are_rewritten_as_v1() {
    // Written by `keys generate --alg ed25519` before keys were PKCS#8 v1.
    let old = SigningKey::from_pkcs8_pem(&read_data("ed25519-pkcs8-v2.pem")).unwrap();
    assert_eq!(old.algorithm(), KeyAlgorithm::Ed25519);
    old.verifying_key()
        .verify(b"message", &old.sign(b"message"))
        .unwrap();
    let rewritten = old.to_pkcs8_pem().unwrap();
    assert_eq!(
        SigningKey::from_pkcs8_pem(&rewritten).unwrap().keyid(),
        old.keyid()
    );
    // v1: version 0 and no public key, 48 bytes of DER (one line of base64) as `openssl
    // genpkey` writes them; v2 takes two lines.
    assert_eq!(rewritten.lines().count(), 3, "{rewritten}");
    assert_eq!(ed25519_key().to_pkcs8_pem().unwrap(), read_data("ed25519.pem"));
}
