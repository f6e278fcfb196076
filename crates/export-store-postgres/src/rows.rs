//! Conversions between rows and model types: timestamps, integers, JSON columns, and
//! the errors that say a stored value no longer parses.

use chrono::{DateTime, NaiveDate, Utc};
use export_core::{RunId, TenantId};
use export_store::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};

/// A database failure, as the store reports it.
pub(crate) fn db(err: sqlx::Error) -> StoreError {
    StoreError::backend(err)
}

/// Column `name` of `row`, or `Corrupt` when it is missing or of another type.
pub(crate) fn column<'r, T>(row: &'r PgRow, name: &'static str) -> Result<T, StoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(name).map_err(|err| StoreError::corrupt(name, err))
}

/// Parses column `name` with `parse`, or reports it `Corrupt`.
pub(crate) fn parsed<T, E: std::fmt::Display>(
    row: &PgRow,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    let text: String = column(row, name)?;
    parse(&text).map_err(|err| StoreError::corrupt(name, format!("`{text}`: {err}")))
}

/// The one timestamp format of the schema: UTC, microseconds, fixed width, so that
/// comparing the text compares the instants.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc))
}

pub(crate) fn timestamp_column(row: &PgRow, name: &'static str) -> Result<DateTime<Utc>, StoreError> {
    parsed(row, name, parse_timestamp)
}

pub(crate) fn optional_timestamp_column(
    row: &PgRow,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<String> = column(row, name)?;
    text.map(|text| {
        parse_timestamp(&text).map_err(|err| StoreError::corrupt(name, format!("`{text}`: {err}")))
    })
    .transpose()
}

/// A count as the schema stores it (BIGINT); counts beyond `i64::MAX` do not occur, so saturating is
/// only a guard.
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn unsigned_column(row: &PgRow, name: &'static str) -> Result<u64, StoreError> {
    let value: i64 = column(row, name)?;
    u64::try_from(value).map_err(|err| StoreError::corrupt(name, format!("{value}: {err}")))
}

pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &PgRow,
    name: &'static str,
) -> Result<T, StoreError> {
    parsed(row, name, |text| serde_json::from_str(text))
}

/// Serializes a model value into a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

pub(crate) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// The (day, seq) of `run_id` when the run belongs to `tenant`. A run id of another
/// tenant names no run of this one, whatever its day and sequence.
pub(crate) fn run_key(tenant: &TenantId, run_id: &RunId) -> Option<(String, i64)> {
    (run_id.tenant == *tenant).then(|| (day_text(run_id.date), i64::from(run_id.seq)))
}
