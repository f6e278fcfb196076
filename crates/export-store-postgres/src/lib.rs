//! The Store for PostgreSQL: what several replicas share (state, the job queue, the
//! events the streams fan out), SPEC §13 `database.url = "postgres://…"`.
//!
//! The store's logic is `export_store::sql`'s, shared with SQLite; this crate is the
//! PostgreSQL dialect of it (`Dialect`): its connection, its schema (the SQLite one
//! ported: BIGINT, BYTEA, BOOLEAN, `COLLATE "C"` text), its locks and its array-borne
//! ingest statements (`ingest`). What SQLite gets from its single writer, PostgreSQL
//! gets from locks taken in the transaction, under the default READ COMMITTED isolation:
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

mod ingest;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use export_core::TenantId;
use export_store::ingest_plan::{Current, NewVersion};
use export_store::sql::{db, Dialect, Snapshot};
use export_store::{NewEvidence, StoreError};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{PgConnection, PgPool, Postgres};

static MIGRATOR: Migrator = sqlx::migrate!();

/// Connections per pool and process: the API, the workers and a few streams' replays.
const MAX_CONNECTIONS: u32 = 10;

/// How long taking a connection from the pool may wait before the call fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Store on a PostgreSQL database (a `Store` as every `Dialect` is).
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
impl Dialect for PostgresStore {
    type Db = Postgres;

    const BEGIN_WRITE: Option<&'static str> = None;
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    /// Claims are serialized by one advisory lock held until the claim commits, so the
    /// subquery that picks the run and counts each tenant's running runs sees every
    /// earlier claim of every process.
    const LOCK_CLAIMS: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended('export-center:claim', 0))");
    /// Serializes the ingests of one tenant, across processes, until the transaction
    /// ends: a batch is planned against the current versions it read, so no other batch
    /// of the tenant may change them in between.
    const LOCK_INGEST: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended('ingest:' || $1, 0))");
    /// An identity column, taken at insert, just before commit.
    const EVENT_ROW: &'static str = "event_row";
    const SNAPSHOT: Snapshot = export_store::snapshot_statements!("seq");

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn current_versions<'a>(
        &self,
        tx: &mut PgConnection,
        tenant: &TenantId,
        items: &'a [NewEvidence],
    ) -> Result<HashMap<(&'a str, &'a str), Current>, StoreError> {
        ingest::current_versions(tx, tenant, items).await
    }

    async fn supersede_stored(
        &self,
        tx: &mut PgConnection,
        tenant: &TenantId,
        superseded: &[(i64, usize)],
        first_seq: i64,
    ) -> Result<(), StoreError> {
        ingest::supersede_stored(tx, tenant, superseded, first_seq).await
    }

    async fn insert_versions(
        &self,
        tx: &mut PgConnection,
        tenant: &TenantId,
        versions: &[NewVersion<'_>],
        first_seq: i64,
    ) -> Result<(), StoreError> {
        ingest::insert_versions(tx, tenant, versions, first_seq).await
    }
}
