//! DSSE: the PAE known answer, sign→verify round trips, byte-stable envelopes, tampering.

use export_signing::{
    pae, sign_envelope, verify_envelope, DsseEnvelope, SigningError, SigningKey, IN_TOTO_PAYLOAD_TYPE,
    MANIFEST_PAYLOAD_TYPE,
};
use proptest::prelude::*;

use crate::{ed25519_key, ed25519_public, p256_key, p256_public};

fn both_keys() -> [SigningKey; 2] {
    [ed25519_key(), p256_key()]
}

#[test]
fn pae_is_the_dsse_v1_encoding() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    // Lengths count bytes, not characters.
    assert_eq!(pae("t\u{e9}", b"\xff"), b"DSSEv1 3 t\xc3\xa9 1 \xff".to_vec());
}

proptest! {
    #[test]
    fn signed_envelopes_verify_for_both_algorithms(
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
        payload_type in "[a-z/.+-]{0,40}",
    ) {
        for key in both_keys() {
            let envelope = sign_envelope(&key, &payload_type, &payload);
            let read_back = DsseEnvelope::from_json(&envelope.envelope_bytes()).unwrap();
            prop_assert_eq!(&read_back, &envelope);
            prop_assert_eq!(verify_envelope(&read_back, key.verifying_key()).unwrap(), payload.clone());
        }
    }
}

#[test]
fn envelopes_are_byte_identical_across_signings() {
    let manifest = br#"{"schema":"export-center/manifest/v1"}"#;
    for key in both_keys() {
        let first = sign_envelope(&key, MANIFEST_PAYLOAD_TYPE, manifest).envelope_bytes();
        let reloaded = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        let second = sign_envelope(&reloaded, MANIFEST_PAYLOAD_TYPE, manifest).envelope_bytes();
        assert_eq!(first, second, "{:?}", key.algorithm());
    }
}

#[test]
fn envelope_bytes_are_the_canonical_dsse_json() {
    let envelope = sign_envelope(&ed25519_key(), MANIFEST_PAYLOAD_TYPE, br#"{"a":1}"#);
    let expected = concat!(
        r#"{"payload":"eyJhIjoxfQ==","payloadType":"application/vnd.export-center.manifest+json","#,
        r#""signatures":[{"keyid":"7a4882461a1057f5482273968f070a0209b0bfa0c0747f0553f85cac5ac3873d","#,
        r#""sig":"w0Xxe7KfS9nZ0H1K2YtdzXSkN7/qkZ3ldkzJJ+qb8luu3+rWChZRrgIph9sOiQvBYpK4JloXdvOep+Uty3gOCw=="}]}"#,
    );
    assert_eq!(String::from_utf8(envelope.envelope_bytes()).unwrap(), expected);
}

#[test]
fn ecdsa_envelope_signatures_are_der() {
    let envelope = sign_envelope(&p256_key(), IN_TOTO_PAYLOAD_TYPE, b"{}");
    let sig = &envelope.signatures[0].sig;
    assert_eq!(sig[0], 0x30, "a DER SEQUENCE");
    assert_eq!(usize::from(sig[1]) + 2, sig.len());
}

#[test]
fn tampered_envelopes_do_not_verify() {
    for (key, public) in [(ed25519_key(), ed25519_public()), (p256_key(), p256_public())] {
        let envelope = sign_envelope(&key, MANIFEST_PAYLOAD_TYPE, b"{\"items\":[]}");

        let mut payload = envelope.clone();
        payload.payload[1] ^= 1;
        let mut payload_type = envelope.clone();
        payload_type.payload_type = IN_TOTO_PAYLOAD_TYPE.into();
        let mut sig = envelope.clone();
        let last = sig.signatures[0].sig.len() - 2;
        sig.signatures[0].sig[last] ^= 1;
        let mut truncated = envelope.clone();
        truncated.signatures[0].sig.pop();

        for tampered in [payload, payload_type, sig, truncated] {
            let err = verify_envelope(&tampered, &public).unwrap_err();
            assert!(matches!(err, SigningError::SignatureInvalid), "{err}");
            assert_eq!(err.to_string(), "signature invalid");
        }
        assert!(verify_envelope(&envelope, &public).is_ok());
    }
}

#[test]
fn envelopes_by_another_key_do_not_verify() {
    let envelope = sign_envelope(&ed25519_key(), MANIFEST_PAYLOAD_TYPE, b"{}");
    let err = verify_envelope(&envelope, &p256_public()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no signature by key {}", p256_public().keyid())
    );

    // A signature that claims the right keyid but was made by another key is invalid.
    let mut forged = envelope.clone();
    forged.signatures[0].keyid = p256_public().keyid().to_owned();
    let err = verify_envelope(&forged, &p256_public()).unwrap_err();
    assert!(matches!(err, SigningError::SignatureInvalid), "{err}");
}

#[test]
fn any_matching_signature_is_enough() {
    let payload = b"{}";
    let mut envelope = sign_envelope(&ed25519_key(), MANIFEST_PAYLOAD_TYPE, payload);
    envelope
        .signatures
        .extend(sign_envelope(&p256_key(), MANIFEST_PAYLOAD_TYPE, payload).signatures);
    assert_eq!(verify_envelope(&envelope, &ed25519_public()).unwrap(), payload);
    assert_eq!(verify_envelope(&envelope, &p256_public()).unwrap(), payload);
}

#[test]
fn malformed_envelopes_are_reported() {
    let err = DsseEnvelope::from_json(br#"{"payload":"!!","payloadType":"t","signatures":[]}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("reading DSSE envelope: invalid base64"),
        "{err}"
    );
    let err = DsseEnvelope::from_json(b"{}").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("reading DSSE envelope: missing field"),
        "{err}"
    );
}
