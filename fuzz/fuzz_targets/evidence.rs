//! Fuzzes `export_evidence::parse_document`, the reader of every ingested file: any bytes
//! are either refused with a reason or give a document whose canonical form parses again to
//! the very same document (so what is stored says exactly what the file said).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = export_evidence::parse_document(data) else {
        return;
    };
    assert_eq!(
        document.digest,
        export_core::Sha256Digest::of(&document.canonical),
        "the digest is the canonical form's"
    );
    let again = export_evidence::parse_document(&document.canonical)
        .expect("the canonical form of an accepted document is accepted");
    assert_eq!(
        again, document,
        "the canonical form reads back as the same document"
    );
});
