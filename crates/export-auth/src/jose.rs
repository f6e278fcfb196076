//! Compact JWS plumbing shared by tokens and proofs: base64url, splitting, the protected header.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// base64url without padding (RFC 7515 §2).
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes strict base64url without padding; `None` for anything else.
pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// base64url(SHA-256(`bytes`)), the form of `ath` and of JWK thumbprints.
pub(crate) fn b64_sha256(bytes: impl AsRef<[u8]>) -> String {
    b64(Sha256::digest(bytes))
}

/// The members of a JWS protected header that Export Center looks at.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) jwk: Option<serde_json::Map<String, serde_json::Value>>,
    /// Critical extensions: none is understood, so any `crit` means "reject".
    #[serde(default)]
    pub(crate) crit: Option<serde_json::Value>,
}

/// A compact JWS split into its parts, with the header decoded and the signature bytes.
pub(crate) struct Compact<'a> {
    pub(crate) header: Header,
    /// `base64url(header) || '.' || base64url(payload)`: the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: Vec<u8>,
}

impl<'a> Compact<'a> {
    /// Splits `text` into three base64url parts and decodes the header; `None` if malformed.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let (signing_input, signature) = text.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        let header: Header = serde_json::from_slice(&b64_decode(header)?).ok()?;
        let signature = b64_decode(signature)?;
        Some(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// Decodes the payload as JSON into `T`; `None` if it is not base64url JSON of that shape.
    pub(crate) fn claims<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&b64_decode(self.payload)?).ok()
    }
}

/// Decodes a JWT's payload without verifying anything: only to tell what kind of token a
/// client sent, never to trust it.
pub(crate) fn unverified_claims(text: &str) -> Option<serde_json::Value> {
    let mut parts = text.split('.');
    let payload = parts.nth(1)?;
    serde_json::from_slice(&b64_decode(payload)?).ok()
}

/// A JWT NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional; the
/// fraction is dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumericDate(pub(crate) chrono::DateTime<chrono::Utc>);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        let seconds = match number.as_i64() {
            Some(seconds) => seconds,
            None => match number.as_f64() {
                Some(seconds) if seconds.is_finite() && seconds.abs() < 1e15 => seconds.floor() as i64,
                _ => return Err(serde::de::Error::custom("numeric date out of range")),
            },
        };
        chrono::DateTime::from_timestamp(seconds, 0)
            .map(NumericDate)
            .ok_or_else(|| serde::de::Error::custom("numeric date out of range"))
    }
}
