//! OSV advisories (<https://ossf.github.io/osv-schema/>), of any ecosystem.

use export_core::Kind;
use serde_json::Value;

use crate::fields::{alias, array, id_at, string_at};
use crate::{EvidenceError, Metadata};

/// Keys of which an OSV record has at least one besides `id` and `modified`.
const OSV_KEYS: [&str; 5] = ["schema_version", "affected", "aliases", "summary", "details"];

/// A string `id` and `modified`, one of the usual OSV keys, and no CSAF `document`.
pub(crate) fn matches(document: &Value) -> bool {
    document.get("id").is_some_and(Value::is_string)
        && document.get("modified").is_some_and(Value::is_string)
        && OSV_KEYS.iter().any(|key| document.get(key).is_some())
        && document.get("document").is_none()
}

pub(crate) fn extract(document: &Value) -> Result<Metadata, EvidenceError> {
    Ok(Metadata {
        kind: Kind::Advisory,
        id: id_at(document, "/id", "OSV")?,
        modified: string_at(document, "/modified"),
        aliases: array(document.get("aliases"))
            .iter()
            .filter_map(|a| alias(Some(a)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use export_core::DocumentFormat;

    use crate::parse_document;

    #[test]
    fn reads_id_modified_and_sorted_aliases() {
        let parsed = parse_document(
            br#"{"id": "GO-2099-0001", "modified": "2099-01-02T03:04:05Z", "summary": "s",
                 "aliases": ["GHSA-xxxx-yyyy-zzzz", "CVE-2099-1", "CVE-2099-1", ""]}"#,
        )
        .unwrap();
        assert_eq!(parsed.format, DocumentFormat::Osv);
        assert_eq!(parsed.id, "GO-2099-0001");
        assert_eq!(parsed.modified.as_deref(), Some("2099-01-02T03:04:05Z"));
        assert_eq!(parsed.aliases, ["CVE-2099-1", "GHSA-xxxx-yyyy-zzzz"]);
    }

    #[test]
    fn empty_or_unprintable_id_is_rejected_at_id() {
        for bytes in [
            r#"{"id": "", "modified": "2099-01-01T00:00:00Z", "summary": "s"}"#,
            r#"{"id": "GO-\u0000", "modified": "2099-01-01T00:00:00Z", "summary": "s"}"#,
        ] {
            let error = parse_document(bytes.as_bytes()).unwrap_err();
            assert_eq!(error.pointer, "/id", "{error}");
            assert!(error.reason.starts_with("OSV id `id`"), "{error}");
        }
    }

    #[test]
    fn a_csaf_like_document_key_is_not_osv() {
        let error = parse_document(br#"{"id": "X", "modified": "m", "summary": "s", "document": {}}"#);
        assert_eq!(error.unwrap_err().pointer, "");
    }
}
