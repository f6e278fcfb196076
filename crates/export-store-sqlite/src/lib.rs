//! The Store for SQLite: the embedded default, one file in the data directory.
//!
//! The database runs in WAL mode (readers never block the writer), with
//! `synchronous = NORMAL`, foreign keys on and a 5 s busy timeout. Every write that
//! reads before it writes runs as `BEGIN IMMEDIATE`, taking the write lock up front, so
//! several pools (several processes) on one file wait for each other instead of failing
//! with `SQLITE_BUSY`. The migrations in `migrations/` are embedded and run on connect.
//!
//! The store's logic is `export_store::sql`'s, shared with PostgreSQL; this crate is
//! the SQLite dialect of it (`Dialect`): its connection, its schema, its write
//! transactions and its multi-row ingest statements (`ingest`).

mod ingest;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use export_core::TenantId;
use export_store::ingest_plan::{Current, NewVersion};
use export_store::sql::{db, Dialect, Snapshot};
use export_store::{NewEvidence, StoreError};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

static MIGRATOR: Migrator = sqlx::migrate!();

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows the connection's worker thread may read ahead of a streaming query's consumer
/// (sqlx's default is 50): an export streams 100,000s of rows, and a deeper buffer lets
/// the worker run ahead instead of waiting for the consumer row by row.
const ROW_BUFFER: usize = 1024;

/// Connections per pool: enough for a few concurrent streams beside the API and workers.
const MAX_CONNECTIONS: u32 = 8;

/// The Store on one SQLite file (a `Store` as every `Dialect` is).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Bind variables per ingest statement (`ingest::MAX_VARIABLES`; less in tests, to
    /// split statements).
    max_variables: usize,
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
            .busy_timeout(BUSY_TIMEOUT)
            .row_buffer_size(ROW_BUFFER);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .before_acquire(|conn, _| Box::pin(usable(conn)))
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::backend)?;
        tracing::debug!("sqlite database open, schema up to date");
        Ok(Self {
            pool,
            max_variables: ingest::MAX_VARIABLES,
        })
    }

    /// The same database, with ingest statements split at `max_variables`.
    #[cfg(test)]
    fn with_max_variables(&self, max_variables: usize) -> Self {
        Self {
            pool: self.pool.clone(),
            max_variables,
        }
    }

    /// Closes every connection, checkpointing the WAL into the database file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a pooled connection may be handed out: not when sqlx still counts it inside a
/// transaction.
///
/// That is a connection whose transaction SQLite ended on its own: a `COMMIT` that finds
/// the disk full (`SQLITE_FULL`) rolls the transaction back, the `ROLLBACK` sqlx then
/// sends fails for want of a transaction, and its count stays at one, so every later
/// `BEGIN IMMEDIATE` on that connection would fail, long after space returned. Such a
/// connection is closed, and the pool opens a fresh one. (A transaction dropped without
/// its commit leaves its `ROLLBACK` queued on the connection's worker; the ping waits for
/// it first.)
async fn usable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    if conn.is_in_transaction() {
        conn.ping().await?;
    }
    let usable = !conn.is_in_transaction();
    if !usable {
        tracing::warn!("closing a database connection whose transaction the database ended on its own");
    }
    Ok(usable)
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

/// SQLite has one writer at a time: a transaction that reads before it writes takes the
/// write lock up front (`BEGIN IMMEDIATE`), which also serializes claims, ingests and
/// appends across pools and processes, so no row locks are needed; `run_events.rowid`
/// follows commit order.
#[async_trait]
impl Dialect for SqliteStore {
    type Db = Sqlite;

    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const FOR_UPDATE: &'static str = "";
    const LOCK_CLAIMS: Option<&'static str> = None;
    const LOCK_INGEST: Option<&'static str> = None;
    const EVENT_ROW: &'static str = "rowid";
    /// The unary `+` keeps SQLite's planner from answering `seq <= $1` with the primary
    /// key `(tenant, seq)`, which then needs a temporary sort of the whole snapshot; the
    /// ordered indexes are the right path.
    const SNAPSHOT: Snapshot = export_store::snapshot_statements!("+seq");

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn current_versions<'a>(
        &self,
        tx: &mut SqliteConnection,
        tenant: &TenantId,
        items: &'a [NewEvidence],
    ) -> Result<HashMap<(&'a str, &'a str), Current>, StoreError> {
        ingest::current_versions(tx, tenant, items, self.max_variables).await
    }

    async fn supersede_stored(
        &self,
        tx: &mut SqliteConnection,
        tenant: &TenantId,
        superseded: &[(i64, usize)],
        first_seq: i64,
    ) -> Result<(), StoreError> {
        ingest::supersede_stored(tx, tenant, superseded, first_seq, self.max_variables).await
    }

    async fn insert_versions(
        &self,
        tx: &mut SqliteConnection,
        tenant: &TenantId,
        versions: &[NewVersion<'_>],
        first_seq: i64,
    ) -> Result<(), StoreError> {
        ingest::insert_versions(tx, tenant, versions, first_seq, self.max_variables).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite is built without its global memory statistics (`.cargo/config.toml`), so
    /// allocating and freeing row values on two threads takes no process-wide lock.
    #[tokio::test]
    async fn sqlite_keeps_no_global_memory_statistics() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = SqliteStore::open(&dir.path().join("options.db"))
            .await
            .expect("open");
        let options: Vec<(String,)> = sqlx::query_as("PRAGMA compile_options")
            .fetch_all(&store.pool)
            .await
            .expect("PRAGMA compile_options");
        assert!(
            options.iter().any(|(option,)| option == "DEFAULT_MEMSTATUS=0"),
            "SQLite was built with its memory statistics on; LIBSQLITE3_FLAGS did not reach \
             libsqlite3-sys's build: {options:?}"
        );
    }
}
