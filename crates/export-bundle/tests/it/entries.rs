//! The entry rules: sorted, unique, safe paths, and readers that give exactly the declared size.

use std::io::{Cursor, Read};

use export_bundle::{write_bundle, BundleEntry, BundleError, BundleWriter};

use crate::{FORMATS, MTIME};

fn entry(path: &str, bytes: &'static [u8]) -> (String, Box<dyn Read + Send>, u64) {
    (path.into(), Box::new(Cursor::new(bytes)), bytes.len() as u64)
}

#[test]
fn unsorted_entries_are_rejected() {
    for format in FORMATS {
        let entries = vec![entry("manifest.json", b"{}"), entry("checksums.txt", b"")];
        let err = write_bundle(format, MTIME, entries, Vec::new()).unwrap_err();
        assert!(matches!(err, BundleError::Unsorted { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "bundle entry `checksums.txt` comes after `manifest.json`: entries must be sorted by path"
        );
    }
}

#[test]
fn duplicate_entries_are_rejected() {
    for format in FORMATS {
        let entries = vec![entry("a.json", b"1"), entry("a.json", b"2")];
        let err = write_bundle(format, MTIME, entries, Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "duplicate bundle entry `a.json`");
    }
}

#[test]
fn order_is_bytewise() {
    // "Z" (0x5a) sorts before "a" (0x61), and "a.json" before "a/b.json" ('.' < '/').
    let entries = vec![entry("Z.json", b""), entry("a.json", b""), entry("a/b.json", b"")];
    write_bundle(export_core::BundleFormat::TarZst, MTIME, entries, Vec::new()).unwrap();
}

#[test]
fn unsafe_paths_are_rejected() {
    for format in FORMATS {
        for path in ["/etc/passwd", "../up.json", "dir/", ""] {
            let err = write_bundle(format, MTIME, vec![entry(path, b"")], Vec::new()).unwrap_err();
            assert!(matches!(err, BundleError::InvalidPath { .. }), "{path:?}: {err}");
        }
    }
}

#[test]
fn tar_paths_must_fit_a_ustar_header() {
    let long = format!("{}/{}", "d".repeat(160), "f".repeat(99));
    let err = write_bundle(
        export_core::BundleFormat::TarGz,
        MTIME,
        vec![(long.clone(), Box::new(Cursor::new(b"")), 0)],
        Vec::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("invalid bundle entry path `{long}`")),
        "{err}"
    );
}

#[test]
fn readers_must_give_exactly_the_declared_size() {
    for format in FORMATS {
        for declared in [3, 5] {
            let mut writer = BundleWriter::new(format, MTIME, Vec::new()).unwrap();
            let err = writer
                .append("a.json", declared, Cursor::new(b"1234"))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("bundle entry `a.json` is not the {declared} bytes long it was declared to be")
            );
        }
    }
}

#[test]
fn the_writer_lists_what_it_wrote() {
    let mut writer = BundleWriter::new(export_core::BundleFormat::Zip, MTIME, Vec::new()).unwrap();
    writer.append("a.json", 2, Cursor::new(b"{}")).unwrap();
    writer.append("b.json", 0, Cursor::new(b"")).unwrap();
    assert_eq!(
        writer.entries(),
        [
            BundleEntry {
                path: "a.json".into(),
                size: 2
            },
            BundleEntry {
                path: "b.json".into(),
                size: 0
            },
        ]
    );
}
