//! Policy documents: any JSON or YAML object with an `id` and a `version` that is not one
//! of the other formats. Their rules are stored as given and not interpreted here.

use std::collections::BTreeSet;

use export_core::Kind;
use serde_json::Value;

use crate::fields::{id_at, string_at};
use crate::{EvidenceError, Metadata};

/// An `id` (checked by `extract`) and a string or number `version`.
pub(crate) fn matches(document: &Value) -> bool {
    document.get("id").is_some()
        && document
            .get("version")
            .is_some_and(|v| v.is_string() || v.is_number())
}

pub(crate) fn extract(document: &Value) -> Result<Metadata, EvidenceError> {
    Ok(Metadata {
        kind: Kind::Policy,
        id: id_at(document, "/id", "policy")?,
        modified: string_at(document, "/modified").or_else(|| string_at(document, "/updated")),
        aliases: BTreeSet::new(),
    })
}

#[cfg(test)]
mod tests {
    use export_core::{DocumentFormat, Kind};

    use crate::parse_document;

    #[test]
    fn json_policy_reads_id_and_modified() {
        let parsed =
            parse_document(br#"{"id": "pol-1", "version": 3, "updated": "2099-01-01", "rules": []}"#)
                .unwrap();
        assert_eq!(
            (parsed.format, parsed.kind),
            (DocumentFormat::Policy, Kind::Policy)
        );
        assert_eq!(parsed.id, "pol-1");
        assert_eq!(parsed.modified.as_deref(), Some("2099-01-01"));
        assert!(parsed.aliases.is_empty());

        let parsed =
            parse_document(br#"{"id": "p", "version": "1.0", "modified": "m", "updated": "u"}"#).unwrap();
        assert_eq!(parsed.modified.as_deref(), Some("m"));
        let parsed = parse_document(br#"{"id": "p", "version": "1.0", "modified": 5}"#).unwrap();
        assert_eq!(parsed.modified, None);
    }

    #[test]
    fn yaml_policy_has_the_canonical_form_of_its_json_twin() {
        let yaml = b"# licences we ship\nid: licences\nversion: 2\nrules:\n  allowed: [MIT, Apache-2.0]\n";
        let json = br#"{"version": 2, "rules": {"allowed": ["MIT", "Apache-2.0"]}, "id": "licences"}"#;
        let (yaml, json) = (parse_document(yaml).unwrap(), parse_document(json).unwrap());
        assert_eq!(yaml.kind, Kind::Policy);
        assert_eq!(yaml.canonical, json.canonical);
        assert_eq!(yaml.digest, json.digest);
    }

    #[test]
    fn policy_id_must_be_a_string() {
        for bytes in [
            &br#"{"id": 42, "version": 1}"#[..],
            b"id: ''\nversion: 1\n",
            b"id: [a]\nversion: 1\n",
        ] {
            let error = parse_document(bytes).unwrap_err();
            assert_eq!(error.pointer, "/id", "{error}");
            assert_eq!(error.reason, "policy id `id` must be a non-empty string");
        }
        let long = format!(r#"{{"id": "{}", "version": 1}}"#, "p".repeat(257));
        assert_eq!(parse_document(long.as_bytes()).unwrap_err().pointer, "/id");
    }
}
