//! Tests of the CSAF mapping: package URLs, `vers` ranges, product status and details.

use serde_json::json;

use super::*;

#[test]
fn package_urls_give_type_namespace_name_and_version() {
    let purl = |text| Purl::parse(text).map(|p| (p.purl_type, p.namespace, p.name, p.version));
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        purl("pkg:npm/%40babel/traverse@7.23.1?foo=bar#sub"),
        Some(("npm".into(), some("@babel"), "traverse".into(), some("7.23.1")))
    );
    assert_eq!(
        purl("pkg:npm/@babel/traverse"),
        Some(("npm".into(), some("@babel"), "traverse".into(), None))
    );
    assert_eq!(
        purl("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"),
        Some((
            "maven".into(),
            some("org.apache.logging.log4j"),
            "log4j-core".into(),
            some("2.14.1")
        ))
    );
    assert_eq!(
        purl("pkg:golang/github.com/gin-gonic/gin@v1.9.0"),
        Some((
            "golang".into(),
            some("github.com/gin-gonic"),
            "gin".into(),
            some("v1.9.0")
        ))
    );
    assert_eq!(
        purl("pkg:pypi/django@4.0"),
        Some(("pypi".into(), None, "django".into(), some("4.0")))
    );
    assert_eq!(purl("cpe:/a:vendor:product"), None);
    assert_eq!(purl("pkg:npm/%zz"), None);
}

#[test]
fn vers_ranges_become_trivy_constraints() {
    let range = |text| match vers_constraints(text) {
        Versions::Range(constraints) => Ok(constraints),
        Versions::Unexpressible(reason) => Err(reason),
        Versions::Exact(_) => unreachable!(),
    };
    assert_eq!(
        range("vers:npm/>=1.0.0|<1.2.0"),
        Ok(vec![">=1.0.0, <1.2.0".to_owned()])
    );
    assert_eq!(
        range("vers:pypi/<0.9|>=1.0|<=1.4|2.0.1|>3.0"),
        Ok(vec![
            "<0.9".into(),
            ">=1.0, <=1.4".into(),
            "=2.0.1".into(),
            ">3.0".into()
        ])
    );
    assert_eq!(range("vers:maven/*"), Ok(vec![">=0".to_owned()]));
    assert_eq!(
        range("vers:npm/!=1.0.0"),
        Err("CSAF product_version_range with a != constraint".into())
    );
    assert_eq!(
        range("1.0 to 1.4"),
        Err("CSAF product_version_range not in vers: syntax".into())
    );
}

/// A CSAF advisory shaped like the BSI fixture, with package URLs on its products.
fn advisory() -> serde_json::Value {
    let version = |id: &str, version: &str| {
        json!({"category": "product_version", "name": version,
               "product": {"name": format!("converter {version}"), "product_id": id,
                           "product_identification_helper": {"purl": format!("pkg:pypi/cvrf-csaf-converter@{version}")}}})
    };
    json!({
        "document": {
            "category": "csaf_security_advisory", "csaf_version": "2.0", "title": "Converter XXE",
            "aggregate_severity": {"text": "Important"},
            "tracking": {"id": "BSI-2022-0001", "initial_release_date": "2022-03-17T13:03:42.105Z",
                         "current_release_date": "2022-03-24T08:30:00.000+01:00"},
            "references": [{"url": "https://example.com/advisory", "summary": "advisory"}]
        },
        "product_tree": {"branches": [{"category": "vendor", "name": "CSAF Tools", "branches": [
            {"category": "product_name", "name": "CVRF-CSAF-Converter", "branches": [
                version("P1", "1.0.0-rc1"), version("P2", "1.0.0-rc2"),
                {"category": "product_version_range", "name": "vers:pypi/>=0.1|<0.5",
                 "product": {"name": "old", "product_id": "P3",
                             "product_identification_helper": {"purl": "pkg:pypi/cvrf-csaf-converter"}}},
                {"category": "product_version_range", "name": "vers:pypi/!=0.7",
                 "product": {"name": "odd", "product_id": "P4",
                             "product_identification_helper": {"purl": "pkg:pypi/cvrf-csaf-converter"}}}
            ]},
            {"category": "product_name", "name": "RPM", "product": {"name": "rpm", "product_id": "R1",
                "product_identification_helper": {"purl": "pkg:rpm/redhat/openssl@1.1"}}},
            {"category": "product_name", "name": "Appliance", "product": {"name": "box", "product_id": "A1"}}
        ]}]},
        "vulnerabilities": [{
            "cve": "CVE-2022-27193",
            "cwe": {"id": "CWE-611", "name": "XXE"},
            "ids": [{"system_name": "Github Issue", "text": "csaf-tools/CVRF-CSAF-Converter#78"}],
            "notes": [{"category": "description", "text": "The converter resolves XML external entities."}],
            "product_status": {"known_affected": ["P1", "P3", "P4", "R1", "A1"], "fixed": ["P2"], "first_fixed": ["P2"]},
            "scores": [{"products": ["P1"], "cvss_v3": {"baseScore": 6.1, "baseSeverity": "MEDIUM",
                        "vectorString": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:N/A:L", "version": "3.1"}}]
        }]
    })
}

fn map_json(document: &serde_json::Value) -> Outcome {
    map("BSI-2022-0001", &serde_json::to_vec(document).unwrap())
}

#[test]
fn products_with_package_urls_become_packages_with_their_versions() {
    let outcome = map_json(&advisory());
    assert_eq!(outcome.mapped.len(), 1);
    let mapped = &outcome.mapped[0];
    assert_eq!(mapped.ids, ["CVE-2022-27193"]);
    assert_eq!(
        mapped.vendor_ids,
        ["BSI-2022-0001", "csaf-tools/CVRF-CSAF-Converter#78"]
    );
    assert_eq!(mapped.packages.len(), 1);
    let package = &mapped.packages[0];
    assert_eq!(
        (package.ecosystem, package.name.as_str()),
        (Ecosystem::Pip, "cvrf-csaf-converter")
    );
    assert_eq!(package.vulnerable, ["=1.0.0-rc1", ">=0.1, <0.5"]);
    assert_eq!(package.patched, ["1.0.0-rc2"]);
    let notes: Vec<_> = outcome
        .notes
        .iter()
        .map(|(code, reason)| (code.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        notes,
        [
            ("UNSUPPORTED_ECOSYSTEM", "CSAF product without a package URL"),
            ("UNSUPPORTED_ECOSYSTEM", "pkg:rpm"),
            (
                "UNEXPRESSIBLE_RANGE",
                "CSAF product_version_range with a != constraint"
            ),
        ]
    );
    let detail = &mapped.detail;
    assert_eq!(detail.title.as_deref(), Some("Converter XXE"));
    assert_eq!(
        detail.description.as_deref(),
        Some("The converter resolves XML external entities.")
    );
    assert_eq!(detail.severity, Some(Severity::Medium));
    assert_eq!(detail.cvss.v3_score, Some(6.1));
    assert_eq!(detail.cwe_ids, ["CWE-611"]);
    assert_eq!(detail.references, ["https://example.com/advisory"]);
    assert_eq!(detail.published.as_deref(), Some("2022-03-17T13:03:42.105Z"));
    assert_eq!(detail.modified.as_deref(), Some("2022-03-24T07:30:00Z"));
}

#[test]
fn fixed_only_packages_are_not_written_and_the_aggregate_severity_is_the_fallback() {
    let mut document = advisory();
    document["vulnerabilities"][0]["product_status"] = json!({"fixed": ["P2"]});
    let outcome = map_json(&document);
    assert!(outcome.mapped.is_empty());
    assert!(outcome.notes.contains(&(
        WarningCode::UnexpressibleRange,
        "CSAF package without an affected version".into()
    )));

    let mut document = advisory();
    document["vulnerabilities"][0]["scores"] = json!([]);
    assert_eq!(
        map_json(&document).mapped[0].detail.severity,
        Some(Severity::High)
    );
}

#[test]
fn corpus_csaf_advisories_without_package_urls_are_counted_not_mapped() {
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/corpus/csaf");
    for name in [
        "bsi-2022-0001.json",
        "rhsa-2021_5186.json",
        "cisco-sa-20180328-smi2.json",
    ] {
        let document = std::fs::read(format!("{corpus}/{name}")).unwrap();
        let outcome = map(name, &document);
        assert!(outcome.mapped.is_empty(), "{name}");
        assert!(
            outcome
                .notes
                .iter()
                .all(|(code, _)| *code == WarningCode::UnsupportedEcosystem),
            "{name}: {:?}",
            outcome.notes
        );
        assert!(!outcome.notes.is_empty(), "{name}");
    }
}
