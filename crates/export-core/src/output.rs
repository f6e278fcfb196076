//! What kind of file a run output is.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::target::Kind;

/// A run output's type, as the run status and the manifest name it: a target's data file
/// is typed by its kind (`advisory`, `vex`, `policy`), every other output by what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    Data(Kind),
    /// `trivy-db.tar.gz` (SPEC §14).
    TrivyDb,
    /// A mirror bundle's `mirror.json` (SPEC §15).
    Mirror,
    /// A delta mirror bundle's `tombstones.ndjson`.
    Tombstones,
    Manifest,
    Checksums,
    Provenance,
    Bundle,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data(kind) => kind.as_str(),
            Self::TrivyDb => "trivy-db",
            Self::Mirror => "mirror",
            Self::Tombstones => "tombstones",
            Self::Manifest => "manifest",
            Self::Checksums => "checksums",
            Self::Provenance => "provenance",
            Self::Bundle => "bundle",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let fixed = [
            Self::TrivyDb,
            Self::Mirror,
            Self::Tombstones,
            Self::Manifest,
            Self::Checksums,
            Self::Provenance,
            Self::Bundle,
        ];
        Kind::parse(text)
            .map(Self::Data)
            .or_else(|| fixed.into_iter().find(|kind| kind.as_str() == text))
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OutputKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OutputKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown output type `{text}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_kind_reads_back_from_its_name() {
        for kind in [
            OutputKind::Data(Kind::Advisory),
            OutputKind::Data(Kind::Vex),
            OutputKind::Data(Kind::Policy),
            OutputKind::TrivyDb,
            OutputKind::Mirror,
            OutputKind::Tombstones,
            OutputKind::Manifest,
            OutputKind::Checksums,
            OutputKind::Provenance,
            OutputKind::Bundle,
        ] {
            assert_eq!(OutputKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<OutputKind>(&json).unwrap(), kind);
        }
        assert_eq!(OutputKind::parse("sbom"), None);
    }
}
