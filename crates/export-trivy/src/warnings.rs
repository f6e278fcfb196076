//! What the mapping leaves out, counted by reason: the entries of a run's `warnings[]`.

use std::collections::{BTreeMap, BTreeSet};

/// Why something of an advisory did not make it into the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningCode {
    /// Packages of an ecosystem Trivy does not scan (or a CSAF product without a package URL).
    UnsupportedEcosystem,
    /// Version ranges Trivy cannot evaluate: OSV `GIT` ranges, CSAF products without a version,
    /// `vers` constraints such as `!=`, packages with no affected version at all.
    UnexpressibleRange,
    /// A document that is not OSV or CSAF JSON of the expected shape.
    UnparseableAdvisory,
    /// An advisory withdrawn before the snapshot time, or marked `** REJECT **`.
    WithdrawnAdvisory,
    /// An advisory that names no affected package at all (OSV without `affected`, CSAF
    /// without `vulnerabilities` or product status).
    NoAffectedPackages,
    /// A record that is not an advisory (VEX, policy) handed to the builder.
    NotAnAdvisory,
}

impl WarningCode {
    /// The code as it appears in a run's `warnings[]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedEcosystem => "UNSUPPORTED_ECOSYSTEM",
            Self::UnexpressibleRange => "UNEXPRESSIBLE_RANGE",
            Self::UnparseableAdvisory => "UNPARSEABLE_ADVISORY",
            Self::WithdrawnAdvisory => "WITHDRAWN_ADVISORY",
            Self::NoAffectedPackages => "NO_AFFECTED_PACKAGES",
            Self::NotAnAdvisory => "NOT_AN_ADVISORY",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Self::UnsupportedEcosystem => {
                "name packages of ecosystems Trivy does not scan; those packages are left out of trivy.db"
            }
            Self::UnexpressibleRange => {
                "have version ranges Trivy cannot evaluate; those ranges are left out of trivy.db"
            }
            Self::UnparseableAdvisory => "could not be read as OSV or CSAF and are left out of trivy.db",
            Self::WithdrawnAdvisory => {
                "were withdrawn or rejected by the snapshot time and are left out of trivy.db"
            }
            Self::NoAffectedPackages => "name no affected package and add nothing to trivy.db",
            Self::NotAnAdvisory => "are not advisories and are left out of trivy.db",
        }
    }
}

/// One entry for the run's `warnings[]`: a code, how many advisories it concerns, and a
/// message that names the reasons (with counts) in sorted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrivyWarning {
    pub code: WarningCode,
    /// The number of records (advisories) concerned.
    pub count: u64,
    pub message: String,
}

/// How many reasons a message lists before it says "and N more".
const LISTED_REASONS: usize = 10;

/// Counts of (code, reason) over records; a record counts once per code and per reason.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    codes: BTreeMap<WarningCode, (u64, BTreeMap<String, u64>)>,
}

impl Tally {
    /// Adds one record's notes.
    pub(crate) fn add(&mut self, notes: &BTreeSet<(WarningCode, String)>) {
        let mut codes = BTreeSet::new();
        for (code, reason) in notes {
            let (count, reasons) = self.codes.entry(*code).or_default();
            if codes.insert(*code) {
                *count += 1;
            }
            *reasons.entry(reason.clone()).or_default() += 1;
        }
    }

    pub(crate) fn warnings(&self) -> Vec<TrivyWarning> {
        self.codes
            .iter()
            .map(|(code, (count, reasons))| {
                let mut listed: Vec<String> = reasons
                    .iter()
                    .take(LISTED_REASONS)
                    .map(|(reason, n)| format!("{reason} ({n})"))
                    .collect();
                if reasons.len() > LISTED_REASONS {
                    listed.push(format!("and {} more", reasons.len() - LISTED_REASONS));
                }
                let noun = if *count == 1 { "advisory" } else { "advisories" };
                TrivyWarning {
                    code: *code,
                    count: *count,
                    message: format!("{count} {noun} {}: {}", code.explanation(), listed.join(", ")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_counts_once_per_code_and_reasons_are_listed_sorted() {
        let mut tally = Tally::default();
        let note = |code, reason: &str| (code, reason.to_owned());
        tally.add(&BTreeSet::from([
            note(WarningCode::UnsupportedEcosystem, "Debian:12"),
            note(WarningCode::UnsupportedEcosystem, "Alpine:v3.20"),
        ]));
        tally.add(&BTreeSet::from([note(
            WarningCode::UnsupportedEcosystem,
            "Debian:12",
        )]));
        let warnings = tally.warnings();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].code.as_str(), "UNSUPPORTED_ECOSYSTEM");
        assert_eq!(warnings[0].count, 2);
        assert_eq!(
            warnings[0].message,
            "2 advisories name packages of ecosystems Trivy does not scan; those packages are left out \
             of trivy.db: Alpine:v3.20 (1), Debian:12 (2)"
        );
    }
}
