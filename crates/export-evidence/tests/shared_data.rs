//! Parses every document of the real-world corpus shipped in `fixtures/corpus` (see its
//! ATTRIBUTION.md) and checks the counts, some ids and the canonical form.
//!
//! The folder must exist: a missing data set fails the test instead of skipping it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use export_core::{canonicalize, DocumentFormat, Kind, Sha256Digest};
use export_evidence::{parse_document, ParsedDocument};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/corpus");

/// The `.json` files directly in `dir`, parsed, by file name.
fn parse_folder(relative: &str) -> BTreeMap<String, ParsedDocument> {
    let dir = Path::new(DATA).join(relative);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|err| panic!("corpus folder {} missing: {err}", dir.display()));
    let mut parsed = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            parsed.insert(name, parse_file(&path));
        }
    }
    parsed
}

fn parse_file(path: &Path) -> ParsedDocument {
    let bytes = fs::read(path).unwrap();
    let parsed = parse_document(&bytes).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert_eq!(
        canonicalize(&parsed.canonical).unwrap(),
        parsed.canonical,
        "{}",
        path.display()
    );
    assert_ne!(
        parsed.canonical,
        bytes,
        "{} was already canonical",
        path.display()
    );
    assert_eq!(parsed.digest, Sha256Digest::of(&parsed.canonical));
    parsed
}

fn assert_all(parsed: &BTreeMap<String, ParsedDocument>, format: DocumentFormat, kind: Kind) {
    for (name, document) in parsed {
        assert_eq!((document.format, document.kind), (format, kind), "{name}");
    }
}

#[test]
fn every_file_is_accounted_for() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|err| panic!("corpus folder {} missing: {err}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(DATA), &mut files);
    let mut others: Vec<_> = files
        .iter()
        .filter(|path| path.extension().is_none_or(|ext| ext != "json"))
        .collect();
    others.sort();
    assert_eq!(
        others,
        [
            &Path::new(DATA).join("ATTRIBUTION.md"),
            &Path::new(DATA).join("osv-go/LICENSE")
        ],
        "only the attribution and the osv-go licence are not JSON"
    );
    assert_eq!(files.len(), 4291 + 6 + 13 + 3 + 2);
}

#[test]
fn osv_go_advisories() {
    let parsed = parse_folder("osv-go");
    assert_eq!(parsed.len(), 4291);
    assert_all(&parsed, DocumentFormat::Osv, Kind::Advisory);
    for (name, document) in &parsed {
        assert_eq!(format!("{}.json", document.id), *name);
    }
    let gin = &parsed["GO-2020-0001.json"];
    assert_eq!(gin.id, "GO-2020-0001");
    assert_eq!(gin.aliases, ["CVE-2020-36567", "GHSA-6vm3-jj99-7229"]);
    assert_eq!(gin.modified.as_deref(), Some("0001-01-01T00:00:00Z"));
    assert!(parsed["GO-2023-1860.json"].aliases.is_empty());
}

#[test]
fn csaf_advisories() {
    let parsed = parse_folder("csaf");
    assert_eq!(parsed.len(), 6);
    assert_all(&parsed, DocumentFormat::Csaf, Kind::Advisory);
    let ids: Vec<_> = parsed.values().map(|document| document.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "BSI-2022-0001",
            "cisco-sa-20180328-smi2",
            "RHSA-2019:1862",
            "RHSA-2021:5186",
            "RHSA-2021:5217",
            "RHSA-2022:0011"
        ]
    );
    let cisco = &parsed["cisco-sa-20180328-smi2.json"];
    assert_eq!(cisco.modified.as_deref(), Some("2018-04-17T15:08:41Z"));
    assert_eq!(cisco.aliases, ["CSCvg76186", "CVE-2018-0171"]);
    assert!(parsed["rhsa-2019_1862.json"].aliases.is_empty());
}

#[test]
fn csaf_vex_documents() {
    let parsed = parse_folder("csaf/csaf_vex");
    assert_eq!(parsed.len(), 13);
    assert_all(&parsed, DocumentFormat::Csaf, Kind::Vex);
    let sec = &parsed["sec-vex-2022-0001.json"];
    assert_eq!(sec.id, "SEC-VEX-2022-0001");
    assert_eq!(sec.modified.as_deref(), Some("2022-05-27T10:00:00.000Z"));
    assert_eq!(
        sec.aliases,
        ["CVE-2021-44228", "CVE-2021-45046", "CVE-2021-45105"]
    );
    assert_eq!(parsed["2022-evd-uc-02-na-001.json"].aliases.len(), 19);
}

#[test]
fn openvex_documents() {
    let parsed = parse_folder("openvex");
    assert_eq!(parsed.len(), 3);
    assert_all(&parsed, DocumentFormat::Openvex, Kind::Vex);
    let demo = &parsed["v0.2.0.json"];
    assert_eq!(
        demo.id,
        "https://openvex.dev/docs/public/vex-d4e9020b6d0d26f131d535e055902dd6ccf3e2088bce3079a8cd3588a4b14c78"
    );
    assert_eq!(
        demo.modified.as_deref(),
        Some("2023-07-17T18:28:47.696004345-06:00")
    );
    assert_eq!(
        demo.aliases,
        [
            "CVE-2023-1255",
            "CVE-2023-2650",
            "CVE-2023-2975",
            "CVE-2023-3446",
            "CVE-2023-3817"
        ]
    );
    // These two carry their timestamp on the statement only, so the document has none.
    assert_eq!(parsed["v020-1.vex.json"].modified, None);
    assert_eq!(parsed["v020-2.vex.json"].aliases, ["CVE-1234-5678"]);
}
