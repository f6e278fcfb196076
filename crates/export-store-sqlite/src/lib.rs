//! The Store for SQLite: the embedded default, one file in the data directory.
//!
//! The database runs in WAL mode (readers never block the writer), with
//! `synchronous = NORMAL`, foreign keys on and a 5 s busy timeout. Every write that
//! reads before it writes runs as `BEGIN IMMEDIATE`, taking the write lock up front, so
//! several pools (several processes) on one file wait for each other instead of failing
//! with `SQLITE_BUSY`. The migrations in `migrations/` are embedded and run on connect.
//!
//! The SQL sticks to what PostgreSQL shares (transactions, `RETURNING`, unique
//! constraints, `ON CONFLICT`), so the PostgreSQL backend is a port, not a redesign.

mod evidence;
mod idempotency;
mod proofs;
mod rows;
mod runs;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use export_core::{EvidenceRecord, ProfileId, RunId, Target, TenantId};
use export_store::{
    CancelOutcome, EventActivity, IdempotencyBegin, IdempotencyClaim, IngestOutcome, LeaseState, NewEvidence,
    NewRun, Run, RunEvent, RunOutcome, RunOutput, RunPage, RunQuery, SnapshotPoint, Store, StoreError,
    TerminalEvent,
};
use futures::stream::BoxStream;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::rows::db;

static MIGRATOR: Migrator = sqlx::migrate!();

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per pool: enough for a few concurrent streams beside the API and workers.
const MAX_CONNECTIONS: u32 = 8;

/// The Store on one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url`, `sqlite://<path>`, and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(db(sqlx::Error::Configuration(
                "expected a `sqlite://<path>` database url".into(),
            )));
        }
        let options = SqliteConnectOptions::from_str(url).map_err(db)?;
        if !names_memory(url) {
            create_owner_only(options.get_filename())?;
        }
        Self::connect_with(options).await
    }

    /// Opens (creating it if missing) the database file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        Self::connect_with(SqliteConnectOptions::new().filename(path)).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::backend)?;
        tracing::debug!("sqlite database open, schema up to date");
        Ok(Self { pool })
    }

    /// Closes every connection, checkpointing the WAL into the database file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `url` names an in-memory database (`sqlite::memory:`, `?mode=memory`), which
/// has no file.
fn names_memory(url: &str) -> bool {
    let (database, params) = url.split_once('?').unwrap_or((url, ""));
    database.ends_with(":memory:") || params.split('&').any(|param| param == "mode=memory")
}

/// Creates the database file owner-only (0600) when it is missing. SQLite would create it
/// `0644` less the umask, and it gives the `-wal` and `-shm` files the database file's
/// mode, so those are owner-only too. An existing file keeps its mode.
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::backend(err)),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn ingest(
        &self,
        tenant: &TenantId,
        items: &[NewEvidence],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        evidence::ingest(&self.pool, tenant, items).await
    }

    async fn snapshot_point(&self, tenant: &TenantId) -> Result<SnapshotPoint, StoreError> {
        evidence::snapshot_point(&self.pool, tenant).await
    }

    async fn count_items(
        &self,
        tenant: &TenantId,
        watermark: i64,
        target: &Target,
    ) -> Result<u64, StoreError> {
        evidence::count_items(&self.pool, tenant, watermark, target).await
    }

    fn stream_items<'a>(
        &'a self,
        tenant: &'a TenantId,
        watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
        evidence::stream_items(&self.pool, tenant, watermark, target)
    }

    async fn begin_idempotency(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        idempotency::begin(&self.pool, tenant, claim, now, lease).await
    }

    async fn create_run(
        &self,
        tenant: &TenantId,
        run: NewRun,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<Run, StoreError> {
        runs::create(&self.pool, tenant, run, idempotency).await
    }

    async fn get_run(&self, tenant: &TenantId, run_id: &RunId) -> Result<Option<Run>, StoreError> {
        runs::get(&self.pool, tenant, run_id).await
    }

    async fn list_runs(&self, tenant: &TenantId, query: &RunQuery) -> Result<RunPage, StoreError> {
        runs::list(&self.pool, tenant, query).await
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        runs::request_cancel(&self.pool, tenant, run_id, now).await
    }

    async fn claim_next_run(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max_active_per_tenant: u32,
    ) -> Result<Option<Run>, StoreError> {
        runs::claim_next(&self.pool, worker, now, lease, max_active_per_tenant).await
    }

    async fn heartbeat(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<LeaseState, StoreError> {
        runs::heartbeat(&self.pool, tenant, run_id, worker, now, lease).await
    }

    async fn set_progress(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        items_completed: u64,
        items_total: u64,
    ) -> Result<(), StoreError> {
        runs::set_progress(&self.pool, tenant, run_id, items_completed, items_total).await
    }

    async fn add_output(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        output: &RunOutput,
    ) -> Result<(), StoreError> {
        runs::add_output(&self.pool, tenant, run_id, output).await
    }

    async fn get_output(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        path: &str,
    ) -> Result<Option<RunOutput>, StoreError> {
        runs::get_output(&self.pool, tenant, run_id, path).await
    }

    async fn finish_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        outcome: RunOutcome,
        event: &TerminalEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        runs::finish(&self.pool, tenant, run_id, outcome, event, now).await
    }

    async fn profile_throughput(
        &self,
        tenant: &TenantId,
        profile_id: &ProfileId,
    ) -> Result<Option<f64>, StoreError> {
        runs::profile_throughput(&self.pool, tenant, profile_id).await
    }

    async fn event_watermark(&self) -> Result<i64, StoreError> {
        runs::event_watermark(&self.pool).await
    }

    async fn runs_with_events_after(&self, watermark: i64, limit: u32) -> Result<EventActivity, StoreError> {
        runs::runs_with_events_after(&self.pool, watermark, limit).await
    }

    async fn queue_position(&self, tenant: &TenantId, run_id: &RunId) -> Result<Option<u64>, StoreError> {
        runs::queue_position(&self.pool, tenant, run_id).await
    }

    async fn append_event(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        event: &str,
        data: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        runs::append_event(&self.pool, tenant, run_id, event, data, now).await
    }

    async fn events_after(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<RunEvent>, StoreError> {
        runs::events_after(&self.pool, tenant, run_id, after, limit).await
    }

    async fn runs_due_for_expiry(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<RunId>, StoreError> {
        runs::due_for_expiry(&self.pool, now, limit).await
    }

    async fn mark_expired(&self, tenant: &TenantId, run_id: &RunId) -> Result<(), StoreError> {
        runs::mark_expired(&self.pool, tenant, run_id).await
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        runs::queue_depth(&self.pool).await
    }

    async fn record_proof(
        &self,
        jti_hash: &[u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        proofs::record(&self.pool, jti_hash, until, now).await
    }

    async fn prune_proofs(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        proofs::prune(&self.pool, now).await
    }
}
