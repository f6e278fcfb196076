//! From advisory documents (OSV, CSAF) to what trivy.db holds: per-package version
//! constraints under Trivy's ecosystem buckets, and each vulnerability's details.
//! The rules follow trivy-db's own importers (`docs/trivy-db-format.md` §1-2).

pub(crate) mod csaf;
pub(crate) mod ecosystem;
pub(crate) mod osv;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};

pub(crate) use self::ecosystem::Ecosystem;
use crate::warnings::WarningCode;

/// One vulnerability of one advisory, ready for the database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapped {
    /// The keys it is stored under: each CVE id, or the advisory's own id when it has none.
    pub(crate) ids: Vec<String>,
    /// The advisory's other ids (sorted), kept as `VendorIDs`.
    pub(crate) vendor_ids: Vec<String>,
    pub(crate) packages: Vec<PackageVersions>,
    pub(crate) detail: Detail,
}

/// The affected versions of one package, as Trivy's `VulnerableVersions` (ORed constraint
/// strings) and `PatchedVersions` (bare versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageVersions {
    pub(crate) ecosystem: Ecosystem,
    /// The name as the advisory gives it; the builder derives the stored keys.
    pub(crate) name: String,
    pub(crate) vulnerable: Vec<String>,
    pub(crate) patched: Vec<String>,
}

/// What one document gives: its vulnerabilities, and what was left out, by reason.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) mapped: Vec<Mapped>,
    pub(crate) notes: BTreeSet<(WarningCode, String)>,
}

impl Outcome {
    pub(crate) fn note(&mut self, code: WarningCode, reason: impl Into<String>) {
        self.notes.insert((code, reason.into()));
    }
}

/// The `vulnerability` bucket's value for one id, minus the per-source maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Detail {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) severity: Option<Severity>,
    pub(crate) cvss: Cvss,
    pub(crate) cwe_ids: Vec<String>,
    pub(crate) references: Vec<String>,
    pub(crate) published: Option<String>,
    pub(crate) modified: Option<String>,
}

/// trivy-db's `CVSS` entry; the fields are declared in sorted order, so the JSON keys are
/// sorted as trivy-db's published values are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cvss {
    #[serde(rename = "V2Score", skip_serializing_if = "Option::is_none")]
    pub(crate) v2_score: Option<f64>,
    #[serde(rename = "V2Vector", skip_serializing_if = "Option::is_none")]
    pub(crate) v2_vector: Option<String>,
    #[serde(rename = "V3Score", skip_serializing_if = "Option::is_none")]
    pub(crate) v3_score: Option<f64>,
    #[serde(rename = "V3Vector", skip_serializing_if = "Option::is_none")]
    pub(crate) v3_vector: Option<String>,
    #[serde(rename = "V40Score", skip_serializing_if = "Option::is_none")]
    pub(crate) v40_score: Option<f64>,
    #[serde(rename = "V40Vector", skip_serializing_if = "Option::is_none")]
    pub(crate) v40_vector: Option<String>,
}

impl Cvss {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets the vector of a `CVSS_V2` / `CVSS_V3` / `CVSS_V4` severity and its base score,
    /// computed from the vector as trivy-db does (the vector is kept when it does not parse).
    pub(crate) fn set_vector(&mut self, kind: &str, vector: &str) {
        match kind {
            "CVSS_V3" => {
                self.v3_score = vector
                    .parse::<cvss::v3::Vector>()
                    .ok()
                    .map(|v| v.base_score().value());
                self.v3_vector = Some(vector.to_owned());
            }
            "CVSS_V4" => {
                self.v40_score = vector.parse::<cvss::v4::Vector>().ok().map(|v| v.score().value());
                self.v40_vector = Some(vector.to_owned());
            }
            "CVSS_V2" => {
                self.v2_score = vector.parse::<cvss::v2::Vector>().ok().map(|v| v.score().value());
                self.v2_vector = Some(vector.to_owned());
            }
            _ => {}
        }
    }

    /// The severity the newest CVSS version's score gives (trivy-db's `scoreToSeverity`).
    pub(crate) fn severity(&self) -> Option<Severity> {
        let score = self.v40_score.or(self.v3_score).or(self.v2_score)?;
        Some(match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Unknown,
        })
    }
}

/// Trivy's severities; the discriminant is the `VendorSeverity` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Unknown = 0,
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    /// A severity word as advisories write it: GHSA's `MODERATE`, Red Hat's `Important`, CVSS's
    /// `MEDIUM` (case-insensitive).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "low" => Self::Low,
            "moderate" | "medium" => Self::Medium,
            "high" | "important" => Self::High,
            "critical" => Self::Critical,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

/// Splits an advisory's ids into keys and vendor ids as trivy-db's `groupVulnIDs` does:
/// every CVE id is a key (one entry each), else the advisory's own id is; all other ids
/// are vendor ids. Both lists are sorted and without duplicates.
pub(crate) fn key_ids(own_id: &str, aliases: &[String]) -> (Vec<String>, Vec<String>) {
    let all: BTreeSet<&str> = std::iter::once(own_id)
        .chain(aliases.iter().map(String::as_str))
        .filter(|id| !id.is_empty())
        .collect();
    let cves: Vec<String> = all
        .iter()
        .filter(|id| id.starts_with("CVE-"))
        .map(|id| id.to_string())
        .collect();
    let keys = if cves.is_empty() {
        vec![own_id.to_owned()]
    } else {
        cves
    };
    let vendor_ids = all
        .into_iter()
        .filter(|id| !keys.iter().any(|k| k == id))
        .map(str::to_owned)
        .collect();
    (keys, vendor_ids)
}

/// A timestamp as RFC 3339 in UTC, which Go's `time.Time` reads; anything else is dropped
/// (an unreadable date would make Trivy fail to read the whole vulnerability).
pub(crate) fn rfc3339(text: Option<&str>) -> Option<String> {
    let time = DateTime::parse_from_rfc3339(text?.trim()).ok()?;
    Some(time.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Removes later duplicates, keeping the first occurrence's position.
pub(crate) fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// Merges the version lists of packages that an advisory names more than once (trivy-db
/// appends them into one advisory), keyed by (ecosystem, name).
pub(crate) fn merge_packages(packages: Vec<PackageVersions>) -> Vec<PackageVersions> {
    let mut merged: BTreeMap<(Ecosystem, String), PackageVersions> = BTreeMap::new();
    for package in packages {
        match merged.entry((package.ecosystem, package.name.clone())) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(package);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                let existing = slot.get_mut();
                existing.vulnerable.extend(package.vulnerable);
                existing.patched.extend(package.patched);
            }
        }
    }
    merged
        .into_values()
        .map(|mut package| {
            dedup_in_order(&mut package.vulnerable);
            dedup_in_order(&mut package.patched);
            package
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cve_aliases_are_the_keys_and_the_other_ids_vendor_ids() {
        let aliases = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_ids(
                "GO-2020-0001",
                &aliases(&["CVE-2020-36567", "GHSA-6vm3-jj99-7229"])
            ),
            (
                aliases(&["CVE-2020-36567"]),
                aliases(&["GHSA-6vm3-jj99-7229", "GO-2020-0001"])
            )
        );
        assert_eq!(
            key_ids("GHSA-xxxx", &aliases(&["CVE-2024-2", "CVE-2024-1"])),
            (aliases(&["CVE-2024-1", "CVE-2024-2"]), aliases(&["GHSA-xxxx"]))
        );
        assert_eq!(
            key_ids("RUSTSEC-2021-0003", &aliases(&["GHSA-43w2-9j62-hq99"])),
            (aliases(&["RUSTSEC-2021-0003"]), aliases(&["GHSA-43w2-9j62-hq99"]))
        );
    }

    #[test]
    fn scores_are_computed_from_vectors_and_give_the_severity() {
        let mut cvss = Cvss::default();
        cvss.set_vector("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H");
        assert_eq!(cvss.v3_score, Some(10.0));
        assert_eq!(cvss.severity(), Some(Severity::Critical));
        cvss.set_vector("CVSS_V2", "AV:N/AC:M/Au:N/C:P/I:N/A:N");
        assert_eq!(cvss.v2_score, Some(4.3));
        let mut cvss = Cvss::default();
        cvss.set_vector("CVSS_V3", "not a vector");
        assert_eq!(
            (cvss.v3_vector.as_deref(), cvss.v3_score),
            (Some("not a vector"), None)
        );
        assert_eq!(Severity::parse("MODERATE"), Some(Severity::Medium));
        assert_eq!(Severity::parse("Important"), Some(Severity::High));
    }

    #[test]
    fn timestamps_become_utc_rfc3339_or_are_dropped() {
        assert_eq!(
            rfc3339(Some("2021-04-14T20:04:52Z")).as_deref(),
            Some("2021-04-14T20:04:52Z")
        );
        assert_eq!(
            rfc3339(Some("2022-03-14T13:10:55.000+01:00")).as_deref(),
            Some("2022-03-14T12:10:55Z")
        );
        assert_eq!(rfc3339(Some("14 April 2021")), None);
    }
}
