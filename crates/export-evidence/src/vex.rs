//! The two VEX formats that stand alone: OpenVEX (<https://openvex.dev>) and CycloneDX
//! VEX, a CycloneDX BOM of spec 1.4 or later with `vulnerabilities`. (CSAF VEX is in
//! `csaf`.)

use std::collections::BTreeSet;

use export_core::Kind;
use serde_json::Value;

use crate::fields::{alias, array, id_at, string_at};
use crate::{EvidenceError, Metadata};

const OPENVEX_CONTEXT: &str = "https://openvex.dev/ns";

/// The first CycloneDX spec with `vulnerabilities[].analysis`, i.e. VEX.
const CYCLONEDX_VEX_SINCE: (u32, u32) = (1, 4);

pub(crate) fn is_openvex(document: &Value) -> bool {
    document
        .get("@context")
        .and_then(Value::as_str)
        .is_some_and(|context| context.starts_with(OPENVEX_CONTEXT))
}

pub(crate) fn extract_openvex(document: &Value) -> Result<Metadata, EvidenceError> {
    let mut aliases = BTreeSet::new();
    for statement in array(document.get("statements")) {
        match statement.get("vulnerability") {
            // OpenVEX before 0.2.0 wrote the vulnerability as a bare string.
            Some(name @ Value::String(_)) => aliases.extend(alias(Some(name))),
            Some(vulnerability) => {
                aliases.extend(alias(vulnerability.get("name")));
                aliases.extend(
                    array(vulnerability.get("aliases"))
                        .iter()
                        .filter_map(|a| alias(Some(a))),
                );
            }
            None => {}
        }
    }
    Ok(Metadata {
        kind: Kind::Vex,
        id: id_at(document, "/@id", "OpenVEX")?,
        modified: string_at(document, "/last_updated").or_else(|| string_at(document, "/timestamp")),
        aliases,
    })
}

pub(crate) fn is_cyclonedx(document: &Value) -> bool {
    document.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX")
}

pub(crate) fn extract_cyclonedx(document: &Value) -> Result<Metadata, EvidenceError> {
    let spec = document
        .get("specVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(version) = parse_spec_version(spec) else {
        let reason = "CycloneDX `specVersion` must be a version string such as \"1.5\"";
        return Err(EvidenceError::new("/specVersion", reason));
    };
    if version < CYCLONEDX_VEX_SINCE {
        let reason = format!("CycloneDX {spec} is not supported: VEX needs specVersion 1.4 or later");
        return Err(EvidenceError::new("/specVersion", reason));
    }
    let Some(Value::Array(vulnerabilities)) = document.get("vulnerabilities") else {
        let reason = match document.get("vulnerabilities") {
            Some(_) => "CycloneDX `vulnerabilities` must be an array",
            None => "not a VEX document: this CycloneDX BOM has no `vulnerabilities`",
        };
        return Err(EvidenceError::new("/vulnerabilities", reason));
    };
    Ok(Metadata {
        kind: Kind::Vex,
        id: id_at(document, "/serialNumber", "CycloneDX")?,
        modified: string_at(document, "/metadata/timestamp"),
        aliases: vulnerabilities
            .iter()
            .filter_map(|v| alias(v.get("id")))
            .collect(),
    })
}

/// `"1.5"` → `(1, 5)`.
fn parse_spec_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use export_core::{DocumentFormat, Kind};

    use crate::parse_document;

    #[test]
    fn openvex_reads_id_dates_and_vulnerability_names() {
        let parsed = parse_document(
            br#"{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1",
                 "timestamp": "2099-01-01T00:00:00Z", "last_updated": "2099-02-01T00:00:00Z",
                 "statements": [{"vulnerability": {"name": "CVE-2099-1", "aliases": ["GHSA-1"]}},
                                {"vulnerability": "CVE-2099-0"}, {"status": "fixed"}]}"#,
        )
        .unwrap();
        assert_eq!((parsed.format, parsed.kind), (DocumentFormat::Openvex, Kind::Vex));
        assert_eq!(parsed.id, "https://example.com/vex/1");
        assert_eq!(parsed.modified.as_deref(), Some("2099-02-01T00:00:00Z"));
        assert_eq!(parsed.aliases, ["CVE-2099-0", "CVE-2099-1", "GHSA-1"]);

        let parsed =
            parse_document(br#"{"@context": "https://openvex.dev/ns", "@id": "x", "timestamp": "t"}"#)
                .unwrap();
        assert_eq!(parsed.modified.as_deref(), Some("t"));
    }

    #[test]
    fn openvex_needs_its_id() {
        let error = parse_document(br#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": []}"#);
        let error = error.unwrap_err();
        assert_eq!(error.pointer, "/@id");
        assert_eq!(error.reason, "missing OpenVEX id `@id`");
        let error = parse_document(br#"{"@context": "https://openvex.dev/ns/v0.2.0", "@id": ["x"]}"#);
        assert_eq!(error.unwrap_err().pointer, "/@id");
    }

    fn cyclonedx(spec: &str, rest: &str) -> String {
        format!(r#"{{"bomFormat": "CycloneDX", "specVersion": {spec}, "version": 1{rest}}}"#)
    }

    #[test]
    fn cyclonedx_vex_reads_serial_number_timestamp_and_ids() {
        for spec in ["\"1.4\"", "\"1.5\"", "\"1.6\"", "\"1.10\""] {
            let bytes = cyclonedx(
                spec,
                r#", "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
                    "metadata": {"timestamp": "2099-01-01T00:00:00Z"},
                    "vulnerabilities": [{"id": "CVE-2099-2"}, {"id": "CVE-2099-1"}, {"bom-ref": "x"}]"#,
            );
            let parsed = parse_document(bytes.as_bytes()).unwrap();
            assert_eq!(
                (parsed.format, parsed.kind),
                (DocumentFormat::Cyclonedx, Kind::Vex)
            );
            assert_eq!(parsed.id, "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79");
            assert_eq!(parsed.modified.as_deref(), Some("2099-01-01T00:00:00Z"));
            assert_eq!(parsed.aliases, ["CVE-2099-1", "CVE-2099-2"]);
        }
    }

    #[test]
    fn cyclonedx_errors_point_at_the_field() {
        let serial = r#", "serialNumber": "urn:uuid:1", "vulnerabilities": []"#;
        for (bytes, pointer, reason) in [
            (
                cyclonedx("\"1.3\"", serial),
                "/specVersion",
                "CycloneDX 1.3 is not supported",
            ),
            (
                cyclonedx("\"1.2\"", serial),
                "/specVersion",
                "CycloneDX 1.2 is not supported",
            ),
            (
                cyclonedx("1.5", serial),
                "/specVersion",
                "CycloneDX `specVersion` must be",
            ),
            (
                cyclonedx("\"one\"", serial),
                "/specVersion",
                "CycloneDX `specVersion` must be",
            ),
            (
                cyclonedx("\"1.5\"", r#", "serialNumber": "urn:uuid:1""#),
                "/vulnerabilities",
                "not a VEX document",
            ),
            (
                cyclonedx("\"1.5\"", r#", "vulnerabilities": {}"#),
                "/vulnerabilities",
                "CycloneDX `vulnerabilities`",
            ),
            (
                cyclonedx("\"1.5\"", r#", "vulnerabilities": []"#),
                "/serialNumber",
                "missing CycloneDX id",
            ),
        ] {
            let error = parse_document(bytes.as_bytes()).unwrap_err();
            assert_eq!(error.pointer, pointer, "{error}");
            assert!(error.reason.starts_with(reason), "{error}");
        }
        let error = parse_document(br#"{"bomFormat": "CycloneDX", "vulnerabilities": []}"#).unwrap_err();
        assert_eq!(error.pointer, "/specVersion");
    }
}
