//! The in-toto provenance statement: its exact canonical form, and reading its subjects back.

use chrono::{TimeZone, Utc};
use export_core::Sha256Digest;
use export_signing::{provenance_statement, statement_subjects, ProvenanceInput};
use serde_json::json;

fn input() -> ProvenanceInput {
    ProvenanceInput {
        run_id: "run-01".into(),
        builder_id: "https://export-center.dev/builder/export-center".into(),
        builder_version: "0.1.0".into(),
        external_parameters: json!({"targets": [{"kind": "advisory"}], "formats": ["ndjson"]}),
        watermark: 42,
        started_on: Utc.with_ymd_and_hms(2025, 12, 6, 10, 0, 0).unwrap(),
        finished_on: Utc.with_ymd_and_hms(2025, 12, 6, 10, 0, 7).unwrap()
            + chrono::Duration::milliseconds(250),
        subjects: vec![
            ("manifest.json".into(), Sha256Digest::of(b"manifest")),
            ("advisory.ndjson".into(), Sha256Digest::of(b"advisories")),
            ("bundle.tar.zst".into(), Sha256Digest::of(b"bundle")),
        ],
    }
}

#[test]
fn statement_is_canonical_in_toto_v1_with_slsa_provenance() {
    let statement = String::from_utf8(provenance_statement(&input())).unwrap();
    let expected = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "advisory.ndjson", "digest": {"sha256": Sha256Digest::of(b"advisories").hex()}},
            {"name": "bundle.tar.zst", "digest": {"sha256": Sha256Digest::of(b"bundle").hex()}},
            {"name": "manifest.json", "digest": {"sha256": Sha256Digest::of(b"manifest").hex()}},
        ],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://export-center.dev/build/export-run/v1",
                "externalParameters": {"targets": [{"kind": "advisory"}], "formats": ["ndjson"]},
                "internalParameters": {"snapshotWatermark": 42},
                "resolvedDependencies": [],
            },
            "runDetails": {
                "builder": {
                    "id": "https://export-center.dev/builder/export-center",
                    "version": {"export-center": "0.1.0"},
                },
                "metadata": {
                    "invocationId": "run-01",
                    "startedOn": "2025-12-06T10:00:00Z",
                    "finishedOn": "2025-12-06T10:00:07Z",
                },
            },
        },
    });
    assert_eq!(statement.as_bytes(), export_core::canonical_json(&expected));
    assert!(statement.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"#));
}

#[test]
fn statement_does_not_depend_on_subject_order() {
    let mut reversed = input();
    reversed.subjects.reverse();
    assert_eq!(provenance_statement(&reversed), provenance_statement(&input()));
}

#[test]
fn subjects_read_back_sorted_by_name() {
    let subjects = statement_subjects(&provenance_statement(&input())).unwrap();
    let mut expected = input().subjects;
    expected.sort();
    assert_eq!(subjects, expected);
}

#[test]
fn malformed_statements_are_reported() {
    let err = statement_subjects(br#"{"_type":"x","subject":[]}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reading in-toto statement: `_type` is not https://in-toto.io/Statement/v1"
    );
    let bad_digest =
        br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}]}"#;
    let err = statement_subjects(bad_digest).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reading in-toto statement: subject `a` has no valid `digest.sha256`"
    );
}
