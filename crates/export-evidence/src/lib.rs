//! Evidence parsing: format detection, ids and metadata, canonical form. No IO.
//!
//! [`parse_document`] takes the bytes of one file and says what it is (SPEC §4): an OSV
//! or CSAF 2.0 advisory, an OpenVEX, CSAF VEX or CycloneDX VEX document, or a policy.
//! The format is detected from the content, never from the file name. JSON is read
//! first; bytes that do not start with `{` are read as YAML, which only policies may use.
//!
//! Each format family has its own module with a `matches` (is this document mine?) and
//! an `extract` (its kind, id, `modified` and aliases, or the reason it is unusable).

mod csaf;
mod fields;
mod osv;
mod policy;
mod read;
mod vex;

use std::collections::BTreeSet;

use export_core::{canonical_json, DocumentFormat, Kind, Sha256Digest};
use serde_json::Value;

use crate::read::Syntax;

pub use fields::MAX_ID_BYTES;

/// One evidence document, recognised and ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDocument {
    pub kind: Kind,
    pub format: DocumentFormat,
    pub id: String,
    /// Copied verbatim from the document.
    pub modified: Option<String>,
    /// Sorted and deduplicated.
    pub aliases: Vec<String>,
    /// RFC 8785 canonical JSON of the whole document.
    pub canonical: Vec<u8>,
    /// SHA-256 of `canonical`.
    pub digest: Sha256Digest,
}

/// Why a document was rejected, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (at {})", display_pointer(.pointer))]
pub struct EvidenceError {
    /// RFC 6901 JSON pointer to the problem; `""` is the whole document.
    pub pointer: String,
    pub reason: String,
}

impl EvidenceError {
    pub fn new(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            reason: reason.into(),
        }
    }

    /// An error about the document as a whole.
    pub fn whole(reason: impl Into<String>) -> Self {
        Self::new("", reason)
    }
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the document root"
    } else {
        pointer
    }
}

/// What a format module reads from a document besides its canonical bytes.
struct Metadata {
    kind: Kind,
    id: String,
    modified: Option<String>,
    aliases: BTreeSet<String>,
}

const NOT_RECOGNISED: &str = "not a recognised evidence format (expected OSV, CSAF 2.0, OpenVEX, \
                              CycloneDX VEX or a policy document with `id` and `version`)";

/// Detects the format of `bytes`, reads its metadata and canonicalizes it.
pub fn parse_document(bytes: &[u8]) -> Result<ParsedDocument, EvidenceError> {
    let (document, syntax) = read::read(bytes)?;
    if !document.is_object() {
        return Err(EvidenceError::whole("expected a JSON object"));
    }
    let format = detect(&document).ok_or_else(|| EvidenceError::whole(NOT_RECOGNISED))?;
    if syntax == Syntax::Yaml && format != DocumentFormat::Policy {
        return Err(EvidenceError::whole(format!(
            "YAML is accepted only for policy documents, and this looks like {}: write it as JSON",
            format_name(format)
        )));
    }
    let metadata = match format {
        DocumentFormat::Osv => osv::extract(&document),
        DocumentFormat::Csaf => csaf::extract(&document),
        DocumentFormat::Openvex => vex::extract_openvex(&document),
        DocumentFormat::Cyclonedx => vex::extract_cyclonedx(&document),
        DocumentFormat::Policy => policy::extract(&document),
    }?;
    let canonical = canonical_json(&document);
    Ok(ParsedDocument {
        kind: metadata.kind,
        format,
        id: metadata.id,
        modified: metadata.modified,
        aliases: metadata.aliases.into_iter().collect(),
        digest: Sha256Digest::of(&canonical),
        canonical,
    })
}

/// The format a document claims to be, the most specific markers first; whether it is a
/// usable document of that format is for `extract` to say.
fn detect(document: &Value) -> Option<DocumentFormat> {
    if csaf::matches(document) {
        Some(DocumentFormat::Csaf)
    } else if vex::is_openvex(document) {
        Some(DocumentFormat::Openvex)
    } else if vex::is_cyclonedx(document) {
        Some(DocumentFormat::Cyclonedx)
    } else if osv::matches(document) {
        Some(DocumentFormat::Osv)
    } else if policy::matches(document) {
        Some(DocumentFormat::Policy)
    } else {
        None
    }
}

fn format_name(format: DocumentFormat) -> &'static str {
    match format {
        DocumentFormat::Osv => "an OSV advisory",
        DocumentFormat::Csaf => "a CSAF document",
        DocumentFormat::Openvex => "an OpenVEX document",
        DocumentFormat::Cyclonedx => "a CycloneDX document",
        DocumentFormat::Policy => "a policy",
    }
}

#[cfg(test)]
mod tests {
    use export_core::canonicalize;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn error_of(bytes: &[u8]) -> EvidenceError {
        parse_document(bytes).expect_err("document should be rejected")
    }

    #[test]
    fn unreadable_documents_are_rejected_as_a_whole() {
        assert_eq!(error_of(b" \n\t").reason, "empty document");
        let error = error_of(b"{\n  \"id\": \"x\",\n  \"version\": 1,\n}");
        assert_eq!(error.pointer, "");
        assert!(
            error
                .reason
                .starts_with("invalid JSON: trailing comma at line 4 column 1"),
            "{error}"
        );
        let error = error_of(b"{\"id\": \"x\"} {}");
        assert!(
            error.reason.contains("trailing characters at line 1 column 13"),
            "{error}"
        );
        let error = error_of(b"id: [unclosed\n");
        assert_eq!(error.pointer, "");
        assert!(
            error
                .reason
                .starts_with("not JSON (does not start with `{`) and not valid YAML: "),
            "{error}"
        );
    }

    #[test]
    fn top_level_must_be_an_object() {
        for bytes in [
            &b"[1, 2]"[..],
            b"\"GO-2020-0001\"",
            b"42",
            b"null",
            b"- id: x\n  version: 1\n",
        ] {
            let error = error_of(bytes);
            assert_eq!(
                (error.pointer.as_str(), error.reason.as_str()),
                ("", "expected a JSON object")
            );
        }
    }

    #[test]
    fn unknown_objects_are_not_recognised() {
        for bytes in [
            &b"{}"[..],
            br#"{"id": "GO-1", "summary": "no modified"}"#,
            br#"{"id": "GO-1", "modified": "2099-01-01T00:00:00Z"}"#,
            br#"{"id": "p", "version": true}"#,
            br#"{"bomFormat": "SPDX", "vulnerabilities": []}"#,
            br#"{"@context": "https://www.w3.org/ns/activitystreams", "@id": "x"}"#,
            b"name: not a policy\nrules: []\n",
        ] {
            let error = error_of(bytes);
            assert_eq!(error.pointer, "");
            assert_eq!(error.reason, NOT_RECOGNISED);
        }
    }

    #[test]
    fn yaml_is_for_policies_only() {
        let error = error_of(b"id: GO-2099-0001\nmodified: '2099-01-01T00:00:00Z'\nsummary: s\n");
        assert_eq!(error.pointer, "");
        assert!(
            error
                .reason
                .starts_with("YAML is accepted only for policy documents"),
            "{error}"
        );
        assert!(error.reason.contains("an OSV advisory"), "{error}");
    }

    #[test]
    fn display_shows_reason_and_pointer() {
        assert_eq!(
            EvidenceError::new("/document/tracking/id", "missing CSAF id `document.tracking.id`").to_string(),
            "missing CSAF id `document.tracking.id` (at /document/tracking/id)"
        );
        assert_eq!(
            EvidenceError::whole("empty document").to_string(),
            "empty document (at the document root)"
        );
    }

    #[test]
    fn canonical_form_ignores_key_order_and_whitespace() {
        let compact = br#"{"id":"GO-1","modified":"m","aliases":["B","A"],"summary":"caf\u00e9","n":1.50}"#;
        let pretty = r#"{
            "summary" : "café",
            "n": 15e-1,
            "aliases": ["B", "A"],
            "modified": "m",
            "id": "GO-1"
        }"#;
        let (a, b) = (
            parse_document(compact).unwrap(),
            parse_document(pretty.as_bytes()).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a.canonical.clone()).unwrap(),
            r#"{"aliases":["B","A"],"id":"GO-1","modified":"m","n":1.5,"summary":"café"}"#
        );
        assert_eq!(a.digest, Sha256Digest::of(&a.canonical));
        assert_eq!(a.aliases, ["A", "B"]);
    }

    /// One small valid document of each format.
    fn templates() -> [Value; 5] {
        [
            json!({"id": "GO-1", "modified": "m", "summary": "s"}),
            json!({"document": {"csaf_version": "2.0", "category": "csaf_vex", "tracking": {"id": "C-1"}}}),
            json!({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1"}),
            json!({
                "bomFormat": "CycloneDX",
                "specVersion": "1.5",
                "serialNumber": "urn:uuid:1",
                "vulnerabilities": []
            }),
            json!({"id": "p", "version": 1}),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_document(&bytes);
        }

        #[test]
        fn json_like_text_never_panics(text in r#"[{}\[\]":,@a-z0-9 \n.\\/-]{0,200}"#) {
            let _ = parse_document(text.as_bytes());
            let _ = parse_document(format!("{{{text}").as_bytes());
        }

        #[test]
        fn layout_never_changes_the_canonical_form(
            which in 0..5usize,
            extra in proptest::collection::btree_map("x-[a-z]{1,6}", any::<String>(), 0..6),
        ) {
            let mut document = templates()[which].clone();
            if let Value::Object(object) = &mut document {
                object.extend(extra.into_iter().map(|(key, value)| (key, Value::String(value))));
            }
            let compact = parse_document(&serde_json::to_vec(&document).unwrap()).unwrap();
            let pretty = parse_document(&serde_json::to_vec_pretty(&document).unwrap()).unwrap();
            prop_assert_eq!(&compact, &pretty);
            prop_assert_eq!(canonicalize(&compact.canonical).unwrap(), compact.canonical.clone());
            prop_assert_eq!(compact.digest, Sha256Digest::of(&compact.canonical));
        }
    }
}
