//! OSV advisories: `affected[]` ranges and versions to Trivy constraints, as trivy-db's
//! OSV importer writes them (`pkg/vulnsrc/osv/osv.go`, `range.go`; note §2.2).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    key_ids, merge_packages, rfc3339, Detail, Ecosystem, Mapped, Outcome, PackageVersions, Severity,
};
use crate::bolt::MAX_KEY_SIZE;
use crate::warnings::WarningCode;

#[derive(Debug, Deserialize)]
struct Osv {
    id: String,
    aliases: Option<Vec<String>>,
    summary: Option<String>,
    details: Option<String>,
    severity: Option<Vec<OsvSeverity>>,
    affected: Option<Vec<Affected>>,
    references: Option<Vec<Reference>>,
    published: Option<String>,
    modified: Option<String>,
    withdrawn: Option<String>,
    database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct OsvSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Debug, Deserialize)]
struct Affected {
    package: Option<Package>,
    ranges: Option<Vec<Range>>,
    versions: Option<Vec<String>>,
    severity: Option<Vec<OsvSeverity>>,
}

#[derive(Debug, Deserialize)]
struct Package {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    events: Option<Vec<Event>>,
}

#[derive(Debug, Deserialize)]
struct Event {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    url: Option<String>,
}

/// Maps one OSV document; `record_id` names it in warnings, and an advisory withdrawn at or
/// before `snapshot_time` is left out (the snapshot time, not now, keeps the output a
/// function of the snapshot).
pub(crate) fn map(record_id: &str, document: &[u8], snapshot_time: DateTime<Utc>) -> Outcome {
    let mut outcome = Outcome::default();
    let osv: Osv = match serde_json::from_slice(document) {
        Ok(osv) => osv,
        Err(err) => {
            outcome.note(WarningCode::UnparseableAdvisory, format!("{record_id}: {err}"));
            return outcome;
        }
    };
    if osv.id.is_empty() || osv.id.len() > MAX_KEY_SIZE {
        outcome.note(
            WarningCode::UnparseableAdvisory,
            format!("{record_id}: `id` is empty or too long"),
        );
        return outcome;
    }
    if let Some(withdrawn) = osv.withdrawn.as_deref() {
        let at = DateTime::parse_from_rfc3339(withdrawn).map(|time| time.to_utc());
        if at.is_err() || at.is_ok_and(|at| at <= snapshot_time) {
            outcome.note(WarningCode::WithdrawnAdvisory, "withdrawn");
            return outcome;
        }
    }
    if osv
        .details
        .as_deref()
        .is_some_and(|details| details.contains("** REJECT **"))
    {
        outcome.note(WarningCode::WithdrawnAdvisory, "rejected");
        return outcome;
    }

    let mut detail = Detail {
        title: osv.summary.filter(|text| !text.is_empty()),
        description: osv.details.filter(|text| !text.is_empty()),
        published: rfc3339(osv.published.as_deref()),
        modified: rfc3339(osv.modified.as_deref()),
        ..Detail::default()
    };
    let affected = osv.affected.unwrap_or_default();
    let severities = osv
        .severity
        .iter()
        .flatten()
        .chain(affected.iter().flat_map(|a| a.severity.iter().flatten()));
    for severity in severities {
        detail.cvss.set_vector(&severity.kind, &severity.score);
    }
    let database_specific = osv.database_specific.unwrap_or_default();
    detail.severity = database_specific["severity"]
        .as_str()
        .and_then(Severity::parse)
        .or_else(|| detail.cvss.severity());
    if let Some(cwe_ids) = database_specific["cwe_ids"].as_array() {
        let mut cwe_ids: Vec<String> = cwe_ids
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        cwe_ids.sort();
        cwe_ids.dedup();
        detail.cwe_ids = cwe_ids;
    }
    detail.references = osv
        .references
        .into_iter()
        .flatten()
        .filter_map(|r| r.url)
        .collect();
    super::dedup_in_order(&mut detail.references);

    let mut packages = Vec::new();
    for entry in affected {
        if let Some(package) = affected_package(entry, &mut outcome) {
            packages.push(package);
        }
    }
    if packages.is_empty() {
        return outcome;
    }
    let (ids, vendor_ids) = key_ids(&osv.id, osv.aliases.as_deref().unwrap_or_default());
    outcome.mapped.push(Mapped {
        ids,
        vendor_ids,
        packages: merge_packages(packages),
        detail,
    });
    outcome
}

/// One `affected[]` entry as a package's constraints, or `None` (with a note) when it
/// gives nothing Trivy can use.
fn affected_package(entry: Affected, outcome: &mut Outcome) -> Option<PackageVersions> {
    let Some(package) = entry.package else {
        outcome.note(
            WarningCode::UnexpressibleRange,
            "affected entry without a package",
        );
        return None;
    };
    let Some(ecosystem) = Ecosystem::from_osv(&package.ecosystem) else {
        outcome.note(WarningCode::UnsupportedEcosystem, package.ecosystem);
        return None;
    };
    if package.name.is_empty() || package.name.len() > MAX_KEY_SIZE / 2 {
        outcome.note(WarningCode::UnparseableAdvisory, "package name empty or too long");
        return None;
    }
    let mut vulnerable = Vec::new();
    let mut patched = Vec::new();
    for range in entry.ranges.into_iter().flatten() {
        match range.kind.as_str() {
            "ECOSYSTEM" | "SEMVER" => {
                let (constraints, fixed) = range_constraints(range.events.as_deref().unwrap_or_default());
                vulnerable.extend(constraints);
                patched.extend(fixed);
            }
            other => outcome.note(WarningCode::UnexpressibleRange, format!("{other} range")),
        }
    }
    // Every listed version as an equality; redundant with the ranges at worst.
    vulnerable.extend(
        entry
            .versions
            .into_iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .map(|v| format!("={v}")),
    );
    if vulnerable.is_empty() {
        // Patched versions alone would mark every other version vulnerable (note §2.3).
        outcome.note(
            WarningCode::UnexpressibleRange,
            "package without an affected version or range",
        );
        return None;
    }
    Some(PackageVersions {
        ecosystem,
        name: package.name,
        vulnerable,
        patched,
    })
}

/// The range's bound: the version, and whether it is itself affected (`last_affected`).
struct Bound {
    version: String,
    inclusive: bool,
}

/// OSV events, read in order, as trivy-db's `versionRange` strings (`>=X, <Y`, `<=Y`, `=X`,
/// `>=X`), plus the `fixed` versions for `PatchedVersions`. A `fixed` or `last_affected`
/// before any `introduced` opens its range at `0` (where trivy-db would panic), and empty
/// versions are skipped, since Trivy reads an empty constraint as "vulnerable".
fn range_constraints(events: &[Event]) -> (Vec<String>, Vec<String>) {
    let mut ranges: Vec<(String, Option<Bound>)> = Vec::new();
    let mut patched = Vec::new();
    for event in events {
        if let Some(introduced) = &event.introduced {
            let from = if introduced.is_empty() { "0" } else { introduced };
            ranges.push((from.to_owned(), None));
        }
        let bound = match (&event.fixed, &event.last_affected) {
            (Some(fixed), _) if !fixed.is_empty() => {
                patched.push(fixed.clone());
                Some(Bound {
                    version: fixed.clone(),
                    inclusive: false,
                })
            }
            (_, Some(last)) if !last.is_empty() => Some(Bound {
                version: last.clone(),
                inclusive: true,
            }),
            _ => None,
        };
        if let Some(bound) = bound {
            if ranges.is_empty() {
                ranges.push(("0".to_owned(), None));
            }
            ranges.last_mut().expect("a range was just opened").1 = Some(bound);
        }
    }
    let constraints = ranges
        .into_iter()
        .map(|(from, to)| match to {
            Some(Bound { version, inclusive }) if inclusive && version == from => format!("={version}"),
            None => format!(">={from}"),
            Some(Bound { version, inclusive }) => {
                let op = if inclusive { "<=" } else { "<" };
                if from == "0" {
                    format!("{op}{version}")
                } else {
                    format!(">={from}, {op}{version}")
                }
            }
        })
        .collect();
    (constraints, patched)
}

#[cfg(test)]
#[path = "osv_tests.rs"]
mod tests;
