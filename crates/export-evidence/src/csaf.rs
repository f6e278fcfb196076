//! CSAF 2.0 documents (<https://docs.oasis-open.org/csaf/csaf/v2.0/>): the `csaf_vex`
//! profile is VEX, every other category (including vendor ones) is an advisory.

use std::collections::BTreeSet;

use export_core::Kind;
use serde_json::Value;

use crate::fields::{alias, array, id_at, string_at};
use crate::{EvidenceError, Metadata};

/// A `document` object that names its `csaf_version`; `extract` checks it is 2.0.
pub(crate) fn matches(document: &Value) -> bool {
    document
        .get("document")
        .and_then(|meta| meta.get("csaf_version"))
        .is_some()
}

pub(crate) fn extract(document: &Value) -> Result<Metadata, EvidenceError> {
    let version = document.pointer("/document/csaf_version");
    if version.and_then(Value::as_str) != Some("2.0") {
        let found = version.map(Value::to_string).unwrap_or_default();
        let reason = format!("unsupported CSAF version {found} (expected \"2.0\")");
        return Err(EvidenceError::new("/document/csaf_version", reason));
    }
    let Some(Value::String(category)) = document.pointer("/document/category") else {
        let reason = "CSAF `document.category` is missing or not a string";
        return Err(EvidenceError::new("/document/category", reason));
    };
    let kind = if category == "csaf_vex" {
        Kind::Vex
    } else {
        Kind::Advisory
    };
    let mut aliases = BTreeSet::new();
    for vulnerability in array(document.get("vulnerabilities")) {
        aliases.extend(alias(vulnerability.get("cve")));
        for id in array(vulnerability.get("ids")) {
            aliases.extend(alias(id.get("text")));
        }
    }
    Ok(Metadata {
        kind,
        id: id_at(document, "/document/tracking/id", "CSAF")?,
        modified: string_at(document, "/document/tracking/current_release_date"),
        aliases,
    })
}

#[cfg(test)]
mod tests {
    use export_core::{DocumentFormat, Kind};

    use crate::parse_document;

    fn csaf(category: &str, tracking: &str) -> String {
        format!(
            r#"{{"document": {{"csaf_version": "2.0", "category": "{category}", "tracking": {tracking}}},
                "vulnerabilities": [{{"cve": "CVE-2099-2", "ids": [{{"system_name": "x", "text": "X-1"}}]}},
                                    {{"cve": "CVE-2099-1"}}, {{"notes": []}}]}}"#
        )
    }

    #[test]
    fn category_decides_the_kind() {
        let tracking = r#"{"id": "ACME-2099-1", "current_release_date": "2099-01-01T00:00:00Z"}"#;
        for (category, kind) in [
            ("csaf_vex", Kind::Vex),
            ("csaf_security_advisory", Kind::Advisory),
            ("csaf_informational_advisory", Kind::Advisory),
            ("Cisco Security Advisory", Kind::Advisory),
        ] {
            let parsed = parse_document(csaf(category, tracking).as_bytes()).unwrap();
            assert_eq!((parsed.format, parsed.kind), (DocumentFormat::Csaf, kind));
            assert_eq!(parsed.id, "ACME-2099-1");
            assert_eq!(parsed.modified.as_deref(), Some("2099-01-01T00:00:00Z"));
            assert_eq!(parsed.aliases, ["CVE-2099-1", "CVE-2099-2", "X-1"]);
        }
    }

    #[test]
    fn tracking_id_is_required() {
        for tracking in ["{}", r#"{"id": 7}"#, r#"{"id": ""}"#] {
            let error = parse_document(csaf("csaf_vex", tracking).as_bytes()).unwrap_err();
            assert_eq!(error.pointer, "/document/tracking/id", "{error}");
        }
        let error = parse_document(br#"{"document": {"csaf_version": "2.0", "category": "csaf_vex"}}"#);
        assert_eq!(
            error.unwrap_err().reason,
            "missing CSAF id `document.tracking.id`"
        );
    }

    #[test]
    fn other_versions_and_bad_categories_are_rejected() {
        let error = parse_document(br#"{"document": {"csaf_version": "2.1", "category": "csaf_vex"}}"#);
        let error = error.unwrap_err();
        assert_eq!(error.pointer, "/document/csaf_version");
        assert_eq!(
            error.reason,
            "unsupported CSAF version \"2.1\" (expected \"2.0\")"
        );
        let error = parse_document(br#"{"document": {"csaf_version": "2.0", "tracking": {"id": "A"}}}"#);
        assert_eq!(error.unwrap_err().pointer, "/document/category");
        let error = parse_document(br#"{"document": {"csaf_version": "2.0", "category": 1}}"#);
        assert_eq!(error.unwrap_err().pointer, "/document/category");
    }
}
