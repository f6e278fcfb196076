//! What to export (`Target`: a kind, optionally narrowed to one source) and how to
//! render it (`Format`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, SourceName};

/// The kind of an evidence item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Advisory,
    Policy,
    Vex,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Advisory, Kind::Policy, Kind::Vex];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advisory => "advisory",
            Self::Policy => "policy",
            Self::Vex => "vex",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `advisory`, `vex`, `policy`, or one of them narrowed to a source (`advisory:osv-go`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: Kind,
    pub source: Option<SourceName>,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let (kind, source) = match text.split_once(':') {
            Some((kind, source)) => (kind, Some(SourceName::parse(source)?)),
            None => (text, None),
        };
        let kind = Kind::parse(kind).ok_or_else(|| IdError {
            what: "target",
            value: text.chars().take(80).collect(),
            reason: "expected `advisory`, `vex` or `policy`, optionally followed by `:<source>`",
        })?;
        Ok(Self { kind, source })
    }

    /// Whether this target (a profile's allowance) admits `requested`: a kind-wide
    /// allowance admits every source of that kind.
    pub fn admits(&self, requested: &Target) -> bool {
        self.kind == requested.kind && (self.source.is_none() || self.source == requested.source)
    }

    /// The data file name without extension: `advisory`, `vex-redhat-csaf`.
    pub fn file_stem(&self) -> String {
        match &self.source {
            Some(source) => format!("{}-{}", self.kind, source),
            None => self.kind.to_string(),
        }
    }

    /// The data file name of this target in `format`: `advisory.ndjson`.
    pub fn file_name(&self, format: Format) -> String {
        format!("{}.{}", self.file_stem(), format.extension())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}:{}", self.kind, source),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl FromStr for Target {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        Self::parse(text)
    }
}

/// Targets sort by their written form, which is how normalized requests list them.
impl Ord for Target {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for Target {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How a target is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Ndjson,
    /// A Trivy vulnerability database of all the run's advisory targets together
    /// (SPEC §14): one output, not one file per target.
    #[serde(rename = "trivy-db")]
    TrivyDb,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Json, Format::Ndjson, Format::TrivyDb];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Ndjson => "ndjson",
            Self::TrivyDb => "trivy-db",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.as_str() == text)
    }

    /// Whether each target gets a data file of its own in this format.
    pub fn per_target(self) -> bool {
        !matches!(self, Self::TrivyDb)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::TrivyDb => "tar.gz",
            _ => self.as_str(),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
            Self::TrivyDb => "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_name_their_files() {
        let target = Target::parse("vex:redhat-csaf").unwrap();
        assert_eq!(target.file_name(Format::Json), "vex-redhat-csaf.json");
        assert_eq!(
            Target::parse("advisory").unwrap().file_name(Format::Ndjson),
            "advisory.ndjson"
        );
        assert!(Target::parse("advisories").is_err());
        assert!(Target::parse("vex:").is_err());
        assert!(Target::parse("vex:Bad/Source").is_err());
    }

    #[test]
    fn kind_wide_allowance_admits_every_source() {
        let kind_wide = Target::parse("advisory").unwrap();
        let narrow = Target::parse("advisory:osv-go").unwrap();
        assert!(kind_wide.admits(&narrow));
        assert!(!narrow.admits(&kind_wide));
        assert!(!kind_wide.admits(&Target::parse("vex").unwrap()));
    }
}
