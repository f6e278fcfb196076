//! Runs: creation with per-day numbering, listing, the worker queue (claims, leases,
//! heartbeats), cancellation, progress, outputs and the end of a run.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use export_core::{ProfileId, ProjectId, RunId, RunStatus, TenantId};
use export_store::sql::{
    self, day_text, int, run_key, timestamp, timestamp_column, to_json, unsigned_column, Columns,
};
use export_store::{
    CancelOutcome, EventActivity, IdempotencyClaim, LeaseState, NewRun, Run, RunEvent, RunOutcome, RunOutput,
    RunPage, RunQuery, StoreError, TerminalEvent,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use crate::evidence::TAKE_COUNTER;
use crate::idempotency;
use crate::rows::{db, Row};

/// The columns `run` reads, in every query that returns runs.
const RUN_COLUMNS: &str = "run_key, tenant, day, seq, profile, project, status, plan, watermark, \
     snapshot_at, items_total, items_completed, estimate_seconds, created_at, started_at, completed_at, \
     expires_at, attempts, cancel_requested, error, warnings, published_ref";

const OUTPUT_COLUMNS: &str = "run_key, path, kind, output_id, format, sha256, bytes, media_type, records";

/// Largest page of `list_runs`.
const MAX_PAGE: u32 = 200;

/// How many of a profile's latest succeeded runs its throughput is measured on.
const THROUGHPUT_HISTORY: i64 = 100;

fn not_found(run_id: &RunId) -> StoreError {
    StoreError::NotFound {
        kind: "run",
        id: run_id.to_string(),
    }
}

pub(crate) async fn create(
    pool: &SqlitePool,
    tenant: &TenantId,
    new: NewRun,
    idempotency: Option<&IdempotencyClaim>,
) -> Result<Run, StoreError> {
    let day = new.day();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let seq: i64 = sqlx::query_scalar(TAKE_COUNTER)
        .bind(tenant.as_str())
        .bind(format!("run:{}", day_text(day)))
        .bind(1_i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let sql = format!(
        "INSERT INTO runs (tenant, day, seq, profile, project, status, priority, plan, watermark, \
         snapshot_at, items_total, estimate_seconds, created_at) \
         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?) \
         RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(day_text(day))
        .bind(seq)
        .bind(new.profile_id.to_string())
        .bind(new.project.as_ref().map(ProjectId::as_str))
        .bind(new.plan.priority.rank())
        .bind(to_json(&new.plan)?)
        .bind(new.watermark)
        .bind(new.snapshot_at.map(timestamp))
        .bind(int(new.items_total))
        .bind(int(new.estimate_seconds))
        .bind(timestamp(new.created_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let (_, created) = sql::run(&Row(&row))?;
    if let Some(claim) = idempotency {
        idempotency::complete(&mut tx, tenant, claim, &created.id).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(created)
}

/// `get` in one statement: the run joined with its outputs (one row per output, or one
/// row with null output columns). A single statement reads one snapshot, as a read
/// transaction would, without the `BEGIN` and `COMMIT` round trips.
static GET_RUN: LazyLock<String> = LazyLock::new(|| {
    let run_columns: Vec<String> = RUN_COLUMNS
        .split(',')
        .map(|name| format!("r.{0} AS {0}", name.trim()))
        .collect();
    format!(
        "SELECT {}, o.path AS path, o.kind AS kind, o.output_id AS output_id, o.format AS format, \
         o.sha256 AS sha256, o.bytes AS bytes, o.media_type AS media_type, o.records AS records \
         FROM runs AS r LEFT JOIN run_outputs AS o ON o.run_key = r.run_key AND o.tenant = r.tenant \
         WHERE r.tenant = ? AND r.day = ? AND r.seq = ? \
         ORDER BY o.kind, o.output_id, o.format, o.path",
        run_columns.join(", ")
    )
});

pub(crate) async fn get(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
) -> Result<Option<Run>, StoreError> {
    let Some((day, seq)) = run_key(tenant, run_id) else {
        return Ok(None);
    };
    let rows = sqlx::query(&GET_RUN)
        .bind(tenant.as_str())
        .bind(day)
        .bind(seq)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let (_, mut found) = sql::run(&Row(first))?;
    for row in &rows {
        let path = Row(row).optional_text("path")?;
        if path.is_some() {
            found.outputs.push(sql::output(&Row(row))?);
        }
    }
    Ok(Some(found))
}

pub(crate) async fn list(
    pool: &SqlitePool,
    tenant: &TenantId,
    query: &RunQuery,
) -> Result<RunPage, StoreError> {
    let limit = query.limit.clamp(1, MAX_PAGE) as usize;
    let mut sql = QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE tenant = "));
    sql.push_bind(tenant.as_str());
    if let Some(status) = query.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(profile_id) = &query.profile_id {
        sql.push(" AND profile = ").push_bind(profile_id.to_string());
    }
    if let Some(project) = &query.project {
        sql.push(" AND project = ").push_bind(project.as_str());
    }
    if let Some(after) = &query.after {
        let Some((day, seq)) = run_key(tenant, after) else {
            return Ok(RunPage {
                runs: Vec::new(),
                next: None,
            });
        };
        sql.push(" AND (day < ")
            .push_bind(day.clone())
            .push(" OR (day = ")
            .push_bind(day)
            .push(" AND seq < ")
            .push_bind(seq)
            .push("))");
    }
    // One row more than the page tells whether another page follows.
    sql.push(" ORDER BY day DESC, seq DESC LIMIT ")
        .push_bind(limit as i64 + 1);

    let mut tx = pool.begin().await.map_err(db)?;
    let rows = sql.build().fetch_all(&mut *tx).await.map_err(db)?;
    let more = rows.len() > limit;
    let mut runs = rows
        .iter()
        .take(limit)
        .map(|row| sql::run(&Row(row)))
        .collect::<Result<Vec<_>, _>>()?;

    let mut outputs: HashMap<i64, Vec<RunOutput>> = HashMap::new();
    if !runs.is_empty() {
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {OUTPUT_COLUMNS} FROM run_outputs WHERE tenant = "
        ));
        sql.push_bind(tenant.as_str()).push(" AND run_key IN (");
        let mut keys = sql.separated(", ");
        for (key, _) in &runs {
            keys.push_bind(*key);
        }
        sql.push(") ORDER BY kind, output_id, format, path");
        for row in sql.build().fetch_all(&mut *tx).await.map_err(db)? {
            outputs
                .entry(Row(&row).integer("run_key")?)
                .or_default()
                .push(sql::output(&Row(&row))?);
        }
    }
    tx.commit().await.map_err(db)?;

    for (key, listed) in &mut runs {
        listed.outputs = outputs.remove(key).unwrap_or_default();
    }
    let runs: Vec<Run> = runs.into_iter().map(|(_, listed)| listed).collect();
    let next = if more {
        runs.last().map(|last| last.id.clone())
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

pub(crate) async fn request_cancel(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    now: DateTime<Utc>,
) -> Result<CancelOutcome, StoreError> {
    let Some((day, seq)) = run_key(tenant, run_id) else {
        return Ok(CancelOutcome::NotFound);
    };
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let Some(status) = status_of(&mut tx, tenant, &day, seq).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    let outcome = match status {
        RunStatus::Queued => {
            let key: i64 = sqlx::query_scalar(
                "UPDATE runs SET status = 'cancelled', cancel_requested = 1, completed_at = ? \
                 WHERE tenant = ? AND day = ? AND seq = ? RETURNING run_key",
            )
            .bind(timestamp(now))
            .bind(tenant.as_str())
            .bind(&day)
            .bind(seq)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let event = TerminalEvent::cancelled(run_id);
            insert_event(&mut tx, tenant, key, event.event, &event.data, now).await?;
            CancelOutcome::Cancelled
        }
        RunStatus::Running => {
            sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE tenant = ? AND day = ? AND seq = ?")
                .bind(tenant.as_str())
                .bind(&day)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            CancelOutcome::Requested
        }
        finished => CancelOutcome::AlreadyFinished(finished),
    };
    tx.commit().await.map_err(db)?;
    Ok(outcome)
}

/// The claim is one statement, so it is atomic whatever the number of workers and
/// processes: the subquery picks the run and the update takes it under SQLite's write
/// lock. Tenants with fewer running runs go first, then higher priority, then older.
/// A queued run waits while its tenant has `max_active` running runs; taking over an
/// expired lease does not add one, so it is always allowed.
const CLAIM: &str = "UPDATE runs \
     SET status = 'running', worker = ?1, lease_expires_at = ?2, attempts = attempts + 1, \
         started_at = COALESCE(started_at, ?3) \
     WHERE run_key = ( \
         SELECT candidate.run_key \
         FROM runs AS candidate \
         LEFT JOIN ( \
             SELECT tenant, COUNT(*) AS active FROM runs WHERE status = 'running' GROUP BY tenant \
         ) AS busy ON busy.tenant = candidate.tenant \
         WHERE (candidate.status = 'queued' AND COALESCE(busy.active, 0) < ?4) \
            OR (candidate.status = 'running' AND candidate.lease_expires_at <= ?3) \
         ORDER BY COALESCE(busy.active, 0), candidate.priority DESC, candidate.created_at, candidate.run_key \
         LIMIT 1 \
     ) \
     RETURNING ";

pub(crate) async fn claim_next(
    pool: &SqlitePool,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    max_active_per_tenant: u32,
) -> Result<Option<Run>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let row = sqlx::query(&format!("{CLAIM}{RUN_COLUMNS}"))
        .bind(worker)
        .bind(timestamp(lease_end(now, lease)))
        .bind(timestamp(now))
        .bind(i64::from(max_active_per_tenant))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (key, mut claimed) = sql::run(&Row(&row))?;
    claimed.outputs = outputs_of(&mut tx, &claimed.id.tenant, key).await?;
    tx.commit().await.map_err(db)?;
    Ok(Some(claimed))
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) async fn heartbeat(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<LeaseState, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let extended: Option<bool> = sqlx::query_scalar(
        "UPDATE runs SET lease_expires_at = ? \
         WHERE tenant = ? AND day = ? AND seq = ? AND status = 'running' AND worker = ? \
         RETURNING cancel_requested",
    )
    .bind(timestamp(lease_end(now, lease)))
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .bind(worker)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    if let Some(cancel_requested) = extended {
        return Ok(LeaseState {
            owned: true,
            cancel_requested,
        });
    }
    // Not ours (any more): another worker took it over, or it ended.
    let cancel_requested: Option<bool> =
        sqlx::query_scalar("SELECT cancel_requested FROM runs WHERE tenant = ? AND day = ? AND seq = ?")
            .bind(tenant.as_str())
            .bind(&day)
            .bind(seq)
            .fetch_optional(pool)
            .await
            .map_err(db)?;
    let cancel_requested = cancel_requested.ok_or_else(|| not_found(run_id))?;
    Ok(LeaseState {
        owned: false,
        cancel_requested,
    })
}

pub(crate) async fn set_progress(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    items_completed: u64,
    items_total: u64,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let updated = sqlx::query(
        "UPDATE runs SET items_completed = ?, items_total = ? WHERE tenant = ? AND day = ? AND seq = ?",
    )
    .bind(int(items_completed))
    .bind(int(items_total))
    .bind(tenant.as_str())
    .bind(day)
    .bind(seq)
    .execute(pool)
    .await
    .map_err(db)?
    .rows_affected();
    if updated == 0 {
        return Err(not_found(run_id));
    }
    Ok(())
}

pub(crate) async fn add_output(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    output: &RunOutput,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let key = key_of(&mut tx, tenant, &day, seq)
        .await?
        .ok_or_else(|| not_found(run_id))?;
    sqlx::query(
        "INSERT INTO run_outputs \
         (tenant, run_key, path, kind, output_id, format, sha256, bytes, media_type, records) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (run_key, path) DO UPDATE SET \
         kind = excluded.kind, output_id = excluded.output_id, format = excluded.format, \
         sha256 = excluded.sha256, bytes = excluded.bytes, media_type = excluded.media_type, \
         records = excluded.records",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(&output.path)
    .bind(&output.kind)
    .bind(&output.id)
    .bind(&output.format)
    .bind(output.sha256.to_string())
    .bind(int(output.bytes))
    .bind(&output.media_type)
    .bind(output.records.map(int))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

pub(crate) async fn get_output(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    path: &str,
) -> Result<Option<RunOutput>, StoreError> {
    let Some((day, seq)) = run_key(tenant, run_id) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT o.path, o.kind, o.output_id, o.format, o.sha256, o.bytes, o.media_type, o.records \
         FROM run_outputs AS o JOIN runs AS r ON r.run_key = o.run_key \
         WHERE r.tenant = ?1 AND r.day = ?2 AND r.seq = ?3 AND o.tenant = ?1 AND o.path = ?4",
    )
    .bind(tenant.as_str())
    .bind(day)
    .bind(seq)
    .bind(path)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    row.as_ref().map(|row| sql::output(&Row(row))).transpose()
}

/// Ends a queued or running run; one that already ended keeps its first outcome, so a
/// worker that lost its lease cannot overwrite the result of the one that took over.
pub(crate) async fn finish(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    outcome: RunOutcome,
    event: &TerminalEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT run_key, status FROM runs WHERE tenant = ? AND day = ? AND seq = ?")
            .bind(tenant.as_str())
            .bind(&day)
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    let (key, status) = row.ok_or_else(|| not_found(run_id))?;
    let status = RunStatus::parse(&status).ok_or_else(|| StoreError::corrupt("status", status))?;
    if status.is_terminal() {
        return Ok(());
    }

    let (warnings, error, expires_at, published_ref) = match &outcome {
        RunOutcome::Succeeded {
            expires_at,
            warnings,
            published_ref,
        } => (
            to_json(warnings)?,
            None,
            Some(timestamp(*expires_at)),
            published_ref.clone(),
        ),
        RunOutcome::Failed(error) => ("[]".to_owned(), Some(to_json(error)?), None, None),
        RunOutcome::Cancelled => ("[]".to_owned(), None, None, None),
    };
    sqlx::query(
        "UPDATE runs SET status = ?, completed_at = ?, expires_at = ?, warnings = ?, error = ?, \
         published_ref = ?, lease_expires_at = NULL \
         WHERE tenant = ? AND run_key = ?",
    )
    .bind(outcome.status().as_str())
    .bind(timestamp(now))
    .bind(expires_at)
    .bind(warnings)
    .bind(error)
    .bind(published_ref)
    .bind(tenant.as_str())
    .bind(key)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if !matches!(outcome, RunOutcome::Succeeded { .. }) {
        // The runner has deleted the bytes; the records must not outlive them.
        sqlx::query("DELETE FROM run_outputs WHERE tenant = ? AND run_key = ?")
            .bind(tenant.as_str())
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    insert_event(&mut tx, tenant, key, event.event, &event.data, now).await?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

/// Items per second over the profile's latest succeeded runs: their items over their
/// run time, a run shorter than a second counting as one second.
pub(crate) async fn profile_throughput(
    pool: &SqlitePool,
    tenant: &TenantId,
    profile_id: &ProfileId,
) -> Result<Option<f64>, StoreError> {
    let rows = sqlx::query(
        "SELECT items_total, started_at, completed_at FROM runs \
         WHERE tenant = ? AND profile = ? AND status IN ('succeeded', 'expired') \
         AND items_total > 0 AND started_at IS NOT NULL AND completed_at IS NOT NULL \
         ORDER BY completed_at DESC LIMIT ?",
    )
    .bind(tenant.as_str())
    .bind(profile_id.to_string())
    .bind(THROUGHPUT_HISTORY)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut items = 0.0;
    let mut seconds = 0.0;
    for row in &rows {
        let row = Row(row);
        let started_at = timestamp_column(&row, "started_at")?;
        let completed_at = timestamp_column(&row, "completed_at")?;
        let elapsed = (completed_at - started_at).num_milliseconds() as f64 / 1000.0;
        items += unsigned_column(&row, "items_total")? as f64;
        seconds += elapsed.max(1.0);
    }
    Ok((seconds > 0.0).then(|| items / seconds))
}

pub(crate) async fn queue_position(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
) -> Result<Option<u64>, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let ahead: Option<i64> = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM runs o WHERE o.tenant = r.tenant AND o.status = 'queued' \
           AND (o.priority > r.priority OR (o.priority = r.priority AND (o.created_at < r.created_at \
             OR (o.created_at = r.created_at AND o.run_key < r.run_key))))) \
         FROM runs r WHERE r.tenant = ? AND r.day = ? AND r.seq = ? AND r.status = 'queued'",
    )
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    Ok(ahead.map(|count| count as u64 + 1))
}

pub(crate) async fn append_event(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    event: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let key = key_of(&mut tx, tenant, &day, seq)
        .await?
        .ok_or_else(|| not_found(run_id))?;
    let next = insert_event(&mut tx, tenant, key, event, data, now).await?;
    tx.commit().await.map_err(db)?;
    Ok(next)
}

/// Appends an event to the stream of the run `key` inside `tx`; its sequence number.
async fn insert_event(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    key: i64,
    event: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO run_events (run_key, tenant, seq, event, data, created_at) \
         SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM run_events WHERE tenant = ? AND run_key = ? \
         RETURNING seq",
    )
    .bind(key)
    .bind(tenant.as_str())
    .bind(event)
    .bind(to_json(data)?)
    .bind(timestamp(now))
    .bind(tenant.as_str())
    .bind(key)
    .fetch_one(conn)
    .await
    .map_err(db)
}

pub(crate) async fn events_after(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
    after: i64,
    limit: u32,
) -> Result<Vec<RunEvent>, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT e.seq, e.event, e.data FROM run_events e JOIN runs r ON r.run_key = e.run_key \
         WHERE r.tenant = ? AND r.day = ? AND r.seq = ? AND e.tenant = ? AND e.seq > ? \
         ORDER BY e.seq LIMIT ?",
    )
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .bind(tenant.as_str())
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    if rows.is_empty() {
        let mut conn = pool.acquire().await.map_err(db)?;
        key_of(&mut conn, tenant, &day, seq)
            .await?
            .ok_or_else(|| not_found(run_id))?;
    }
    rows.into_iter()
        .map(|(seq, event, data)| {
            let data = serde_json::from_str(&data).map_err(|err| StoreError::corrupt("event data", err))?;
            Ok(RunEvent { seq, event, data })
        })
        .collect()
}

/// The highest rowid of `run_events`: appends only ever raise it (events are never
/// deleted on their own), and reading it is one step down the table's b-tree.
pub(crate) async fn event_watermark(pool: &SqlitePool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM run_events")
        .fetch_one(pool)
        .await
        .map_err(db)
}

/// The runs with events after `watermark`, by `run_events` rowid: SQLite has one
/// writer at a time, so rowids follow commit order.
pub(crate) async fn runs_with_events_after(
    pool: &SqlitePool,
    watermark: i64,
    limit: u32,
) -> Result<EventActivity, StoreError> {
    let rows = sqlx::query(
        "SELECT e.rowid AS event_row, r.tenant, r.day, r.seq FROM run_events AS e \
         JOIN runs AS r ON r.run_key = e.run_key \
         WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?",
    )
    .bind(watermark)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut activity = EventActivity {
        watermark,
        runs: Vec::new(),
        more: rows.len() == limit as usize,
    };
    let mut named = HashSet::new();
    for row in &rows {
        activity.watermark = Row(row).integer("event_row")?;
        let id = sql::run_id(&Row(row))?;
        if named.insert(id.clone()) {
            activity.runs.push(id);
        }
    }
    Ok(activity)
}

pub(crate) async fn due_for_expiry(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<RunId>, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT tenant, day, seq FROM runs WHERE status = 'succeeded' AND expires_at <= ? \
         ORDER BY expires_at, run_key LIMIT ?",
    )
    .bind(timestamp(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|(tenant, day, seq)| {
            let text = format!("export-run::{tenant}::{day}::{seq:04}");
            RunId::parse(&text).map_err(|err| StoreError::corrupt("run id", err))
        })
        .collect()
}

pub(crate) async fn mark_expired(
    pool: &SqlitePool,
    tenant: &TenantId,
    run_id: &RunId,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let updated = sqlx::query(
        "UPDATE runs SET status = 'expired' WHERE tenant = ? AND day = ? AND seq = ? AND status = 'succeeded'",
    )
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .execute(pool)
    .await
    .map_err(db)?;
    if updated.rows_affected() == 0 && get(pool, tenant, run_id).await?.is_none() {
        return Err(not_found(run_id));
    }
    Ok(())
}

pub(crate) async fn queue_depth(pool: &SqlitePool) -> Result<u64, StoreError> {
    let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'queued'")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    u64::try_from(depth).map_err(|err| StoreError::corrupt("queue depth", err))
}

async fn key_of(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    day: &str,
    seq: i64,
) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT run_key FROM runs WHERE tenant = ? AND day = ? AND seq = ?")
        .bind(tenant.as_str())
        .bind(day)
        .bind(seq)
        .fetch_optional(conn)
        .await
        .map_err(db)
}

async fn status_of(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    day: &str,
    seq: i64,
) -> Result<Option<RunStatus>, StoreError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM runs WHERE tenant = ? AND day = ? AND seq = ?")
            .bind(tenant.as_str())
            .bind(day)
            .bind(seq)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
    status
        .map(|status| RunStatus::parse(&status).ok_or_else(|| StoreError::corrupt("status", status)))
        .transpose()
}

async fn outputs_of(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    key: i64,
) -> Result<Vec<RunOutput>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {OUTPUT_COLUMNS} FROM run_outputs WHERE tenant = ? AND run_key = ? \
         ORDER BY kind, output_id, format, path"
    ))
    .bind(tenant.as_str())
    .bind(key)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.iter().map(|row| sql::output(&Row(row))).collect()
}
