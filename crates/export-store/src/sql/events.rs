//! A run's event stream: appends numbered 1, 2, 3 … per run, reads after a sequence
//! number, and the cross-run watermark the event streams follow.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use export_core::{RunId, TenantId};
use sqlx::Transaction;

use crate::sql::database::{query, SqlDatabase};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::runs::{key_of, not_found};
use crate::sql::{self, run_key, timestamp, to_json, Columns};
use crate::{EventActivity, RunEvent, StoreError};

/// Appends to one run's stream take turns (SQLite's write transaction, or the run's row
/// locked with `Dialect::FOR_UPDATE`), so each numbers its event after the last
/// committed one.
pub(crate) async fn append_event<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    event: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = begin_write(store).await?;
    let key = key_of(&mut tx, tenant, &day, seq, D::FOR_UPDATE)
        .await?
        .ok_or_else(|| not_found(run_id))?;
    let next = insert_event(&mut tx, tenant, key, event, data, now).await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(next)
}

/// Appends an event to the stream of the run `key` inside a transaction that excludes
/// other appends to the run; its sequence number.
pub(crate) async fn insert_event<DB: SqlDatabase>(
    tx: &mut Transaction<'static, DB>,
    tenant: &TenantId,
    key: i64,
    event: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let row = query(
        "INSERT INTO run_events (run_key, tenant, seq, event, data, created_at) \
         SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5 FROM run_events WHERE tenant = $6 AND run_key = $7 \
         RETURNING seq",
    )
    .bind(key)
    .bind(tenant.as_str())
    .bind(event)
    .bind(to_json(data)?)
    .bind(timestamp(now))
    .bind(tenant.as_str())
    .bind(key)
    .fetch_one(tx)
    .await?;
    let seq = DB::columns(&row).integer("seq");
    seq
}

pub(crate) async fn events_after<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    after: i64,
    limit: u32,
) -> Result<Vec<RunEvent>, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let rows = query(
        "SELECT e.seq, e.event, e.data FROM run_events e JOIN runs r ON r.run_key = e.run_key \
         WHERE r.tenant = $1 AND r.day = $2 AND r.seq = $3 AND e.tenant = $4 AND e.seq > $5 \
         ORDER BY e.seq LIMIT $6",
    )
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .bind(tenant.as_str())
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?;
    if rows.is_empty() {
        key_of(store.pool(), tenant, &day, seq, "")
            .await?
            .ok_or_else(|| not_found(run_id))?;
    }
    rows.iter()
        .map(|row| {
            let row = D::Db::columns(row);
            let (seq, event, data) = (row.integer("seq")?, row.text("event")?, row.text("data")?);
            let data = serde_json::from_str(&data).map_err(|err| StoreError::corrupt("event data", err))?;
            Ok(RunEvent { seq, event, data })
        })
        .collect()
}

/// The highest `Dialect::EVENT_ROW` of `run_events`: appends only ever raise it (events
/// are never deleted on their own), and reading it is one step down an index.
pub(crate) async fn event_watermark<D: Dialect>(store: &D) -> Result<i64, StoreError> {
    let row = query(format!(
        "SELECT COALESCE(MAX({}), 0) AS watermark FROM run_events",
        D::EVENT_ROW
    ))
    .fetch_one(store.pool())
    .await?;
    let watermark = D::Db::columns(&row).integer("watermark");
    watermark
}

/// The runs with events after `watermark`, by `Dialect::EVENT_ROW`. On SQLite (one
/// writer at a time) rowids follow commit order. On PostgreSQL the number is taken when
/// an append inserts, just before it commits, so commit order may differ from it by the
/// few appends in flight at once: an event whose row number was passed before it
/// committed wakes no feeder here, and reaches its listeners with the feeder's next
/// poll instead.
pub(crate) async fn runs_with_events_after<D: Dialect>(
    store: &D,
    watermark: i64,
    limit: u32,
) -> Result<EventActivity, StoreError> {
    let rows = query(format!(
        "SELECT e.{0} AS event_row, r.tenant, r.day, r.seq FROM run_events AS e \
         JOIN runs AS r ON r.run_key = e.run_key \
         WHERE e.{0} > $1 ORDER BY e.{0} LIMIT $2",
        D::EVENT_ROW
    ))
    .bind(watermark)
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?;
    let mut activity = EventActivity {
        watermark,
        runs: Vec::new(),
        more: rows.len() == limit as usize,
    };
    let mut named = HashSet::new();
    for row in &rows {
        let row = D::Db::columns(row);
        activity.watermark = row.integer("event_row")?;
        let id = sql::run_id(&row)?;
        if named.insert(id.clone()) {
            activity.runs.push(id);
        }
    }
    Ok(activity)
}
