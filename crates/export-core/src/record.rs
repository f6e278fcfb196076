//! The export record of SPEC §5, rendered straight into canonical JSON bytes.
//!
//! The stored document is already canonical, so a record is assembled by concatenation
//! in sorted key order instead of being parsed and re-serialized: that keeps export
//! fast and guarantees the document bytes are exactly those ingested.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canonical::Sha256Digest;
use crate::ids::SourceName;
use crate::target::{Kind, Target};

/// The format a document was written in, detected at ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    Osv,
    Csaf,
    Openvex,
    Cyclonedx,
    Policy,
}

impl DocumentFormat {
    pub const ALL: [DocumentFormat; 5] = [
        Self::Osv,
        Self::Csaf,
        Self::Openvex,
        Self::Cyclonedx,
        Self::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Osv => "osv",
            Self::Csaf => "csaf",
            Self::Openvex => "openvex",
            Self::Cyclonedx => "cyclonedx",
            Self::Policy => "policy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.as_str() == text)
    }
}

impl fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One evidence item as a run reads it from its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub kind: Kind,
    pub source: SourceName,
    pub format: DocumentFormat,
    pub id: String,
    pub modified: Option<String>,
    pub digest: Sha256Digest,
    /// The document in RFC 8785 canonical JSON, exactly as stored.
    pub document: Vec<u8>,
}

impl EvidenceRecord {
    /// Appends this record's canonical JSON (no trailing newline) to `out`:
    /// `{"digest":…,"document":…,"format":…,"id":…,"kind":…,"modified":…,"source":…}`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"digest\":\"sha256:");
        out.extend_from_slice(self.digest.hex_str(&mut [0; 64]).as_bytes());
        out.extend_from_slice(b"\",\"document\":");
        out.extend_from_slice(&self.document);
        out.extend_from_slice(b",\"format\":\"");
        out.extend_from_slice(self.format.as_str().as_bytes());
        out.extend_from_slice(b"\",\"id\":");
        write_json_string(out, &self.id);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"modified\":");
        match &self.modified {
            Some(modified) => write_json_string(out, modified),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(self.source.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

/// Writes `text` as a JSON string; serde_json escapes exactly as RFC 8785 requires
/// (`\"`, `\\`, the short escapes, `\u00xx` in lowercase for other controls).
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("writing a string to a Vec cannot fail");
}

/// The bytes of a `json` data file that come before the first record.
pub fn json_file_head() -> &'static [u8] {
    b"{\"items\":["
}

/// The bytes of a `json` data file after the last record: `],"kind":…,"target":…}`.
pub fn json_file_tail(target: &Target) -> Vec<u8> {
    let mut out = b"],\"kind\":\"".to_vec();
    out.extend_from_slice(target.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"target\":");
    write_json_string(&mut out, &target.to_string());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{canonical_json, canonicalize};

    fn record(id: &str, modified: Option<&str>) -> EvidenceRecord {
        let document = canonicalize(br#"{"id":"x","z":[1,2],"a":"\u0001"}"#).unwrap();
        EvidenceRecord {
            kind: Kind::Advisory,
            source: SourceName::parse("osv-go").unwrap(),
            format: DocumentFormat::Osv,
            id: id.to_owned(),
            modified: modified.map(str::to_owned),
            digest: Sha256Digest::of(&document),
            document,
        }
    }

    #[test]
    fn record_bytes_are_canonical_json() {
        for rec in [
            record("GO-2023-1840", Some("2023-06-08T19:04:05Z")),
            record("we\"ird\u{7}é", None),
        ] {
            let mut out = Vec::new();
            rec.write_canonical(&mut out);
            assert_eq!(
                canonicalize(&out).unwrap(),
                out,
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn json_file_frame_is_canonical() {
        let target = Target::parse("advisory:osv-go").unwrap();
        let mut out = json_file_head().to_vec();
        record("A", None).write_canonical(&mut out);
        out.push(b',');
        record("B", None).write_canonical(&mut out);
        out.extend_from_slice(&json_file_tail(&target));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(canonical_json(&value), out);
        assert_eq!(value["target"], "advisory:osv-go");
    }
}
