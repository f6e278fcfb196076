//! The SQL store: the schema's encodings (timestamps as fixed-width UTC text, counts as
//! i64, JSON columns, run keys) and the mapping of a row to the model's types, read
//! through [`Columns`]; and, with the feature `sql`, the store's logic itself, written
//! once and generic over the database: every [`Dialect`] (a backend's store type, which
//! holds the pool and says what differs between databases) is a `Store`.

#[cfg(feature = "sql")]
mod database;
#[cfg(feature = "sql")]
mod dialect;
#[cfg(feature = "sql")]
mod events;
#[cfg(feature = "sql")]
mod evidence;
#[cfg(feature = "sql")]
mod idempotency;
#[cfg(feature = "sql")]
mod mirror;
#[cfg(feature = "sql")]
mod notifications;
#[cfg(feature = "sql")]
mod profiles;
#[cfg(feature = "sql")]
mod proofs;
#[cfg(feature = "sql")]
mod runs;
#[cfg(feature = "sql")]
mod schedules;
#[cfg(feature = "sql")]
mod store;
#[cfg(all(feature = "sql", feature = "testing"))]
pub mod testing;

#[cfg(feature = "sql")]
pub use database::{db, query, Executes, On, Query, SqlDatabase, Value};
#[cfg(feature = "sql")]
pub use dialect::{Dialect, Snapshot};
#[cfg(feature = "sql")]
pub use evidence::removals_statement;

use chrono::{DateTime, NaiveDate, Utc};
use export_core::{
    DocumentFormat, EvidenceRecord, Kind, MirrorMode, OutputKind, ProfileId, ProjectId, RunId, RunStatus,
    Sha256Digest, SourceName, TenantId, Trigger, TriggerKind,
};

use crate::{MirrorImport, Run, RunOutput, StoreError, Tombstone};

/// A row of a SQL backend, read by column name. A column that is missing, or of another
/// type, is `StoreError::Corrupt` naming it.
pub trait Columns {
    fn text(&self, name: &'static str) -> Result<String, StoreError>;
    fn optional_text(&self, name: &'static str) -> Result<Option<String>, StoreError>;
    fn integer(&self, name: &'static str) -> Result<i64, StoreError>;
    fn optional_integer(&self, name: &'static str) -> Result<Option<i64>, StoreError>;
    fn boolean(&self, name: &'static str) -> Result<bool, StoreError>;
    fn bytes(&self, name: &'static str) -> Result<Vec<u8>, StoreError>;
    /// Hands text column `name` to `read` where it lies in the row, without a copy.
    fn read_text<T>(&self, name: &'static str, read: impl FnOnce(&str) -> T) -> Result<T, StoreError>;
}

/// Parses text column `name` with `parse`, or reports it `Corrupt`.
pub fn parsed<T, E: std::fmt::Display>(
    row: &impl Columns,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    row.read_text(name, |text| {
        parse(text).map_err(|err| StoreError::corrupt(name, format!("`{text}`: {err}")))
    })?
}

/// The one timestamp format of the schemas: UTC, microseconds, fixed width, so that
/// comparing the text compares the instants.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc))
}

pub fn timestamp_column(row: &impl Columns, name: &'static str) -> Result<DateTime<Utc>, StoreError> {
    parsed(row, name, parse_timestamp)
}

pub fn optional_timestamp_column(
    row: &impl Columns,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.optional_text(name)?
        .map(|text| {
            parse_timestamp(&text).map_err(|err| StoreError::corrupt(name, format!("`{text}`: {err}")))
        })
        .transpose()
}

/// A count as the schemas store it (a 64-bit integer); counts beyond `i64::MAX` do not
/// occur, so saturating is only a guard.
pub fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn unsigned_column(row: &impl Columns, name: &'static str) -> Result<u64, StoreError> {
    let value = row.integer(name)?;
    u64::try_from(value).map_err(|err| StoreError::corrupt(name, format!("{value}: {err}")))
}

/// A digest column, `sha256:<hex>`.
pub fn digest_column(row: &impl Columns, name: &'static str) -> Result<Sha256Digest, StoreError> {
    parsed(row, name, |text| {
        Sha256Digest::parse(text).ok_or("expected `sha256:<hex>`")
    })
}

pub fn json_column<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    name: &'static str,
) -> Result<T, StoreError> {
    parsed(row, name, |text| serde_json::from_str(text))
}

/// Serializes a model value into a JSON column.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

pub fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// The (day, seq) of `run_id` when the run belongs to `tenant`. A run id of another
/// tenant names no run of this one, whatever its day and sequence.
pub fn run_key(tenant: &TenantId, run_id: &RunId) -> Option<(String, i64)> {
    (run_id.tenant == *tenant).then(|| (day_text(run_id.date), i64::from(run_id.seq)))
}

/// The run id of a row with `tenant`, `day` and `seq` columns.
pub fn run_id(row: &impl Columns) -> Result<RunId, StoreError> {
    let seq = row.integer("seq")?;
    let seq = u32::try_from(seq)
        .ok()
        .filter(|seq| *seq >= 1)
        .ok_or_else(|| StoreError::corrupt("seq", seq))?;
    Ok(RunId {
        tenant: parsed(row, "tenant", TenantId::parse)?,
        date: parsed(row, "day", |text| NaiveDate::parse_from_str(text, "%Y-%m-%d"))?,
        seq,
    })
}

/// A run row (without its outputs) and its internal key, `run_key`.
pub fn run(row: &impl Columns) -> Result<(i64, Run), StoreError> {
    let project = row
        .optional_text("project")?
        .map(|text| ProjectId::parse(&text).map_err(|err| StoreError::corrupt("project", err)))
        .transpose()?;
    let attempts = row.integer("attempts")?;
    let error = row
        .optional_text("error")?
        .map(|text| serde_json::from_str(&text).map_err(|err| StoreError::corrupt("error", err)))
        .transpose()?;
    let found = Run {
        id: run_id(row)?,
        profile_id: parsed(row, "profile", ProfileId::parse)?,
        project,
        status: parsed(row, "status", |text| {
            RunStatus::parse(text).ok_or("unknown run status")
        })?,
        plan: json_column(row, "plan")?,
        watermark: row.integer("watermark")?,
        snapshot_at: optional_timestamp_column(row, "snapshot_at")?,
        items_total: unsigned_column(row, "items_total")?,
        items_completed: unsigned_column(row, "items_completed")?,
        estimate_seconds: unsigned_column(row, "estimate_seconds")?,
        created_at: timestamp_column(row, "created_at")?,
        started_at: optional_timestamp_column(row, "started_at")?,
        completed_at: optional_timestamp_column(row, "completed_at")?,
        expires_at: optional_timestamp_column(row, "expires_at")?,
        attempts: u32::try_from(attempts).map_err(|err| StoreError::corrupt("attempts", err))?,
        cancel_requested: row.boolean("cancel_requested")?,
        error,
        warnings: json_column(row, "warnings")?,
        published_ref: row.optional_text("published_ref")?,
        trigger: trigger(row)?,
        outputs: Vec::new(),
    };
    Ok((row.integer("run_key")?, found))
}

/// A run's `trigger_type` and `trigger_at`: a scheduled run has its fire time, an API
/// run none.
fn trigger(row: &impl Columns) -> Result<Trigger, StoreError> {
    let kind = parsed(row, "trigger_type", |text| {
        TriggerKind::parse(text).ok_or("unknown trigger type")
    })?;
    match (kind, optional_timestamp_column(row, "trigger_at")?) {
        (TriggerKind::Api, None) => Ok(Trigger::Api),
        (TriggerKind::Schedule, Some(at)) => Ok(Trigger::Schedule { at }),
        (kind, at) => Err(StoreError::corrupt(
            "trigger_at",
            format!("{at:?} with trigger type `{}`", kind.as_str()),
        )),
    }
}

/// An output row: `path`, `kind`, `output_id`, `format`, `sha256`, `bytes`,
/// `media_type`, `records`.
pub fn output(row: &impl Columns) -> Result<RunOutput, StoreError> {
    let records = row
        .optional_integer("records")?
        .map(|records| u64::try_from(records).map_err(|err| StoreError::corrupt("records", err)))
        .transpose()?;
    Ok(RunOutput {
        kind: parsed(row, "kind", |text| {
            OutputKind::parse(text).ok_or("unknown output type")
        })?,
        id: row.text("output_id")?,
        format: row.text("format")?,
        path: row.text("path")?,
        sha256: digest_column(row, "sha256")?,
        bytes: unsigned_column(row, "bytes")?,
        media_type: row.text("media_type")?,
        records,
    })
}

/// An evidence row as a run reads it: `kind`, `source`, `format`, `id`, `modified`,
/// `digest`, `document`.
pub fn record(row: &impl Columns) -> Result<EvidenceRecord, StoreError> {
    Ok(EvidenceRecord {
        kind: parsed(row, "kind", |text| Kind::parse(text).ok_or("unknown kind"))?,
        source: parsed(row, "source", SourceName::parse)?,
        format: parsed(row, "format", |text| {
            DocumentFormat::parse(text).ok_or("unknown document format")
        })?,
        id: row.text("id")?,
        modified: row.optional_text("modified")?,
        digest: digest_column(row, "digest")?,
        document: row.bytes("document")?,
    })
}

/// A tombstone row as a delta reads it: `id`, `kind`, `source`.
pub fn tombstone(row: &impl Columns) -> Result<Tombstone, StoreError> {
    Ok(Tombstone {
        id: row.text("id")?,
        kind: parsed(row, "kind", |text| Kind::parse(text).ok_or("unknown kind"))?,
        source: parsed(row, "source", SourceName::parse)?,
    })
}

/// A `mirror_imports` row.
pub fn mirror_import(row: &impl Columns) -> Result<MirrorImport, StoreError> {
    Ok(MirrorImport {
        generation: row.integer("generation")?,
        mode: parsed(row, "mode", |text| {
            MirrorMode::parse(text).ok_or("unknown mirror mode")
        })?,
        watermark: row.integer("watermark")?,
        manifest_digest: digest_column(row, "manifest_digest")?,
        snapshot_time: timestamp_column(row, "snapshot_time")?,
        expires_at: timestamp_column(row, "expires_at")?,
        imported_at: timestamp_column(row, "imported_at")?,
        added: unsigned_column(row, "added")?,
        changed: unsigned_column(row, "changed")?,
        unchanged: unsigned_column(row, "unchanged")?,
        removed: unsigned_column(row, "removed")?,
        local_watermark: row.integer("local_watermark")?,
    })
}
