//! The Store for PostgreSQL: what several replicas share (state, the job queue, the
//! events the streams fan out), SPEC §13 `database.url = "postgres://…"`.
//!
//! The schema and the SQL are those of the SQLite backend, ported (`$n` placeholders,
//! BIGINT, BYTEA, BOOLEAN, `COLLATE "C"` text), and the same conformance suite checks
//! both. What SQLite gets from its single writer, PostgreSQL gets from locks taken in
//! the transaction, under the default READ COMMITTED isolation:
//! * a run's row is locked (`FOR UPDATE`) before its status changes or an event is
//!   appended to it, so events are numbered 1, 2, 3 … without gaps or collisions and a
//!   run ends once;
//! * claims take one transaction-scoped advisory lock, so two workers never take the
//!   same run and the per-tenant cap on active runs holds across processes;
//! * an ingest takes an advisory lock per tenant, so two batches of one tenant never
//!   plan against the same current versions.
//!
//! The migrations in `migrations/` are embedded and run on connect; sqlx takes an
//! advisory lock while migrating, so replicas starting together migrate once.

mod evidence;
mod idempotency;
mod proofs;
mod rows;
mod runs;
#[cfg(feature = "testing")]
pub mod testing;

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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::rows::db;

static MIGRATOR: Migrator = sqlx::migrate!();

/// Connections per pool and process: the API, the workers and a few streams' replays.
const MAX_CONNECTIONS: u32 = 10;

/// How long taking a connection from the pool may wait before the call fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Store on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://[user[:password]@]host[:port]/database[?options]`)
    /// and brings its schema up to date. A schema other than `public` is chosen with
    /// the URL's `options=-csearch_path%3D<schema>`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(db(sqlx::Error::Configuration(
                "expected a `postgres://…` database url".into(),
            )));
        }
        let options: PgConnectOptions = url.parse().map_err(db)?;
        Self::connect_with(options).await
    }

    /// Connects with `options` and brings the schema up to date.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::backend)?;
        tracing::debug!("postgres database open, schema up to date");
        Ok(Self { pool })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PostgresStore {
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
