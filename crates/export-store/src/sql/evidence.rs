//! Evidence: versioned documents, their removals, and the snapshots runs read.
//!
//! Every version of an item is a row. It records the ingestion sequence that created it
//! and the one that superseded it (NULL while it is current), so the snapshot at a
//! watermark W is every row with `seq <= W` not superseded by W.
//!
//! A removal is a row of `tombstones` with a sequence of its own, which is also the
//! sequence that supersedes the removed version: the snapshot rule stays as it is (from
//! the tombstone on, no version of the item is visible), and the item, left without a
//! current version, is new when it is ingested again.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use export_core::{EvidenceRecord, Kind, SourceName, Target, TenantId};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use sqlx::Transaction;

use crate::ingest_plan::{new_seq, Plan};
use crate::sql::database::{query, Executes, SqlDatabase, Value};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::{self, int, optional_timestamp_column, timestamp, Columns};
use crate::{IngestOutcome, NewEvidence, SnapshotPoint, StoreError, Tombstone};

/// The tenant's ingestion sequence in the counters table.
const EVIDENCE_COUNTER: &str = "evidence";

/// Takes `$3` numbers of a tenant counter at once, creating it, and returns the last.
pub(crate) const TAKE_COUNTER: &str = "INSERT INTO counters (tenant, name, value) VALUES ($1, $2, $3) \
     ON CONFLICT (tenant, name) DO UPDATE SET value = counters.value + excluded.value \
     RETURNING value";

/// Begins a transaction that changes the tenant's evidence: the dialect's write
/// transaction, then its ingest lock, if any, so that no other change of the tenant's
/// evidence plans against the same current versions until it ends.
pub(crate) async fn begin_ingest<D: Dialect>(
    store: &D,
    tenant: &TenantId,
) -> Result<Transaction<'static, D::Db>, StoreError> {
    let mut tx = begin_write(store).await?;
    if let Some(lock) = D::LOCK_INGEST {
        query(lock).bind(tenant.as_str()).execute(&mut tx).await?;
    }
    Ok(tx)
}

/// Stores a batch in one transaction (`ingest_batch`).
pub(crate) async fn ingest<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    items: &[NewEvidence],
) -> Result<Vec<IngestOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = begin_ingest(store, tenant).await?;
    let outcomes = ingest_batch(store, &mut tx, tenant, items).await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(outcomes)
}

/// Stores a batch in a transaction of `begin_ingest` with a handful of statements,
/// however many items it holds: one query for the current versions, one for the
/// sequence numbers, one update for the stored versions it supersedes and one insert
/// (the dialect's, each of which carries many rows).
pub(crate) async fn ingest_batch<D: Dialect>(
    store: &D,
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    items: &[NewEvidence],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let stored = store.current_versions(tx, tenant, items).await?;
    let plan = Plan::new(items, stored);
    let first_seq = match plan.versions.len() {
        0 => 0,
        n_new => take_sequences(tx, tenant, n_new).await?,
    };
    store
        .supersede_stored(tx, tenant, &plan.superseded, first_seq)
        .await?;
    store
        .insert_versions(tx, tenant, &plan.versions, first_seq)
        .await?;
    Ok(plan.outcomes(first_seq))
}

/// Takes `n_new` ingestion sequences in one statement and returns the first.
async fn take_sequences<DB: SqlDatabase>(
    tx: &mut Transaction<'static, DB>,
    tenant: &TenantId,
    n_new: usize,
) -> Result<i64, StoreError> {
    let n_new = int(n_new as u64);
    let row = query(TAKE_COUNTER)
        .bind(tenant.as_str())
        .bind(EVIDENCE_COUNTER)
        .bind(n_new)
        .fetch_one(tx)
        .await?;
    let last = DB::columns(&row).integer("value")?;
    Ok(last - n_new + 1)
}

/// A page of the tenant's current items after the item (`$2`, `$3`), in (source, id)
/// order, off `evidence_current`; `$4` items at most.
const CURRENT_PAGE: &str = "SELECT seq, kind, source, id FROM evidence \
     WHERE tenant = $1 AND superseded_seq IS NULL AND (source, id) > ($2, $3) \
     ORDER BY source, id LIMIT $4";

/// The same page within the source `$2`.
const CURRENT_PAGE_OF_SOURCE: &str = "SELECT seq, kind, source, id FROM evidence \
     WHERE tenant = $1 AND superseded_seq IS NULL AND source = $2 AND id > $3 \
     ORDER BY id LIMIT $4";

/// The current version of the item (`$2`, `$3`), off `evidence_current`.
const CURRENT_OF_ITEM: &str = "SELECT seq, kind, source, id FROM evidence \
     WHERE tenant = $1 AND source = $2 AND id = $3 AND superseded_seq IS NULL";

/// Current items read per page (`remove_current`).
const CURRENT_PER_PAGE: usize = 1_000;

/// Tombstones per insert statement: four variables each, far below SQLite's and
/// PostgreSQL's limits.
const TOMBSTONES_PER_STATEMENT: usize = 1_000;

/// Writes a tombstone for each current item of `source` that `present` lacks, in id
/// order, in one transaction of `begin_ingest`, so no batch of the tenant changes the
/// current versions in between.
pub(crate) async fn remove_absent<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    source: &SourceName,
    present: &BTreeSet<String>,
    removed_at: DateTime<Utc>,
) -> Result<Vec<Tombstone>, StoreError> {
    let mut tx = begin_ingest(store, tenant).await?;
    let removed = remove_current(
        store,
        &mut tx,
        tenant,
        Some(source),
        |item| present.contains(&item.id),
        removed_at,
    )
    .await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(removed)
}

/// Writes a tombstone for each current item of the tenant (of `source` only, when one
/// is given) that `keep` refuses, in a transaction of `begin_ingest`: the items are read
/// a page at a time in (source, id) order, which is also the order of the tombstones'
/// sequences, so memory holds a page and the removed items, not the tenant's evidence.
/// Returns the tombstones in the order of their sequences.
pub(crate) async fn remove_current<D: Dialect>(
    store: &D,
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    source: Option<&SourceName>,
    keep: impl Fn(&Tombstone) -> bool,
    removed_at: DateTime<Utc>,
) -> Result<Vec<Tombstone>, StoreError> {
    let statement = match source {
        None => CURRENT_PAGE,
        Some(_) => CURRENT_PAGE_OF_SOURCE,
    };
    // The last item read: (source, id), before every item at first.
    let mut after = (
        source.map_or_else(String::new, |source| source.to_string()),
        String::new(),
    );
    let mut removed = Vec::new();
    loop {
        let page = query(statement)
            .bind(tenant.as_str())
            .bind(after.0.as_str())
            .bind(after.1.as_str())
            .bind(int(CURRENT_PER_PAGE as u64))
            .fetch_all(&mut *tx)
            .await?;
        let mut absent = Vec::new();
        for row in &page {
            let row = D::Db::columns(row);
            let item = sql::tombstone(&row)?;
            after = (item.source.to_string(), item.id.clone());
            if !keep(&item) {
                absent.push((row.integer("seq")?, item));
            }
        }
        write_tombstones(store, tx, tenant, &absent, removed_at).await?;
        removed.extend(absent.into_iter().map(|(_, item)| item));
        if page.len() < CURRENT_PER_PAGE {
            return Ok(removed);
        }
    }
}

/// Writes a tombstone for each of `items` whose item (source, id) is current, in a
/// transaction of `begin_ingest`, with the kind of the version it removes; an item that
/// is not current, or is named again, is skipped. The tombstones take sequences in
/// (source, id) order; returns them in that order.
pub(crate) async fn remove_items<D: Dialect>(
    store: &D,
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    items: &[Tombstone],
    removed_at: DateTime<Utc>,
) -> Result<Vec<Tombstone>, StoreError> {
    let named: BTreeSet<(&SourceName, &str)> = items
        .iter()
        .map(|item| (&item.source, item.id.as_str()))
        .collect();
    let mut current = Vec::new();
    for (source, id) in named {
        let row = query(CURRENT_OF_ITEM)
            .bind(tenant.as_str())
            .bind(source.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            let row = D::Db::columns(&row);
            current.push((row.integer("seq")?, sql::tombstone(&row)?));
        }
    }
    write_tombstones(store, tx, tenant, &current, removed_at).await?;
    Ok(current.into_iter().map(|(_, item)| item).collect())
}

/// Writes `removed`, each the sequence of an item's current version and the tombstone
/// that removes it: the tombstones take the tenant's next sequences in the order given,
/// and each supersedes the version it removes, so the snapshot condition needs no
/// other reading of them.
async fn write_tombstones<D: Dialect>(
    store: &D,
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    removed: &[(i64, Tombstone)],
    removed_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if removed.is_empty() {
        return Ok(());
    }
    let first_seq = take_sequences(tx, tenant, removed.len()).await?;
    let superseded: Vec<(i64, usize)> = removed
        .iter()
        .enumerate()
        .map(|(new, (stored, _))| (*stored, new))
        .collect();
    store.supersede_stored(tx, tenant, &superseded, first_seq).await?;
    for (chunk_idx, chunk) in removed.chunks(TOMBSTONES_PER_STATEMENT).enumerate() {
        let mut insert = query("INSERT INTO tombstones (tenant, seq, kind, source, id, removed_at) VALUES ")
            .bind(tenant.as_str())
            .bind(timestamp(removed_at));
        for (idx, (_, tombstone)) in chunk.iter().enumerate() {
            insert.push(if idx == 0 { "($1, " } else { ", ($1, " });
            insert
                .push_bind(new_seq(first_seq, chunk_idx * TOMBSTONES_PER_STATEMENT + idx))
                .push(", ")
                .push_bind(tombstone.kind.as_str())
                .push(", ")
                .push_bind(tombstone.source.as_str())
                .push(", ")
                .push_bind(tombstone.id.as_str())
                .push(", $2)");
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The tenant's newest change: the newer of its newest version and its newest removal,
/// each the last entry of its table's primary key `(tenant, seq)`.
const NEWEST_CHANGE: &str = "SELECT seq, changed_at FROM \
     (SELECT seq, ingested_at AS changed_at FROM evidence WHERE tenant = $1 ORDER BY seq DESC LIMIT 1) \
     AS newest_version \
     UNION ALL SELECT seq, changed_at FROM \
     (SELECT seq, removed_at AS changed_at FROM tombstones WHERE tenant = $1 ORDER BY seq DESC LIMIT 1) \
     AS newest_removal \
     ORDER BY seq DESC LIMIT 1";

/// The snapshot point is the tenant's newest change, a version or a removal: a run
/// planned after a removal reads a snapshot without the removed item, and its snapshot
/// time is when the removal was made.
pub(crate) async fn snapshot_point<D: Dialect>(
    store: &D,
    tenant: &TenantId,
) -> Result<SnapshotPoint, StoreError> {
    newest_change(store.pool(), tenant).await
}

/// The tenant's newest change, on the pool or in a transaction that has just made one.
/// (A boxed future: the compiler proves it `Send` here, once, for every executor.)
pub(crate) fn newest_change<'c, E: Executes<'c>>(
    on: E,
    tenant: &'c TenantId,
) -> BoxFuture<'c, Result<SnapshotPoint, StoreError>> {
    let fetched = query(NEWEST_CHANGE).bind(tenant.as_str()).fetch_optional(on);
    Box::pin(async move {
        let Some(row) = fetched.await? else {
            return Ok(SnapshotPoint {
                watermark: 0,
                at: None,
            });
        };
        let row = E::Db::columns(&row);
        Ok(SnapshotPoint {
            watermark: row.integer("seq")?,
            at: optional_timestamp_column(&row, "changed_at")?,
        })
    })
}

/// The arguments of a snapshot statement (`Snapshot`).
fn snapshot_args<'a>(tenant: &'a TenantId, watermark: i64, target: &'a Target) -> Vec<Value<'a>> {
    let mut args = vec![
        Value::from(watermark),
        Value::from(tenant.as_str()),
        Value::from(target.kind.as_str()),
    ];
    if let Some(source) = &target.source {
        args.push(Value::from(source.as_str()));
    }
    args
}

pub(crate) async fn count_items<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    watermark: i64,
    target: &Target,
) -> Result<u64, StoreError> {
    let sql = match &target.source {
        None => D::SNAPSHOT.count_kind,
        Some(_) => D::SNAPSHOT.count_kind_source,
    };
    count(store, sql, snapshot_args(tenant, watermark, target)).await
}

/// How many records `stream_changes` gives for the same arguments.
pub(crate) async fn count_changes<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    after: i64,
    up_to: i64,
    target: &Target,
) -> Result<u64, StoreError> {
    let sql = match &target.source {
        None => D::SNAPSHOT.count_changes_kind,
        Some(_) => D::SNAPSHOT.count_changes_kind_source,
    };
    let mut args = snapshot_args(tenant, up_to, target);
    args.push(Value::from(after));
    count(store, sql, args).await
}

/// The `n` of a `COUNT(*) AS n` statement.
async fn count<D: Dialect>(store: &D, sql: &'static str, args: Vec<Value<'_>>) -> Result<u64, StoreError> {
    let mut count = query(sql);
    for arg in args {
        count = count.bind(arg);
    }
    let row = count.fetch_one(store.pool()).await?;
    let count = D::Db::columns(&row).integer("n")?;
    u64::try_from(count).map_err(|err| StoreError::corrupt("count", err))
}

/// Streams the snapshot straight off the cursor: the rows come in index order, so
/// nothing is sorted or held in memory.
pub(crate) fn stream_items<'a, D: Dialect>(
    store: &'a D,
    tenant: &'a TenantId,
    watermark: i64,
    target: &'a Target,
) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
    let sql = match &target.source {
        None => D::SNAPSHOT.stream_kind,
        Some(_) => D::SNAPSHOT.stream_kind_source,
    };
    D::Db::fetch(store.pool(), sql, snapshot_args(tenant, watermark, target))
        .map(|row| row.and_then(|row| sql::record(&D::Db::columns(&row))))
        .boxed()
}

/// The items of the snapshot at `up_to` whose version is newer than `after`, off the
/// same index walk as `stream_items`.
pub(crate) fn stream_changes<'a, D: Dialect>(
    store: &'a D,
    tenant: &'a TenantId,
    after: i64,
    up_to: i64,
    target: &'a Target,
) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
    let sql = match &target.source {
        None => D::SNAPSHOT.changes_kind,
        Some(_) => D::SNAPSHOT.changes_kind_source,
    };
    let mut args = snapshot_args(tenant, up_to, target);
    args.push(Value::from(after));
    D::Db::fetch(store.pool(), sql, args)
        .map(|row| row.and_then(|row| sql::record(&D::Db::columns(&row))))
        .boxed()
}

/// The removals of a target in an interval whose item the snapshot at the interval's
/// end does not hold, with the arguments of a snapshot statement (`$1` the end, `$2` the
/// tenant, `$3` the kind, `$4` the source of a narrowed target) and the interval's start
/// last.
///
/// A tombstone is listed when no version of its item was ingested after it up to the
/// end: then it is the item's newest change there, so the item is not in that snapshot,
/// and no other tombstone of the item is listed (an earlier one was followed by the
/// version the later one removed). An item is its source and id, whatever the kind of
/// its versions, so they are looked up in `evidence_by_kind_source` once per kind; the
/// unary `+` on their sequence keeps SQLite's planner from reading the versions of the
/// whole interval through the primary key `(tenant, seq)` instead (PostgreSQL reads
/// `+e.seq` as `e.seq`).
fn removals(narrowed: bool) -> String {
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .map(|kind| format!("'{}'", kind.as_str()))
        .collect();
    let (source, after) = if narrowed {
        (" AND t.source = $4", "$5")
    } else {
        ("", "$4")
    };
    format!(
        "SELECT t.id AS id, t.kind AS kind, t.source AS source FROM tombstones AS t \
         WHERE t.tenant = $2 AND t.kind = $3{source} AND t.seq > {after} AND t.seq <= $1 \
         AND NOT EXISTS (SELECT 1 FROM evidence AS e WHERE e.tenant = t.tenant AND e.kind IN ({}) \
         AND e.source = t.source AND e.id = t.id AND +e.seq > t.seq AND +e.seq <= $1) \
         ORDER BY t.id, t.kind, t.source",
        kinds.join(", ")
    )
}

static REMOVALS_KIND: LazyLock<String> = LazyLock::new(|| removals(false));
static REMOVALS_KIND_SOURCE: LazyLock<String> = LazyLock::new(|| removals(true));

/// The statement that reads the removals of `target` (`Store::stream_removals`): public
/// so that a backend can check how its database plans it.
pub fn removals_statement(target: &Target) -> &'static str {
    match &target.source {
        None => REMOVALS_KIND.as_str(),
        Some(_) => REMOVALS_KIND_SOURCE.as_str(),
    }
}

pub(crate) fn stream_removals<'a, D: Dialect>(
    store: &'a D,
    tenant: &'a TenantId,
    after: i64,
    up_to: i64,
    target: &'a Target,
) -> BoxStream<'a, Result<Tombstone, StoreError>> {
    let sql = removals_statement(target);
    let mut args = snapshot_args(tenant, up_to, target);
    args.push(Value::from(after));
    D::Db::fetch(store.pool(), sql, args)
        .map(|row| row.and_then(|row| sql::tombstone(&D::Db::columns(&row))))
        .boxed()
}
