//! RFC 8785 (JCS) canonical JSON and SHA-256 digests, the two primitives every
//! deterministic output is built from.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Serializes `value` as RFC 8785 canonical JSON.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(value).expect("serializing a value to canonical JSON cannot fail")
}

/// Parses `bytes` as JSON and returns its RFC 8785 canonical form.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    Ok(canonical_json(&value))
}

/// A SHA-256 digest, written `sha256:<hex>` on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        self.hex_str(&mut [0; 64]).to_owned()
    }

    /// Lowercase hex, without the `sha256:` prefix, written into `out`.
    pub fn hex_str<'a>(&self, out: &'a mut [u8; 64]) -> &'a str {
        hex::encode_to_slice(self.0, out).expect("64 hex digits fit 64 bytes");
        std::str::from_utf8(out).expect("hex digits are ASCII")
    }

    /// Parses `sha256:<hex>` or bare 64-digit lowercase hex.
    pub fn parse(text: &str) -> Option<Self> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).ok()?;
        Some(Self(out))
    }
}

impl From<Sha256> for Sha256Digest {
    fn from(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        f.write_str(self.hex_str(&mut [0; 64]))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("expected `sha256:<64 hex digits>`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let out = canonicalize(br#"{ "b": 1, "a": [true, null, "\u00e9"], "c": 1.0e2 }"#).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":[true,null,\"\u{e9}\"],\"b\":1,\"c\":100}"
        );
    }

    #[test]
    fn digest_round_trips_through_text() {
        let digest = Sha256Digest::of(b"abc");
        assert_eq!(
            digest.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse(&digest.to_string()), Some(digest));
        assert_eq!(Sha256Digest::parse("sha256:zz"), None);
    }
}
