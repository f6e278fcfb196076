//! What differs between the databases the SQL store runs on, and nothing else: how a
//! transaction that writes begins, the locks PostgreSQL needs where SQLite has its one
//! writer, the column that numbers appends across runs, the snapshot condition, and how
//! an ingest batch travels (SQLite's multi-row `VALUES`, PostgreSQL's arrays). Each
//! backend's store type implements it (it holds the pool), and every `Dialect` is a
//! `Store` (`sql::store`).

use std::collections::HashMap;

use async_trait::async_trait;
use export_core::TenantId;
use sqlx::{Database, Pool, Transaction};

use crate::ingest_plan::{Current, NewVersion};
use crate::sql::database::{db, SqlDatabase};
use crate::{NewEvidence, StoreError};

/// The statements that read a snapshot: the watermark is `$1`, the tenant `$2`, the kind
/// `$3` and the source `$4`; the `changes` statements read the items of the snapshot
/// whose version is newer than the watermark after them (`$4`, or `$5` after the
/// source). Built by [`snapshot_statements!`](crate::snapshot_statements) from the one
/// text, with the dialect's spelling of the sequence column.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub count_kind: &'static str,
    pub count_kind_source: &'static str,
    pub stream_kind: &'static str,
    pub stream_kind_source: &'static str,
    pub changes_kind: &'static str,
    pub changes_kind_source: &'static str,
    pub count_changes_kind: &'static str,
    pub count_changes_kind_source: &'static str,
}

/// The [`Snapshot`] statements with the sequence column written as `$seq` (`"seq"`, or
/// SQLite's `"+seq"`, which keeps its planner off the primary key `(tenant, seq)`).
///
/// Both orders match an index (`evidence_by_kind`, `evidence_by_kind_source`, whose text
/// sorts bytewise), so rows come off the index already sorted. The `changes` statements
/// walk the same index: a delta reads every index entry of its target, but only the
/// documents it returns, and needs no sort.
#[macro_export]
macro_rules! snapshot_statements {
    ($seq:literal) => {
        $crate::sql::Snapshot {
            count_kind: concat!(
                "SELECT COUNT(*) AS n FROM evidence WHERE tenant = $2 AND kind = $3 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1)"
            ),
            count_kind_source: concat!(
                "SELECT COUNT(*) AS n FROM evidence WHERE tenant = $2 AND kind = $3 AND source = $4 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1)"
            ),
            stream_kind: concat!(
                "SELECT kind, source, format, id, modified, digest, document FROM evidence ",
                "WHERE tenant = $2 AND kind = $3 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1) ORDER BY id, source, digest"
            ),
            stream_kind_source: concat!(
                "SELECT kind, source, format, id, modified, digest, document FROM evidence ",
                "WHERE tenant = $2 AND kind = $3 AND source = $4 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1) ORDER BY id, source, digest"
            ),
            changes_kind: concat!(
                "SELECT kind, source, format, id, modified, digest, document FROM evidence ",
                "WHERE tenant = $2 AND kind = $3 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1) AND ",
                $seq,
                " > $4 ORDER BY id, source, digest"
            ),
            changes_kind_source: concat!(
                "SELECT kind, source, format, id, modified, digest, document FROM evidence ",
                "WHERE tenant = $2 AND kind = $3 AND source = $4 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1) AND ",
                $seq,
                " > $5 ORDER BY id, source, digest"
            ),
            count_changes_kind: concat!(
                "SELECT COUNT(*) AS n FROM evidence WHERE tenant = $2 AND kind = $3 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1) AND ",
                $seq,
                " > $4"
            ),
            count_changes_kind_source: concat!(
                "SELECT COUNT(*) AS n FROM evidence WHERE tenant = $2 AND kind = $3 AND source = $4 AND ",
                $seq,
                " <= $1 AND (superseded_seq IS NULL OR superseded_seq > $1) AND ",
                $seq,
                " > $5"
            ),
        }
    };
}

/// A database the SQL store runs on: the per-database parts. The store's logic is in
/// `export_store::sql`, once, generic over this trait.
#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    type Db: SqlDatabase;

    /// The statement that begins a transaction that reads before it writes (`None`:
    /// the database's plain `BEGIN`).
    const BEGIN_WRITE: Option<&'static str>;

    /// Appended to a read of a run's row that its transaction then changes: a row lock
    /// where several writers run at once (`" FOR UPDATE"`), nothing where the write
    /// transaction already excludes every other writer.
    const FOR_UPDATE: &'static str;

    /// Run first in a claim's transaction, to serialize claims across processes.
    const LOCK_CLAIMS: Option<&'static str>;

    /// Run first in an ingest's transaction with the tenant as `$1`, to serialize the
    /// ingests of one tenant across processes.
    const LOCK_INGEST: Option<&'static str>;

    /// The column of `run_events` that numbers appends across all runs, in commit order
    /// or close to it (`Store::event_watermark`).
    const EVENT_ROW: &'static str;

    /// The snapshot statements, from [`snapshot_statements!`](crate::snapshot_statements).
    const SNAPSHOT: Snapshot;

    fn pool(&self) -> &Pool<Self::Db>;

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// The stored current version of every (source, id) in `items`, inside an ingest's
    /// transaction.
    async fn current_versions<'a>(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
        tenant: &TenantId,
        items: &'a [NewEvidence],
    ) -> Result<HashMap<(&'a str, &'a str), Current>, StoreError>;

    /// Marks the stored versions a batch replaces (their sequence, the new version's
    /// number) as superseded by the new versions, numbered from `first_seq`.
    async fn supersede_stored(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
        tenant: &TenantId,
        superseded: &[(i64, usize)],
        first_seq: i64,
    ) -> Result<(), StoreError>;

    /// Inserts a batch's new versions, numbered from `first_seq`.
    async fn insert_versions(
        &self,
        tx: &mut <Self::Db as Database>::Connection,
        tenant: &TenantId,
        versions: &[NewVersion<'_>],
        first_seq: i64,
    ) -> Result<(), StoreError>;
}

/// Begins a transaction that reads before it writes.
pub(crate) async fn begin_write<D: Dialect>(store: &D) -> Result<Transaction<'static, D::Db>, StoreError> {
    match D::BEGIN_WRITE {
        Some(statement) => store.pool().begin_with(statement).await,
        None => store.pool().begin().await,
    }
    .map_err(db)
}
