//! Evidence: versioned documents and the snapshots runs read.
//!
//! Every version of an item is a row. It records the ingestion sequence that created it
//! and the one that superseded it (NULL while it is current), so the snapshot at a
//! watermark W is every row with `seq <= W` not superseded by W.

use export_core::{EvidenceRecord, Target, TenantId};
use futures::stream::{BoxStream, StreamExt};
use sqlx::Transaction;

use crate::ingest_plan::Plan;
use crate::sql::database::{query, SqlDatabase, Value};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::{self, int, optional_timestamp_column, Columns};
use crate::{IngestOutcome, NewEvidence, SnapshotPoint, StoreError};

/// The tenant's ingestion sequence in the counters table.
const EVIDENCE_COUNTER: &str = "evidence";

/// Takes `$3` numbers of a tenant counter at once, creating it, and returns the last.
pub(crate) const TAKE_COUNTER: &str = "INSERT INTO counters (tenant, name, value) VALUES ($1, $2, $3) \
     ON CONFLICT (tenant, name) DO UPDATE SET value = counters.value + excluded.value \
     RETURNING value";

/// Stores a batch in one transaction with a handful of statements, however many items it
/// holds: one query for the current versions, one for the sequence numbers, one update
/// for the stored versions it supersedes and one insert (the dialect's, each of which
/// carries many rows), after the dialect's ingest lock, if any.
pub(crate) async fn ingest<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    items: &[NewEvidence],
) -> Result<Vec<IngestOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = begin_write(store).await?;
    if let Some(lock) = D::LOCK_INGEST {
        query(lock).bind(tenant.as_str()).execute(&mut tx).await?;
    }
    let stored = store.current_versions(&mut tx, tenant, items).await?;
    let plan = Plan::new(items, stored);
    let first_seq = match plan.versions.len() {
        0 => 0,
        n_new => take_sequences(&mut tx, tenant, n_new).await?,
    };
    store
        .supersede_stored(&mut tx, tenant, &plan.superseded, first_seq)
        .await?;
    store
        .insert_versions(&mut tx, tenant, &plan.versions, first_seq)
        .await?;
    tx.commit().await.map_err(sql::db)?;
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

pub(crate) async fn snapshot_point<D: Dialect>(
    store: &D,
    tenant: &TenantId,
) -> Result<SnapshotPoint, StoreError> {
    let row = query("SELECT seq, ingested_at FROM evidence WHERE tenant = $1 ORDER BY seq DESC LIMIT 1")
        .bind(tenant.as_str())
        .fetch_optional(store.pool())
        .await?;
    match row {
        None => Ok(SnapshotPoint {
            watermark: 0,
            at: None,
        }),
        Some(row) => {
            let row = D::Db::columns(&row);
            Ok(SnapshotPoint {
                watermark: row.integer("seq")?,
                at: optional_timestamp_column(&row, "ingested_at")?,
            })
        }
    }
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
    let mut count = query(sql);
    for arg in snapshot_args(tenant, watermark, target) {
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
