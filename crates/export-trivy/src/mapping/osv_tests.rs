//! Tests of the OSV mapping: names, ranges, versions, ids, details and what is counted.

use serde_json::json;

use super::*;

fn map_json(document: serde_json::Value) -> Outcome {
    let snapshot = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .to_utc();
    map("TEST-1", &serde_json::to_vec(&document).unwrap(), snapshot)
}

fn advisory(affected: serde_json::Value) -> serde_json::Value {
    json!({"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2024-0001"], "affected": affected})
}

fn semver(events: serde_json::Value) -> serde_json::Value {
    json!([{"package": {"ecosystem": "npm", "name": "left-pad"}, "ranges": [{"type": "SEMVER", "events": events}]}])
}

fn only_package(outcome: &Outcome) -> &PackageVersions {
    assert_eq!(outcome.mapped.len(), 1, "{outcome:?}");
    assert_eq!(outcome.mapped[0].packages.len(), 1);
    &outcome.mapped[0].packages[0]
}

#[test]
fn ranges_become_the_constraint_strings_trivy_db_writes() {
    let cases = [
        (
            json!([{"introduced": "0"}, {"fixed": "1.2.0"}]),
            vec!["<1.2.0"],
            vec!["1.2.0"],
        ),
        (
            json!([{"introduced": "1.0.0"}, {"fixed": "1.2.0"}]),
            vec![">=1.0.0, <1.2.0"],
            vec!["1.2.0"],
        ),
        (
            json!([{"introduced": "0"}, {"last_affected": "1.1.0"}]),
            vec!["<=1.1.0"],
            vec![],
        ),
        (
            json!([{"introduced": "1.0.0"}, {"last_affected": "1.1.0"}]),
            vec![">=1.0.0, <=1.1.0"],
            vec![],
        ),
        (
            json!([{"introduced": "1.0.0"}, {"last_affected": "1.0.0"}]),
            vec!["=1.0.0"],
            vec![],
        ),
        (json!([{"introduced": "2.0.0"}]), vec![">=2.0.0"], vec![]),
        (json!([{"introduced": "0"}]), vec![">=0"], vec![]),
        // A fixed before any introduced opens at 0 (trivy-db would panic here).
        (json!([{"fixed": "3.0.0"}]), vec!["<3.0.0"], vec!["3.0.0"]),
        (
            json!([{"introduced": "1.0"}, {"fixed": "1.1"}, {"introduced": "2.0"}, {"fixed": "2.1"}]),
            vec![">=1.0, <1.1", ">=2.0, <2.1"],
            vec!["1.1", "2.1"],
        ),
        // Empty versions are never written: Trivy reads "" as "every version".
        (json!([{"introduced": ""}, {"fixed": ""}]), vec![">=0"], vec![]),
    ];
    for (events, vulnerable, patched) in cases {
        let outcome = map_json(advisory(semver(events.clone())));
        let package = only_package(&outcome);
        assert_eq!(package.vulnerable, vulnerable, "{events}");
        assert_eq!(package.patched, patched, "{events}");
        assert!(outcome.notes.is_empty());
    }
}

#[test]
fn ecosystem_ranges_and_explicit_versions_are_kept_and_git_ranges_counted() {
    let outcome = map_json(advisory(json!([
        {"package": {"ecosystem": "PyPI", "name": "Django"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "4.0"}, {"fixed": "4.0.2"}]},
                    {"type": "GIT", "repo": "https://github.com/django/django", "events": [{"introduced": "abc"}]}],
         "versions": ["4.0", "4.0.1"]},
        {"package": {"ecosystem": "PyPI", "name": "only-git"},
         "ranges": [{"type": "GIT", "events": [{"introduced": "abc"}, {"fixed": "def"}]}]}
    ])));
    let package = only_package(&outcome);
    assert_eq!(package.name, "Django");
    assert_eq!(package.vulnerable, [">=4.0, <4.0.2", "=4.0", "=4.0.1"]);
    assert_eq!(package.patched, ["4.0.2"]);
    let notes: Vec<_> = outcome
        .notes
        .iter()
        .map(|(code, reason)| (code.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        notes,
        [
            ("UNEXPRESSIBLE_RANGE", "GIT range"),
            (
                "UNEXPRESSIBLE_RANGE",
                "package without an affected version or range"
            )
        ]
    );
}

#[test]
fn every_ecosystem_trivy_scans_is_mapped_and_others_are_counted() {
    let affected: Vec<_> = [
        ("Go", "github.com/BurntSushi/toml"),
        ("PyPI", "zope.interface"),
        ("npm", "@babel/traverse"),
        ("Maven", "org.apache.logging.log4j:log4j-core"),
        ("crates.io", "smallvec"),
        ("RubyGems", "rack"),
        ("NuGet", "Newtonsoft.Json"),
        ("Packagist", "symfony/http-kernel"),
        ("Debian:12", "openssl"),
        ("Hex", "plug"),
    ]
    .into_iter()
    .map(
        |(ecosystem, name)| json!({"package": {"ecosystem": ecosystem, "name": name}, "versions": ["1.0.0"]}),
    )
    .collect();
    let outcome = map_json(advisory(json!(affected)));
    let packages: Vec<_> = outcome.mapped[0]
        .packages
        .iter()
        .map(|p| (p.ecosystem.bucket_prefix(), p.name.as_str(), p.vulnerable.clone()))
        .collect();
    let expected = [
        ("go", "github.com/BurntSushi/toml"),
        ("pip", "zope.interface"),
        ("npm", "@babel/traverse"),
        ("maven", "org.apache.logging.log4j:log4j-core"),
        ("cargo", "smallvec"),
        ("rubygems", "rack"),
        ("nuget", "Newtonsoft.Json"),
        ("composer", "symfony/http-kernel"),
    ]
    .map(|(prefix, name)| (prefix, name, vec!["=1.0.0".to_owned()]));
    assert_eq!(packages, expected);
    let notes: Vec<_> = outcome
        .notes
        .iter()
        .map(|(code, reason)| (code.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        notes,
        [
            ("UNSUPPORTED_ECOSYSTEM", "Debian:12"),
            ("UNSUPPORTED_ECOSYSTEM", "Hex")
        ]
    );
}

#[test]
fn the_same_package_named_twice_is_merged_into_one_entry() {
    let outcome = map_json(advisory(json!([
        {"package": {"ecosystem": "Go", "name": "example.com/m"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.1.0"}]}]},
        {"package": {"ecosystem": "Go", "name": "example.com/m"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "2.0.0"}, {"fixed": "2.0.3"}]}]}
    ])));
    let package = only_package(&outcome);
    assert_eq!(package.vulnerable, ["<1.1.0", ">=2.0.0, <2.0.3"]);
    assert_eq!(package.patched, ["1.1.0", "2.0.3"]);
}

#[test]
fn details_severity_and_cvss_come_from_the_advisory() {
    let mut document = advisory(semver(json!([{"introduced": "0"}, {"fixed": "1.0.1"}])));
    document["aliases"] = json!(["CVE-2024-0001", "CVE-2024-0002", "PYSEC-2024-1"]);
    document["summary"] = json!("Prototype pollution in left-pad");
    document["details"] = json!("A long description.");
    document["severity"] = json!([
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
        {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}
    ]);
    document["database_specific"] = json!({"severity": "MODERATE", "cwe_ids": ["CWE-79", "CWE-1321"]});
    document["references"] = json!([{"type": "WEB", "url": "https://example.com/a"}, {"type": "FIX", "url": "https://example.com/a"}]);
    document["published"] = json!("2024-01-02T03:04:05Z");
    document["modified"] = json!("2024-02-03T04:05:06.5+01:00");
    let outcome = map_json(document);
    let mapped = &outcome.mapped[0];
    assert_eq!(mapped.ids, ["CVE-2024-0001", "CVE-2024-0002"]);
    assert_eq!(mapped.vendor_ids, ["GHSA-aaaa-bbbb-cccc", "PYSEC-2024-1"]);
    let detail = &mapped.detail;
    assert_eq!(detail.title.as_deref(), Some("Prototype pollution in left-pad"));
    assert_eq!(detail.description.as_deref(), Some("A long description."));
    // The advisory's own severity word wins over the score (9.8, which would be CRITICAL).
    assert_eq!(detail.severity, Some(Severity::Medium));
    assert_eq!(detail.cvss.v3_score, Some(9.8));
    assert_eq!(detail.cvss.v40_score, Some(9.3));
    assert!(detail
        .cvss
        .v40_vector
        .as_deref()
        .unwrap()
        .starts_with("CVSS:4.0/"));
    assert_eq!(detail.cwe_ids, ["CWE-1321", "CWE-79"]);
    assert_eq!(detail.references, ["https://example.com/a"]);
    assert_eq!(detail.published.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert_eq!(detail.modified.as_deref(), Some("2024-02-03T03:05:06.500Z"));

    // Without a severity word, the score decides.
    let mut document = advisory(semver(json!([{"introduced": "0"}])));
    document["severity"] =
        json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N"}]);
    assert_eq!(map_json(document).mapped[0].detail.severity, Some(Severity::Low));
}

#[test]
fn withdrawn_and_rejected_advisories_are_left_out_and_counted() {
    let mut withdrawn = advisory(semver(json!([{"introduced": "0"}])));
    withdrawn["withdrawn"] = json!("2026-11-30T00:00:00Z");
    let outcome = map_json(withdrawn.clone());
    assert!(outcome.mapped.is_empty());
    assert_eq!(outcome.notes.first().unwrap().0, WarningCode::WithdrawnAdvisory);
    // Withdrawn after the snapshot time: still in this snapshot's database.
    withdrawn["withdrawn"] = json!("2026-12-02T00:00:00Z");
    assert_eq!(map_json(withdrawn).mapped.len(), 1);

    let mut rejected = advisory(semver(json!([{"introduced": "0"}])));
    rejected["details"] = json!("** REJECT ** DO NOT USE THIS CANDIDATE NUMBER.");
    let outcome = map_json(rejected);
    assert!(outcome.mapped.is_empty());
    assert_eq!(
        outcome.notes.first().unwrap(),
        &(WarningCode::WithdrawnAdvisory, "rejected".to_owned())
    );
}

#[test]
fn documents_that_are_not_osv_are_counted_as_unparseable() {
    for document in [
        json!({"affected": []}),
        json!({"id": "", "affected": []}),
        json!({"id": 5}),
    ] {
        let outcome = map_json(document.clone());
        assert!(outcome.mapped.is_empty());
        let (code, reason) = outcome.notes.first().unwrap();
        assert_eq!(*code, WarningCode::UnparseableAdvisory, "{document}");
        assert!(reason.starts_with("TEST-1: "), "{reason}");
    }
}
