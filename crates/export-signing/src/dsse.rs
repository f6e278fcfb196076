//! DSSE (Dead Simple Signing Envelope, <https://github.com/secure-systems-lab/dsse>): the
//! pre-authentication encoding, the envelope and its JSON form, signing and verifying.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{SigningError, SigningKey, VerifyingKey};

/// The `payloadType` of `manifest.dsse.json`, whose payload is `manifest.json`.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.export-center.manifest+json";
/// The `payloadType` of `provenance.dsse.json`, whose payload is an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The DSSE v1 pre-authentication encoding, the bytes that are actually signed:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len());
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope, written as `{"payload":…,"payloadType":…,"signatures":[{"keyid":…,"sig":…}]}`
/// with `payload` and `sig` in standard, padded base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseEnvelope {
    /// The signed bytes, exactly as they were signed.
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<DsseSignature>,
}

/// One signature of a [`DsseEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseSignature {
    /// The signer's `keyid`; DSSE makes it optional, so a missing one reads as `""`.
    #[serde(default)]
    pub keyid: String,
    /// An Ed25519 signature or a DER-encoded ECDSA signature over the PAE.
    #[serde(with = "base64_bytes")]
    pub sig: Vec<u8>,
}

impl DsseEnvelope {
    /// The envelope as RFC 8785 canonical JSON, so equal envelopes are equal bytes.
    pub fn envelope_bytes(&self) -> Vec<u8> {
        export_core::canonical_json(self)
    }

    /// Reads an envelope from its JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SigningError> {
        serde_json::from_slice(bytes).map_err(|err| SigningError::MalformedEnvelope(err.to_string()))
    }

    /// The bytes a signature of this envelope covers.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }
}

/// Signs `payload` with `key` and wraps it in an envelope with that one signature.
pub fn sign_envelope(key: &SigningKey, payload_type: &str, payload: &[u8]) -> DsseEnvelope {
    let sig = key.sign(&pae(payload_type, payload));
    DsseEnvelope {
        payload: payload.to_vec(),
        payload_type: payload_type.to_owned(),
        signatures: vec![DsseSignature {
            keyid: key.keyid().to_owned(),
            sig,
        }],
    }
}

/// Returns the payload when one of the envelope's signatures is by `key` and verifies.
///
/// A signature is by `key` when its `keyid` is the key's (or, as DSSE allows, empty).
/// The caller still checks that `payloadType` is the one it expects.
pub fn verify_envelope(envelope: &DsseEnvelope, key: &VerifyingKey) -> Result<Vec<u8>, SigningError> {
    let mut candidates = envelope
        .signatures
        .iter()
        .filter(|signature| signature.keyid == key.keyid() || signature.keyid.is_empty())
        .peekable();
    if candidates.peek().is_none() {
        return Err(SigningError::NoSignatureByKey {
            keyid: key.keyid().to_owned(),
        });
    }
    let message = envelope.pae();
    if candidates.any(|signature| key.verify(&message, &signature.sig).is_ok()) {
        Ok(envelope.payload.clone())
    } else {
        Err(SigningError::SignatureInvalid)
    }
}

/// Standard padded base64 on the way out; on the way in also the URL-safe alphabet and
/// missing padding, which the DSSE protocol asks verifiers to accept.
mod base64_bytes {
    use super::*;

    const LENIENT_CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_CONFIG);
    const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_CONFIG);

    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        LENIENT_STANDARD
            .decode(&text)
            .or_else(|_| LENIENT_URL_SAFE.decode(&text))
            .map_err(|err| serde::de::Error::custom(format!("invalid base64: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_known_answer() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn envelope_json_uses_the_dsse_field_names() {
        let envelope = DsseEnvelope {
            payload: b"hello world".to_vec(),
            payload_type: "text/plain".into(),
            signatures: vec![DsseSignature {
                keyid: "k".into(),
                sig: vec![0xfb, 0xff],
            }],
        };
        let json = String::from_utf8(envelope.envelope_bytes()).unwrap();
        assert_eq!(
            json,
            r#"{"payload":"aGVsbG8gd29ybGQ=","payloadType":"text/plain","signatures":[{"keyid":"k","sig":"+/8="}]}"#
        );
        assert_eq!(DsseEnvelope::from_json(json.as_bytes()).unwrap(), envelope);
    }

    #[test]
    fn envelope_reads_url_safe_and_unpadded_base64_and_a_missing_keyid() {
        let json = br#"{"payload":"aGVsbG8gd29ybGQ","payloadType":"t","signatures":[{"sig":"-_8"}]}"#;
        let envelope = DsseEnvelope::from_json(json).unwrap();
        assert_eq!(envelope.payload, b"hello world");
        assert_eq!(envelope.signatures[0].keyid, "");
        assert_eq!(envelope.signatures[0].sig, vec![0xfb, 0xff]);
    }
}
