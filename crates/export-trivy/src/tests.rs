//! Tests of the builder: merging records, data sources, warnings, determinism.

use std::io::Read;

use export_core::canonicalize;
use serde_json::{json, Value};

use super::*;
use crate::bolt::{Bucket, Entry};

fn snapshot() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .to_utc()
}

fn record(source: &str, format: DocumentFormat, document: &Value) -> EvidenceRecord {
    let document = canonicalize(&serde_json::to_vec(document).unwrap()).unwrap();
    EvidenceRecord {
        kind: Kind::Advisory,
        source: SourceName::parse(source).unwrap(),
        format,
        id: document_id(&document),
        modified: None,
        digest: Sha256Digest::of(&document),
        document,
    }
}

fn document_id(document: &[u8]) -> String {
    let value: Value = serde_json::from_slice(document).unwrap();
    value["id"].as_str().unwrap_or("csaf").to_owned()
}

fn osv(id: &str, aliases: &[&str], ecosystem: &str, name: &str, fixed: &str, severity: &str) -> Value {
    json!({"id": id, "aliases": aliases, "summary": format!("summary of {id}"),
           "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
           "database_specific": {"severity": severity}})
}

fn build(records: &[EvidenceRecord]) -> TrivyDb {
    let mut builder = TrivyDbBuilder::new(TrivyDbOptions::new(snapshot()));
    for record in records {
        builder.add(record);
    }
    builder.finish().unwrap()
}

/// The tarball's `trivy.db`, read back as a bucket tree (with bbolt's structural checks).
fn database(tarball: &[u8]) -> Bucket {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("trivy.db"));
    let mut db = Vec::new();
    entry.read_to_end(&mut db).unwrap();
    bolt::tests::read(&db)
}

fn bucket<'a>(parent: &'a Bucket, key: &str) -> &'a Bucket {
    match parent.entries().get(key.as_bytes()) {
        Some(Entry::Bucket(bucket)) => bucket,
        other => panic!("no bucket {key}: {other:?}"),
    }
}

fn value(parent: &Bucket, key: &str) -> Value {
    match parent.entries().get(key.as_bytes()) {
        Some(Entry::Value(bytes)) => serde_json::from_slice(bytes).unwrap(),
        other => panic!("no value {key}: {other:?}"),
    }
}

fn sample_records() -> Vec<EvidenceRecord> {
    vec![
        record(
            "osv-go",
            DocumentFormat::Osv,
            &osv(
                "GO-2024-0001",
                &["CVE-2024-1111"],
                "Go",
                "example.com/Mod",
                "1.2.0",
                "HIGH",
            ),
        ),
        record(
            "osv-py",
            DocumentFormat::Osv,
            &osv(
                "PYSEC-2024-1",
                &["CVE-2024-1111", "GHSA-x"],
                "PyPI",
                "Zope.Interface",
                "5.1",
                "LOW",
            ),
        ),
        record(
            "osv-py",
            DocumentFormat::Osv,
            &osv("PYSEC-2024-2", &[], "PyPI", "requests", "2.31.0", "CRITICAL"),
        ),
        record(
            "osv-py",
            DocumentFormat::Osv,
            &osv("DEB-1", &[], "Debian:12", "openssl", "3.0.1", "LOW"),
        ),
        record("vex", DocumentFormat::Openvex, &json!({"id": "vex-1"})),
    ]
}

#[test]
fn records_are_written_under_their_source_buckets_with_data_sources_and_details() {
    let db = build(&sample_records());
    let root = database(&db.tarball);
    let keys: Vec<&[u8]> = root.entries().keys().map(Vec::as_slice).collect();
    assert_eq!(
        keys,
        [
            b"data-source".as_slice(),
            b"go::Export Center osv-go",
            b"pip::Export Center osv-py",
            b"vulnerability"
        ]
    );
    let go = bucket(bucket(&root, "go::Export Center osv-go"), "example.com/Mod");
    assert_eq!(
        value(go, "CVE-2024-1111"),
        json!({"PatchedVersions": ["1.2.0"], "VendorIDs": ["GO-2024-0001"], "VulnerableVersions": ["<1.2.0"]})
    );
    let pip = bucket(&root, "pip::Export Center osv-py");
    for key in ["zope.interface", "zope-interface"] {
        assert_eq!(
            value(bucket(pip, key), "CVE-2024-1111")["VendorIDs"],
            json!(["GHSA-x", "PYSEC-2024-1"])
        );
    }
    assert_eq!(
        value(bucket(pip, "requests"), "PYSEC-2024-2")["VulnerableVersions"],
        json!(["<2.31.0"])
    );
    assert_eq!(
        value(bucket(&root, "data-source"), "pip::Export Center osv-py"),
        json!({"ID": "export-center:osv-py", "Name": "Export Center osv-py"})
    );
    // One id from two sources: each source's severity under its own data source id; the
    // text from the first source in order.
    let vulnerability = bucket(&root, "vulnerability");
    let cve = value(vulnerability, "CVE-2024-1111");
    assert_eq!(
        cve["VendorSeverity"],
        json!({"export-center:osv-go": 3, "export-center:osv-py": 1})
    );
    assert_eq!(cve["Title"], "summary of GO-2024-0001");
    assert_eq!(cve["Severity"], "HIGH");
    assert_eq!(vulnerability.entries().len(), 2);

    assert_eq!(
        (
            db.summary.records,
            db.summary.advisories,
            db.summary.vulnerabilities,
            db.summary.package_advisories
        ),
        (5, 3, 2, 4)
    );
    let warnings: Vec<_> = db
        .summary
        .warnings
        .iter()
        .map(|w| (w.code.as_str(), w.count))
        .collect();
    assert_eq!(warnings, [("UNSUPPORTED_ECOSYSTEM", 1), ("NOT_AN_ADVISORY", 1)]);
    assert!(
        db.summary.warnings[0].message.ends_with("Debian:12 (1)"),
        "{}",
        db.summary.warnings[0].message
    );
}

#[test]
fn the_same_records_give_the_same_bytes_in_any_order_and_once_each() {
    let records = sample_records();
    let first = build(&records);
    let mut shuffled: Vec<_> = records.iter().rev().cloned().collect();
    shuffled.extend(records.iter().cloned()); // every record twice
    let second = build(&shuffled);
    assert_eq!(first.tarball, second.tarball);
    assert_eq!(first.summary, second.summary);
    // A different snapshot time changes metadata.json and the mtimes, nothing else.
    let mut builder = TrivyDbBuilder::new(TrivyDbOptions::new(snapshot() + chrono::TimeDelta::hours(1)));
    records.iter().for_each(|r| builder.add(r));
    let later = builder.finish().unwrap();
    assert_ne!(later.tarball, first.tarball);
    assert_eq!(database(&later.tarball), database(&first.tarball));
}

#[test]
fn two_advisories_with_one_cve_for_one_package_are_ored() {
    let records = [
        record(
            "osv",
            DocumentFormat::Osv,
            &osv("GHSA-b", &["CVE-2024-1"], "npm", "lodash", "4.17.21", "HIGH"),
        ),
        record("osv", DocumentFormat::Osv, &{
            let mut doc = osv("GHSA-a", &["CVE-2024-1"], "npm", "Lodash", "4.17.21", "HIGH");
            doc["affected"][0]["ranges"][0]["events"] = json!([{"introduced": "5.0.0"}, {"fixed": "5.0.1"}]);
            doc
        }),
    ];
    let root = database(&build(&records).tarball);
    let lodash = bucket(bucket(&root, "npm::Export Center osv"), "lodash");
    assert_eq!(
        value(lodash, "CVE-2024-1"),
        json!({"PatchedVersions": ["5.0.1", "4.17.21"], "VendorIDs": ["GHSA-a", "GHSA-b"],
               "VulnerableVersions": [">=5.0.0, <5.0.1", "<4.17.21"]})
    );
}

#[test]
fn an_empty_snapshot_still_has_the_vulnerability_bucket_trivy_needs() {
    let db = build(&[]);
    let root = database(&db.tarball);
    assert!(bucket(&root, "vulnerability").is_empty());
    assert!(bucket(&root, "data-source").is_empty());
    assert!(db.summary.warnings.is_empty());
}

#[test]
fn an_advisory_that_names_no_package_is_counted() {
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/corpus/csaf/rhsa-2019_1862.json"
    );
    let document: Value = serde_json::from_slice(&std::fs::read(corpus).unwrap()).unwrap();
    let db = build(&[
        record("redhat-csaf", DocumentFormat::Csaf, &document),
        record(
            "osv",
            DocumentFormat::Osv,
            &json!({"id": "GHSA-none", "affected": []}),
        ),
    ]);
    let warnings: Vec<_> = db
        .summary
        .warnings
        .iter()
        .map(|w| (w.code.as_str(), w.count))
        .collect();
    assert_eq!(warnings, [("NO_AFFECTED_PACKAGES", 2)]);
    assert_eq!(
        db.summary.warnings[0].message,
        "2 advisories name no affected package and add nothing to trivy.db: csaf advisory (1), osv advisory (1)"
    );
}

#[test]
fn the_builder_can_be_moved_to_a_blocking_thread() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let builder = TrivyDbBuilder::new(TrivyDbOptions::new(snapshot()));
    assert_send(&builder);
    let db = std::thread::spawn(move || builder.finish().unwrap())
        .join()
        .unwrap();
    assert_eq!(db.tarball, build(&[]).tarball);
}
