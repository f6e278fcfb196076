//! The acceptance test of SPEC §14's finding parity: the real Trivy, offline, on projects
//! that pin a version inside each advisory range and one just outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use export_core::record::{DocumentFormat, EvidenceRecord};
use export_core::target::Kind;
use export_core::{canonicalize, Sha256Digest, SourceName};
use export_trivy::{TrivyDbBuilder, TrivyDbOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::go_corpus::{self, GoAdvisory};
use crate::{projects, trivy};

/// Every how many Go corpus advisories (in file-name order) one is sampled.
const GO_SAMPLE_STEP: usize = 50;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
}

fn record(source: &str, format: DocumentFormat, path: &Path) -> (EvidenceRecord, Value) {
    let document = canonicalize(&std::fs::read(path).unwrap()).unwrap();
    let value: Value = serde_json::from_slice(&document).unwrap();
    let id = value["id"]
        .as_str()
        .or(value["document"]["tracking"]["id"].as_str())
        .unwrap()
        .to_owned();
    let record = EvidenceRecord {
        kind: Kind::Advisory,
        source: SourceName::parse(source).unwrap(),
        format,
        id,
        modified: None,
        digest: Sha256Digest::of(&document),
        document,
    };
    (record, value)
}

/// A project to scan and what Trivy must say about it.
struct Case {
    dir: String,
    lockfile: &'static str,
    /// The advisory's id and aliases.
    ids: Vec<String>,
    vulnerable: bool,
}

#[test]
fn trivy_reports_every_vulnerable_pin_and_no_fixed_pin() {
    let snapshot_time: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let mut builder = TrivyDbBuilder::new(TrivyDbOptions::new(snapshot_time));
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("projects");
    let mut cases = Vec::new();

    // Generated advisories of the seven other ecosystems; each carries its pins.
    for path in read_dir_sorted(&fixtures().join("osv")) {
        let (record, osv) = record("ec-gen", DocumentFormat::Osv, &path);
        builder.add(&record);
        let mut ids = vec![record.id.clone()];
        ids.extend(
            osv["aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a.as_str().unwrap().to_owned()),
        );
        let package = &osv["affected"][0]["package"];
        let ecosystem = package["ecosystem"].as_str().unwrap();
        let mut name = package["name"].as_str().unwrap().to_owned();
        if ecosystem == "npm" {
            name = name.to_lowercase(); // npm names in lockfiles are lowercase
        }
        let pins = &osv["database_specific"]["export_center_test_pins"];
        for (vulnerable, key) in [(true, "vulnerable"), (false, "fixed")] {
            for version in pins[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap()) {
                let mut layouts = vec![(ecosystem.to_owned(), name.clone())];
                if name.contains('.') && ecosystem == "PyPI" {
                    // poetry.lock writes the dotted name with dashes.
                    layouts.push((
                        "PyPI-poetry".to_owned(),
                        name.to_lowercase().replace(['.', '_'], "-"),
                    ));
                }
                for (layout, name) in layouts {
                    let dir = format!("{}-{layout}-{version}-{key}", record.id);
                    let lockfile = projects::write(&root.join(&dir), &layout, &name, version);
                    cases.push(Case {
                        dir,
                        lockfile,
                        ids: ids.clone(),
                        vulnerable,
                    });
                }
            }
        }
    }

    // A CSAF advisory whose products carry npm and Maven package URLs.
    let (csaf, _) = record(
        "ec-csaf",
        DocumentFormat::Csaf,
        &fixtures().join("csaf/ec-csaf-2099-0001.json"),
    );
    builder.add(&csaf);
    let csaf_pins = [
        ("npm", "ec-csaf-lib", "1.4.0", true),
        ("npm", "ec-csaf-lib", "2.0.0", true),
        ("npm", "ec-csaf-lib", "2.2.9", true),
        ("npm", "ec-csaf-lib", "1.4.1", false),
        ("npm", "ec-csaf-lib", "2.3.0", false),
        ("Maven", "com.example:ec-csaf-maven", "5.0.0", true),
        ("Maven", "com.example:ec-csaf-maven", "5.0.1", false),
    ];
    for (ecosystem, name, version, vulnerable) in csaf_pins {
        let dir = format!("csaf-{ecosystem}-{version}");
        let lockfile = projects::write(&root.join(&dir), ecosystem, name, version);
        cases.push(Case {
            dir,
            lockfile,
            ids: vec!["CVE-2099-9001".to_owned(), "EC-CSAF-2099-0001".to_owned()],
            vulnerable,
        });
    }

    // The whole Go corpus goes into the database; a sample of it is pinned.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/corpus/osv-go");
    let mut go_advisories: Vec<GoAdvisory> = Vec::new();
    for path in read_dir_sorted(&corpus) {
        let (record, osv) = record("osv-go", DocumentFormat::Osv, &path);
        builder.add(&record);
        go_advisories.push(go_corpus::parse(&osv));
    }
    let mut go_cases = 0;
    let mut seen_pins = BTreeSet::new();
    for (index, advisory) in go_advisories.iter().enumerate().step_by(GO_SAMPLE_STEP) {
        for pin in advisory.pins(index) {
            // Another advisory that shares an id and covers the pin makes Trivy report that id
            // rightly; such fixed pins prove nothing about this advisory.
            let shared_cover = go_advisories.iter().enumerate().any(|(other_index, other)| {
                other_index != pin.advisory
                    && other.ids.iter().any(|id| advisory.ids.contains(id))
                    && other.covers(&pin.module, &pin.version)
            });
            if (!pin.vulnerable && shared_cover)
                || !seen_pins.insert((pin.module.clone(), pin.version.clone(), index))
            {
                continue;
            }
            let dir = format!(
                "go-{index:04}-{}-{}",
                pin.version,
                if pin.vulnerable { "vulnerable" } else { "fixed" }
            );
            let lockfile = projects::write(&root.join(&dir), "Go", &pin.module, &pin.version);
            cases.push(Case {
                dir,
                lockfile,
                ids: advisory.ids.clone(),
                vulnerable: pin.vulnerable,
            });
            go_cases += 1;
        }
    }
    assert!(go_cases >= 60, "the Go sample gives {go_cases} pins");

    let db = builder.finish().unwrap();
    let codes: Vec<&str> = db.summary.warnings.iter().map(|w| w.code.as_str()).collect();
    assert!(codes.contains(&"UNEXPRESSIBLE_RANGE"), "{codes:?}");
    assert!(codes.contains(&"WITHDRAWN_ADVISORY"), "{codes:?}");
    assert!(
        codes.contains(&"UNSUPPORTED_ECOSYSTEM"),
        "the CSAF appliance: {codes:?}"
    );

    let cache = work.path().join("cache");
    trivy::install_db(&cache, &db.tarball);
    let db_file = cache.join("db/trivy.db");
    let before = Sha256::digest(std::fs::read(&db_file).unwrap());
    let findings = trivy::scan(&cache, &root);
    let after = Sha256::digest(std::fs::read(&db_file).unwrap());
    assert_eq!(
        before, after,
        "Trivy opens trivy.db read-write but must not change it"
    );

    let mut failures = Vec::new();
    for case in &cases {
        let target = format!("{}/{}", case.dir, case.lockfile);
        let reported: BTreeSet<&str> = findings
            .get(&target)
            .into_iter()
            .flatten()
            .map(|finding| finding.id.as_str())
            .collect();
        let found = case.ids.iter().any(|id| reported.contains(id.as_str()));
        if !findings.contains_key(&target) {
            failures.push(format!("{target}: Trivy did not read this lockfile"));
        } else if found != case.vulnerable {
            failures.push(format!(
                "{target}: expected {} of {:?}, Trivy reported {reported:?}",
                if case.vulnerable { "one" } else { "none" },
                case.ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // What Trivy shows comes from our vulnerability and data-source buckets.
    let finding = |target: &str, id: &str| {
        findings[target]
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("{id} in {target}"))
            .clone()
    };
    let pypi = finding(
        "EC-PYPI-A-PyPI-1.1.0-vulnerable/requirements.txt",
        "CVE-2099-0001",
    );
    assert_eq!(
        (pypi.package.as_str(), pypi.version.as_str()),
        ("EC_Range.Lib", "1.1.0")
    );
    let raw = &pypi.raw;
    assert_eq!(raw["Severity"], "CRITICAL", "{raw}");
    assert_eq!(raw["SeveritySource"], "export-center:ec-gen");
    assert_eq!(raw["DataSource"]["ID"], "export-center:ec-gen");
    assert_eq!(raw["DataSource"]["Name"], "Export Center ec-gen");
    assert_eq!(raw["Title"], "Generated PyPI advisory (a) for the Trivy tests");
    assert_eq!(raw["FixedVersion"], "1.2.0");
    assert_eq!(raw["CVSS"]["export-center:ec-gen"]["V3Score"], 9.8);
    assert_eq!(raw["PublishedDate"], "2026-10-01T00:00:00Z");
    assert_eq!(
        raw["References"],
        serde_json::json!(["https://export-center.example/advisories/EC-PYPI-A"])
    );
    let moderate = finding("EC-NPM-B-npm-1.0.3-vulnerable/package-lock.json", "EC-NPM-B");
    assert_eq!(moderate.raw["Severity"], "MEDIUM");
    let csaf = finding("csaf-npm-2.2.9/package-lock.json", "CVE-2099-9001");
    assert_eq!(csaf.raw["Severity"], "HIGH");
    assert_eq!(
        csaf.raw["Description"],
        "A vulnerability in ec-csaf-lib and ec-csaf-maven."
    );
}
