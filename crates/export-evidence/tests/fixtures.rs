//! Checks that every shipped sample under `fixtures/evidence/` parses with the kind and
//! format its folder promises, so the README demo ingests cleanly.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use export_core::{DocumentFormat, Kind};
use export_evidence::parse_document;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/evidence");

#[test]
fn every_fixture_parses_with_its_folder_kind() {
    let folders = [
        ("osv-go", DocumentFormat::Osv, Kind::Advisory, 25),
        ("csaf", DocumentFormat::Csaf, Kind::Advisory, 3),
        ("csaf-vex", DocumentFormat::Csaf, Kind::Vex, 3),
        ("openvex", DocumentFormat::Openvex, Kind::Vex, 3),
        ("cyclonedx-vex", DocumentFormat::Cyclonedx, Kind::Vex, 2),
        ("policy", DocumentFormat::Policy, Kind::Policy, 3),
    ];
    let on_disk: BTreeSet<_> = fs::read_dir(FIXTURES)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<_> = folders
        .iter()
        .map(|(folder, ..)| folder.to_string())
        .chain(["ATTRIBUTION.md".to_owned()])
        .collect();
    assert_eq!(on_disk, expected);

    for (folder, format, kind, count) in folders {
        let mut ids = BTreeSet::new();
        for entry in fs::read_dir(Path::new(FIXTURES).join(folder)).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|name| name == "LICENSE") {
                continue;
            }
            let parsed = parse_document(&fs::read(&path).unwrap())
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            assert_eq!((parsed.format, parsed.kind), (format, kind), "{}", path.display());
            assert!(ids.insert(parsed.id), "{}: duplicate id", path.display());
        }
        assert_eq!(ids.len(), count, "{folder}");
    }
}

#[test]
fn written_samples_read_as_intended() {
    let read = |name: &str| parse_document(&fs::read(Path::new(FIXTURES).join(name)).unwrap()).unwrap();
    let payments = read("cyclonedx-vex/payments-api-1.8.0.vex.json");
    assert_eq!(payments.id, "urn:uuid:9e2d7a41-6c3b-4f08-b5d2-3a7e1c0f8d64");
    assert_eq!(payments.modified.as_deref(), Some("2024-04-09T16:05:00Z"));
    assert_eq!(
        payments.aliases,
        ["CVE-2023-39325", "CVE-2023-45288", "CVE-2024-24786"]
    );

    let licences = read("policy/allowed-licences.yaml");
    assert_eq!(
        (licences.id.as_str(), licences.modified.as_deref()),
        ("allowed-licences", Some("2024-04-18T12:00:00Z"))
    );
    assert_eq!(
        read("policy/vex-trust.json").modified.as_deref(),
        Some("2024-02-20T08:15:00Z")
    );
    assert_eq!(read("policy/severity-gate.json").id, "severity-gate");
}

#[test]
fn osv_go_licence_ships_with_the_advisories() {
    let licence = fs::read_to_string(Path::new(FIXTURES).join("osv-go/LICENSE")).unwrap();
    assert!(licence.starts_with("Creative Commons Attribution 4.0 International Public License"));
}
