//! Runs: creation with per-day numbering, listing, the worker queue (claims, leases,
//! heartbeats), cancellation, progress, outputs and the end of a run.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use export_core::{NotificationEvent, ProfileId, ProjectId, RunId, RunStatus, TenantId};
use futures::future::BoxFuture;
use sqlx::Transaction;

use crate::sql::database::{query, Executes, SqlDatabase};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::events::insert_event;
use crate::sql::evidence::TAKE_COUNTER;
use crate::sql::notifications;
use crate::sql::{
    self, day_text, idempotency, int, run_key, timestamp, timestamp_column, to_json, unsigned_column, Columns,
};
use crate::{
    CancelOutcome, Finished, FireCreation, IdempotencyClaim, LeaseState, NewRun, Run, RunOutcome, RunOutput,
    RunPage, RunQuery, StoreError, TerminalEvent,
};

/// The columns `run` reads, in every query that returns runs.
const RUN_COLUMNS: &str = "run_key, tenant, day, seq, profile, project, status, plan, watermark, \
     snapshot_at, items_total, items_completed, estimate_seconds, created_at, started_at, completed_at, \
     expires_at, attempts, cancel_requested, error, warnings, published_ref, trigger_type, trigger_at";

const OUTPUT_COLUMNS: &str = "run_key, path, kind, output_id, format, sha256, bytes, media_type, records";

/// Largest page of `list_runs`.
const MAX_PAGE: u32 = 200;

/// How many of a profile's latest succeeded runs its throughput is measured on.
const THROUGHPUT_HISTORY: i64 = 100;

pub(crate) fn not_found(run_id: &RunId) -> StoreError {
    StoreError::NotFound {
        kind: "run",
        id: run_id.to_string(),
    }
}

/// Creates a run, or finds that its schedule's fire already has one: then the
/// transaction is abandoned (its sequence number too) and the existing run's id is the
/// answer. The conflict is the unique index `runs_schedule_fire`; under PostgreSQL a
/// concurrent creator of the same fire waits on it until the first commits, then finds
/// the conflict, so a fire never yields two runs.
pub(crate) async fn create<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    new: NewRun,
    idempotency: Option<&IdempotencyClaim>,
) -> Result<FireCreation, StoreError> {
    let day = new.day();
    let mut tx = begin_write(store).await?;
    let counter = query(TAKE_COUNTER)
        .bind(tenant.as_str())
        .bind(format!("run:{}", day_text(day)))
        .bind(1_i64)
        .fetch_one(&mut tx)
        .await?;
    let seq = D::Db::columns(&counter).integer("value")?;
    let sql = format!(
        "INSERT INTO runs (tenant, day, seq, profile, project, status, priority, plan, watermark, \
         snapshot_at, items_total, estimate_seconds, created_at, trigger_type, trigger_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (tenant, profile, trigger_at) DO NOTHING \
         RETURNING {RUN_COLUMNS}"
    );
    let fire_time = new.trigger.fire_time().map(timestamp);
    let row = query(sql)
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
        .bind(new.trigger.kind().as_str())
        .bind(fire_time.clone())
        .fetch_optional(&mut tx)
        .await?;
    let Some(row) = row else {
        let existing =
            query("SELECT tenant, day, seq FROM runs WHERE tenant = $1 AND profile = $2 AND trigger_at = $3")
                .bind(tenant.as_str())
                .bind(new.profile_id.to_string())
                .bind(fire_time)
                .fetch_one(&mut tx)
                .await?;
        return Ok(FireCreation::AlreadyFired(sql::run_id(&D::Db::columns(
            &existing,
        ))?));
    };
    let (_, created) = sql::run(&D::Db::columns(&row))?;
    if let Some(claim) = idempotency {
        idempotency::complete::<D>(&mut tx, tenant, claim, &created.id).await?;
    }
    tx.commit().await.map_err(sql::db)?;
    Ok(FireCreation::Created(Box::new(created)))
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
         WHERE r.tenant = $1 AND r.day = $2 AND r.seq = $3 \
         ORDER BY o.kind, o.output_id, o.format, o.path",
        run_columns.join(", ")
    )
});

pub(crate) async fn get<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
) -> Result<Option<Run>, StoreError> {
    let Some((day, seq)) = run_key(tenant, run_id) else {
        return Ok(None);
    };
    let rows = query(GET_RUN.as_str())
        .bind(tenant.as_str())
        .bind(day)
        .bind(seq)
        .fetch_all(store.pool())
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let (_, mut found) = sql::run(&D::Db::columns(first))?;
    for row in &rows {
        let row = D::Db::columns(row);
        if row.optional_text("path")?.is_some() {
            found.outputs.push(sql::output(&row)?);
        }
    }
    Ok(Some(found))
}

pub(crate) async fn list<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_query: &RunQuery,
) -> Result<RunPage, StoreError> {
    let limit = run_query.limit.clamp(1, MAX_PAGE) as usize;
    let mut select = query(format!("SELECT {RUN_COLUMNS} FROM runs WHERE tenant = "));
    select.push_bind(tenant.as_str());
    if let Some(status) = run_query.status {
        select.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(profile_id) = &run_query.profile_id {
        select.push(" AND profile = ").push_bind(profile_id.to_string());
    }
    if let Some(trigger) = run_query.trigger {
        select.push(" AND trigger_type = ").push_bind(trigger.as_str());
    }
    if let Some(project) = &run_query.project {
        select.push(" AND project = ").push_bind(project.as_str());
    }
    if let Some(after) = &run_query.after {
        let Some((day, seq)) = run_key(tenant, after) else {
            return Ok(RunPage {
                runs: Vec::new(),
                next: None,
            });
        };
        select
            .push(" AND (day < ")
            .push_bind(day.clone())
            .push(" OR (day = ")
            .push_bind(day)
            .push(" AND seq < ")
            .push_bind(seq)
            .push("))");
    }
    // One row more than the page tells whether another page follows.
    select
        .push(" ORDER BY day DESC, seq DESC LIMIT ")
        .push_bind(limit as i64 + 1);

    let mut tx = store.pool().begin().await.map_err(sql::db)?;
    let rows = select.fetch_all(&mut tx).await?;
    let more = rows.len() > limit;
    let mut runs = rows
        .iter()
        .take(limit)
        .map(|row| sql::run(&D::Db::columns(row)))
        .collect::<Result<Vec<_>, _>>()?;

    let mut outputs: HashMap<i64, Vec<RunOutput>> = HashMap::new();
    if !runs.is_empty() {
        let mut select = query(format!(
            "SELECT {OUTPUT_COLUMNS} FROM run_outputs WHERE tenant = "
        ));
        select.push_bind(tenant.as_str()).push(" AND run_key IN (");
        for (idx, (key, _)) in runs.iter().enumerate() {
            if idx > 0 {
                select.push(", ");
            }
            select.push_bind(*key);
        }
        select.push(") ORDER BY kind, output_id, format, path");
        for row in select.fetch_all(&mut tx).await? {
            let row = D::Db::columns(&row);
            outputs
                .entry(row.integer("run_key")?)
                .or_default()
                .push(sql::output(&row)?);
        }
    }
    tx.commit().await.map_err(sql::db)?;

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

pub(crate) async fn request_cancel<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    now: DateTime<Utc>,
) -> Result<CancelOutcome, StoreError> {
    let Some((day, seq)) = run_key(tenant, run_id) else {
        return Ok(CancelOutcome::NotFound);
    };
    let mut tx = begin_write(store).await?;
    let Some(status) = status_of::<D>(&mut tx, tenant, &day, seq).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    let outcome = match status {
        RunStatus::Queued => {
            let row = query(
                "UPDATE runs SET status = 'cancelled', cancel_requested = TRUE, completed_at = $1 \
                 WHERE tenant = $2 AND day = $3 AND seq = $4 RETURNING run_key",
            )
            .bind(timestamp(now))
            .bind(tenant.as_str())
            .bind(&day)
            .bind(seq)
            .fetch_one(&mut tx)
            .await?;
            let key = D::Db::columns(&row).integer("run_key")?;
            let event = TerminalEvent::cancelled(run_id);
            insert_event(&mut tx, tenant, key, event.event, &event.data, now).await?;
            notifications::insert(&mut tx, run_id, NotificationEvent::Cancelled, now).await?;
            CancelOutcome::Cancelled
        }
        RunStatus::Running => {
            query("UPDATE runs SET cancel_requested = TRUE WHERE tenant = $1 AND day = $2 AND seq = $3")
                .bind(tenant.as_str())
                .bind(&day)
                .bind(seq)
                .execute(&mut tx)
                .await?;
            CancelOutcome::Requested
        }
        finished => CancelOutcome::AlreadyFinished(finished),
    };
    tx.commit().await.map_err(sql::db)?;
    Ok(outcome)
}

/// The claim is one statement: the subquery picks the run and the update takes it, under
/// SQLite's write lock, or under PostgreSQL's claim lock (`Dialect::LOCK_CLAIMS`), held
/// until the claim commits, so the subquery sees every earlier claim of every process:
/// no run is taken twice and no tenant passes its cap. Tenants with fewer running runs
/// go first, then higher priority, then older. A queued run waits while its tenant has
/// `max_active` running runs; taking over an expired lease does not add one, so it is
/// always allowed.
const CLAIM: &str = "UPDATE runs \
     SET status = 'running', worker = $1, lease_expires_at = $2, attempts = attempts + 1, \
         started_at = COALESCE(started_at, $3) \
     WHERE run_key = ( \
         SELECT candidate.run_key \
         FROM runs AS candidate \
         LEFT JOIN ( \
             SELECT tenant, COUNT(*) AS active FROM runs WHERE status = 'running' GROUP BY tenant \
         ) AS busy ON busy.tenant = candidate.tenant \
         WHERE (candidate.status = 'queued' AND COALESCE(busy.active, 0) < $4) \
            OR (candidate.status = 'running' AND candidate.lease_expires_at <= $3) \
         ORDER BY COALESCE(busy.active, 0), candidate.priority DESC, candidate.created_at, candidate.run_key \
         LIMIT 1 \
     ) \
     RETURNING ";

pub(crate) async fn claim_next<D: Dialect>(
    store: &D,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    max_active_per_tenant: u32,
) -> Result<Option<Run>, StoreError> {
    let mut tx = begin_write(store).await?;
    if let Some(lock) = D::LOCK_CLAIMS {
        query(lock).execute(&mut tx).await?;
    }
    let row = query(format!("{CLAIM}{RUN_COLUMNS}"))
        .bind(worker)
        .bind(timestamp(lease_end(now, lease)))
        .bind(timestamp(now))
        .bind(i64::from(max_active_per_tenant))
        .fetch_optional(&mut tx)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (key, mut claimed) = sql::run(&D::Db::columns(&row))?;
    claimed.outputs = outputs_of(&mut tx, &claimed.id.tenant, key).await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(Some(claimed))
}

pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) async fn heartbeat<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    worker: &str,
    attempt: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<LeaseState, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let extended = query(
        "UPDATE runs SET lease_expires_at = $1 \
         WHERE tenant = $2 AND day = $3 AND seq = $4 AND status = 'running' AND worker = $5 \
         AND attempts = $6 RETURNING cancel_requested",
    )
    .bind(timestamp(lease_end(now, lease)))
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .bind(worker)
    .bind(i64::from(attempt))
    .fetch_optional(store.pool())
    .await?;
    if let Some(row) = extended {
        return Ok(LeaseState {
            owned: true,
            cancel_requested: D::Db::columns(&row).boolean("cancel_requested")?,
        });
    }
    // Not this attempt's (any more): another attempt took it over, or it ended.
    let row = query("SELECT cancel_requested FROM runs WHERE tenant = $1 AND day = $2 AND seq = $3")
        .bind(tenant.as_str())
        .bind(&day)
        .bind(seq)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| not_found(run_id))?;
    let cancel_requested = D::Db::columns(&row).boolean("cancel_requested")?;
    Ok(LeaseState {
        owned: false,
        cancel_requested,
    })
}

pub(crate) async fn set_progress<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    items_completed: u64,
    items_total: u64,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let done = query(
        "UPDATE runs SET items_completed = $1, items_total = $2 WHERE tenant = $3 AND day = $4 AND seq = $5",
    )
    .bind(int(items_completed))
    .bind(int(items_total))
    .bind(tenant.as_str())
    .bind(day)
    .bind(seq)
    .execute(store.pool())
    .await?;
    if D::rows_affected(&done) == 0 {
        return Err(not_found(run_id));
    }
    Ok(())
}

pub(crate) async fn add_output<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    output: &RunOutput,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = begin_write(store).await?;
    let key = key_of(&mut tx, tenant, &day, seq, "")
        .await?
        .ok_or_else(|| not_found(run_id))?;
    query(
        "INSERT INTO run_outputs \
         (tenant, run_key, path, kind, output_id, format, sha256, bytes, media_type, records) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (run_key, path) DO UPDATE SET \
         kind = excluded.kind, output_id = excluded.output_id, format = excluded.format, \
         sha256 = excluded.sha256, bytes = excluded.bytes, media_type = excluded.media_type, \
         records = excluded.records",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(&output.path)
    .bind(output.kind.as_str())
    .bind(&output.id)
    .bind(&output.format)
    .bind(output.sha256.to_string())
    .bind(int(output.bytes))
    .bind(&output.media_type)
    .bind(output.records.map(int))
    .execute(&mut tx)
    .await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(())
}

pub(crate) async fn get_output<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    path: &str,
) -> Result<Option<RunOutput>, StoreError> {
    let Some((day, seq)) = run_key(tenant, run_id) else {
        return Ok(None);
    };
    let row = query(
        "SELECT o.path, o.kind, o.output_id, o.format, o.sha256, o.bytes, o.media_type, o.records \
         FROM run_outputs AS o JOIN runs AS r ON r.run_key = o.run_key \
         WHERE r.tenant = $1 AND r.day = $2 AND r.seq = $3 AND o.tenant = $1 AND o.path = $4",
    )
    .bind(tenant.as_str())
    .bind(day)
    .bind(seq)
    .bind(path)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref()
        .map(|row| sql::output(&D::Db::columns(row)))
        .transpose()
}

/// Ends a queued or running run; one that already ended keeps its first outcome, so a
/// worker that lost its lease cannot overwrite the result of the one that took over.
pub(crate) async fn finish<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    outcome: RunOutcome,
    event: &TerminalEvent,
    now: DateTime<Utc>,
) -> Result<Finished, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = begin_write(store).await?;
    let row = query(format!(
        "SELECT run_key, status, cancel_requested FROM runs WHERE tenant = $1 AND day = $2 AND seq = $3{}",
        D::FOR_UPDATE
    ))
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| not_found(run_id))?;
    let row = D::Db::columns(&row);
    let key = row.integer("run_key")?;
    let status = row.text("status")?;
    let status = RunStatus::parse(&status).ok_or_else(|| StoreError::corrupt("status", status))?;
    if status.is_terminal() {
        return Ok(Finished::AlreadyEnded);
    }
    if matches!(outcome, RunOutcome::Succeeded { .. }) && row.boolean("cancel_requested")? {
        return Ok(Finished::CancelRequested);
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
    query(
        "UPDATE runs SET status = $1, completed_at = $2, expires_at = $3, warnings = $4, error = $5, \
         published_ref = $6, lease_expires_at = NULL \
         WHERE tenant = $7 AND run_key = $8",
    )
    .bind(outcome.status().as_str())
    .bind(timestamp(now))
    .bind(expires_at)
    .bind(warnings)
    .bind(error)
    .bind(published_ref)
    .bind(tenant.as_str())
    .bind(key)
    .execute(&mut tx)
    .await?;
    if !matches!(outcome, RunOutcome::Succeeded { .. }) {
        // The runner has deleted the bytes; the records must not outlive them.
        query("DELETE FROM run_outputs WHERE tenant = $1 AND run_key = $2")
            .bind(tenant.as_str())
            .bind(key)
            .execute(&mut tx)
            .await?;
    }
    insert_event(&mut tx, tenant, key, event.event, &event.data, now).await?;
    if let Some(ended) = NotificationEvent::for_status(outcome.status()) {
        notifications::insert(&mut tx, run_id, ended, now).await?;
    }
    tx.commit().await.map_err(sql::db)?;
    Ok(Finished::Recorded)
}

/// Items per second over the profile's latest succeeded runs: their items over their
/// run time, a run shorter than a second counting as one second.
pub(crate) async fn profile_throughput<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    profile_id: &ProfileId,
) -> Result<Option<f64>, StoreError> {
    let rows = query(
        "SELECT items_total, started_at, completed_at FROM runs \
         WHERE tenant = $1 AND profile = $2 AND status IN ('succeeded', 'expired') \
         AND items_total > 0 AND started_at IS NOT NULL AND completed_at IS NOT NULL \
         ORDER BY completed_at DESC LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(profile_id.to_string())
    .bind(THROUGHPUT_HISTORY)
    .fetch_all(store.pool())
    .await?;
    let mut items = 0.0;
    let mut seconds = 0.0;
    for row in &rows {
        let row = D::Db::columns(row);
        let started_at = timestamp_column(&row, "started_at")?;
        let completed_at = timestamp_column(&row, "completed_at")?;
        let elapsed = (completed_at - started_at).num_milliseconds() as f64 / 1000.0;
        items += unsigned_column(&row, "items_total")? as f64;
        seconds += elapsed.max(1.0);
    }
    Ok((seconds > 0.0).then(|| items / seconds))
}

pub(crate) async fn queue_position<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
) -> Result<Option<u64>, StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let row = query(
        "SELECT (SELECT COUNT(*) FROM runs o WHERE o.tenant = r.tenant AND o.status = 'queued' \
           AND (o.priority > r.priority OR (o.priority = r.priority AND (o.created_at < r.created_at \
             OR (o.created_at = r.created_at AND o.run_key < r.run_key))))) AS ahead \
         FROM runs r WHERE r.tenant = $1 AND r.day = $2 AND r.seq = $3 AND r.status = 'queued'",
    )
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .fetch_optional(store.pool())
    .await?;
    let ahead = row.map(|row| D::Db::columns(&row).integer("ahead")).transpose()?;
    Ok(ahead.map(|count| count as u64 + 1))
}

pub(crate) async fn due_for_expiry<D: Dialect>(
    store: &D,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<RunId>, StoreError> {
    let rows = query(
        "SELECT tenant, day, seq FROM runs WHERE status = 'succeeded' AND expires_at <= $1 \
         ORDER BY expires_at, run_key LIMIT $2",
    )
    .bind(timestamp(now))
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let row = D::Db::columns(row);
            let (tenant, day, seq) = (row.text("tenant")?, row.text("day")?, row.integer("seq")?);
            let text = format!("export-run::{tenant}::{day}::{seq:04}");
            RunId::parse(&text).map_err(|err| StoreError::corrupt("run id", err))
        })
        .collect()
}

pub(crate) async fn mark_expired<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    run_id: &RunId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (day, seq) = run_key(tenant, run_id).ok_or_else(|| not_found(run_id))?;
    let mut tx = begin_write(store).await?;
    let expired = query(
        "UPDATE runs SET status = 'expired' WHERE tenant = $1 AND day = $2 AND seq = $3 AND status = 'succeeded' \
         RETURNING run_key",
    )
    .bind(tenant.as_str())
    .bind(&day)
    .bind(seq)
    .fetch_optional(&mut tx)
    .await?;
    if expired.is_some() {
        notifications::insert(&mut tx, run_id, NotificationEvent::Expired, now).await?;
    }
    tx.commit().await.map_err(sql::db)?;
    if expired.is_none() && get(store, tenant, run_id).await?.is_none() {
        return Err(not_found(run_id));
    }
    Ok(())
}

pub(crate) async fn queue_depth<D: Dialect>(store: &D) -> Result<u64, StoreError> {
    let row = query("SELECT COUNT(*) AS n FROM runs WHERE status = 'queued'")
        .fetch_one(store.pool())
        .await?;
    let depth = D::Db::columns(&row).integer("n")?;
    u64::try_from(depth).map_err(|err| StoreError::corrupt("queue depth", err))
}

/// The run's key; with `lock` (`Dialect::FOR_UPDATE`), its row locked until the
/// transaction ends. (A boxed future: the compiler proves it `Send` here, once, for
/// every executor.)
pub(crate) fn key_of<'c, E: Executes<'c>>(
    on: E,
    tenant: &'c TenantId,
    day: &'c str,
    seq: i64,
    lock: &str,
) -> BoxFuture<'c, Result<Option<i64>, StoreError>> {
    let fetched = query(format!(
        "SELECT run_key FROM runs WHERE tenant = $1 AND day = $2 AND seq = $3{lock}"
    ))
    .bind(tenant.as_str())
    .bind(day)
    .bind(seq)
    .fetch_optional(on);
    Box::pin(async move {
        let row = fetched.await?;
        row.map(|row| E::Db::columns(&row).integer("run_key")).transpose()
    })
}

/// The run's status, its row locked (`Dialect::FOR_UPDATE`) until the transaction ends.
async fn status_of<D: Dialect>(
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    day: &str,
    seq: i64,
) -> Result<Option<RunStatus>, StoreError> {
    let row = query(format!(
        "SELECT status FROM runs WHERE tenant = $1 AND day = $2 AND seq = $3{}",
        D::FOR_UPDATE
    ))
    .bind(tenant.as_str())
    .bind(day)
    .bind(seq)
    .fetch_optional(tx)
    .await?;
    row.map(|row| {
        let status = D::Db::columns(&row).text("status")?;
        RunStatus::parse(&status).ok_or_else(|| StoreError::corrupt("status", status))
    })
    .transpose()
}

async fn outputs_of<DB: SqlDatabase>(
    tx: &mut Transaction<'static, DB>,
    tenant: &TenantId,
    key: i64,
) -> Result<Vec<RunOutput>, StoreError> {
    let rows = query(format!(
        "SELECT {OUTPUT_COLUMNS} FROM run_outputs WHERE tenant = $1 AND run_key = $2 \
         ORDER BY kind, output_id, format, path"
    ))
    .bind(tenant.as_str())
    .bind(key)
    .fetch_all(tx)
    .await?;
    rows.iter().map(|row| sql::output(&DB::columns(row))).collect()
}
