//! The provenance of a run: an in-toto Statement v1 with an SLSA v1 provenance predicate,
//! written as canonical JSON, and the reading back of its subjects for verification.

use chrono::{DateTime, Utc};
use export_core::{canonical_json, format_timestamp, Sha256Digest};
use serde_json::{json, Value};

use crate::SigningError;

/// The statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The statement's `predicateType`.
pub const PROVENANCE_PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The predicate's `buildDefinition.buildType`.
pub const BUILD_TYPE: &str = "https://export-center.dev/build/export-run/v1";

/// What the provenance of one run says.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceInput {
    /// The run id, written as `invocationId`.
    pub run_id: String,
    pub builder_id: String,
    /// The Export Center version, written as `builder.version["export-center"]`.
    pub builder_version: String,
    /// The normalized request.
    pub external_parameters: Value,
    /// The snapshot watermark, the highest ingestion sequence included.
    pub watermark: i64,
    pub started_on: DateTime<Utc>,
    pub finished_on: DateTime<Utc>,
    /// `(path, digest)` of every data file, the manifest and the bundle, in any order.
    pub subjects: Vec<(String, Sha256Digest)>,
}

/// The canonical JSON of the in-toto statement for `input`, subjects sorted by name and times
/// in whole seconds (`2025-12-06T10:00:00Z`).
pub fn provenance_statement(input: &ProvenanceInput) -> Vec<u8> {
    let mut subjects: Vec<&(String, Sha256Digest)> = input.subjects.iter().collect();
    subjects.sort();
    let subjects: Vec<Value> = subjects
        .into_iter()
        .map(|(name, digest)| json!({ "name": name, "digest": { "sha256": digest.hex() } }))
        .collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PROVENANCE_PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": input.external_parameters,
                "internalParameters": { "snapshotWatermark": input.watermark },
                "resolvedDependencies": [],
            },
            "runDetails": {
                "builder": {
                    "id": input.builder_id,
                    "version": { "export-center": input.builder_version },
                },
                "metadata": {
                    "invocationId": input.run_id,
                    "startedOn": format_timestamp(input.started_on),
                    "finishedOn": format_timestamp(input.finished_on),
                },
            },
        },
    });
    canonical_json(&statement)
}

/// Reads the `(name, sha256)` subjects of an in-toto Statement v1, in the statement's order.
pub fn statement_subjects(statement: &[u8]) -> Result<Vec<(String, Sha256Digest)>, SigningError> {
    let malformed = |what: &str| SigningError::MalformedStatement(what.to_owned());
    let statement: Value =
        serde_json::from_slice(statement).map_err(|err| SigningError::MalformedStatement(err.to_string()))?;
    if statement["_type"] != STATEMENT_TYPE {
        return Err(malformed("`_type` is not https://in-toto.io/Statement/v1"));
    }
    let subjects = statement["subject"]
        .as_array()
        .ok_or_else(|| malformed("`subject` is not an array"))?;
    subjects
        .iter()
        .map(|subject| {
            let name = subject["name"]
                .as_str()
                .ok_or_else(|| malformed("a subject has no `name`"))?;
            let digest = subject["digest"]["sha256"]
                .as_str()
                .filter(|hex| !hex.starts_with("sha256:"))
                .and_then(Sha256Digest::parse)
                .ok_or_else(|| malformed(&format!("subject `{name}` has no valid `digest.sha256`")))?;
            Ok((name.to_owned(), digest))
        })
        .collect()
}
