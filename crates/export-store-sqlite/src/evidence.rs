//! Evidence: versioned documents and the snapshots runs read.
//!
//! Every version of an item is a row. It records the ingestion sequence that created it
//! and the one that superseded it (NULL while it is current), so the snapshot at a
//! watermark W is every row with `seq <= W` not superseded by W.

use export_core::{DocumentFormat, EvidenceRecord, Kind, Sha256Digest, SourceName, Target, TenantId};
use export_store::{IngestOutcome, NewEvidence, SnapshotPoint, StoreError};
use futures::stream::{BoxStream, StreamExt};
use sqlx::sqlite::SqliteRow;
use sqlx::SqlitePool;

use crate::rows::{column, db, optional_timestamp_column, parsed, timestamp, to_json};

/// The tenant's ingestion sequence in the counters table.
const EVIDENCE_COUNTER: &str = "evidence";

/// Takes the next value of a tenant counter, creating it at 1.
pub(crate) const NEXT_COUNTER: &str = "INSERT INTO counters (tenant, name, value) VALUES (?, ?, 1) \
     ON CONFLICT (tenant, name) DO UPDATE SET value = counters.value + 1 \
     RETURNING value";

/// The snapshot condition, with the watermark bound as `?1`.
///
/// The unary `+` keeps SQLite's planner from answering `seq <= ?` with the primary key
/// `(tenant, seq)`, which then needs a temporary sort of the whole snapshot; the
/// ordered indexes below are the right path. (`+seq` is plain arithmetic on PostgreSQL.)
macro_rules! visible_at_watermark {
    () => {
        "+seq <= ?1 AND (superseded_seq IS NULL OR superseded_seq > ?1)"
    };
}

const COUNT_KIND: &str = concat!(
    "SELECT COUNT(*) FROM evidence WHERE tenant = ?2 AND kind = ?3 AND ",
    visible_at_watermark!()
);

const COUNT_KIND_SOURCE: &str = concat!(
    "SELECT COUNT(*) FROM evidence WHERE tenant = ?2 AND kind = ?3 AND source = ?4 AND ",
    visible_at_watermark!()
);

// Both orders match an index (`evidence_by_kind`, `evidence_by_kind_source`), so rows
// come off the index already sorted: no temporary sort, however many there are.
const STREAM_KIND: &str = concat!(
    "SELECT kind, source, format, id, modified, digest, document FROM evidence ",
    "WHERE tenant = ?2 AND kind = ?3 AND ",
    visible_at_watermark!(),
    " ORDER BY id, source, digest"
);

const STREAM_KIND_SOURCE: &str = concat!(
    "SELECT kind, source, format, id, modified, digest, document FROM evidence ",
    "WHERE tenant = ?2 AND kind = ?3 AND source = ?4 AND ",
    visible_at_watermark!(),
    " ORDER BY id, source, digest"
);

pub(crate) async fn ingest(
    pool: &SqlitePool,
    tenant: &TenantId,
    items: &[NewEvidence],
) -> Result<Vec<IngestOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    // The counter is bumped once, for the first new version, and set to the last
    // sequence used at the end: the write lock makes the numbers in between ours.
    let mut last_seq: Option<i64> = None;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let digest = item.digest.to_string();
        let current: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, digest FROM evidence \
             WHERE tenant = ? AND source = ? AND id = ? AND superseded_seq IS NULL",
        )
        .bind(tenant.as_str())
        .bind(item.source.as_str())
        .bind(&item.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some((seq, _)) = current.as_ref().filter(|(_, stored)| *stored == digest) {
            outcomes.push(IngestOutcome::Unchanged { seq: *seq });
            continue;
        }

        let seq = match last_seq {
            Some(last) => last + 1,
            None => sqlx::query_scalar(NEXT_COUNTER)
                .bind(tenant.as_str())
                .bind(EVIDENCE_COUNTER)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?,
        };
        last_seq = Some(seq);
        if let Some((previous, _)) = &current {
            sqlx::query("UPDATE evidence SET superseded_seq = ? WHERE tenant = ? AND seq = ?")
                .bind(seq)
                .bind(tenant.as_str())
                .bind(previous)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO evidence \
             (tenant, seq, kind, source, id, format, modified, aliases, digest, document, ingested_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant.as_str())
        .bind(seq)
        .bind(item.kind.as_str())
        .bind(item.source.as_str())
        .bind(&item.id)
        .bind(item.format.as_str())
        .bind(item.modified.as_deref())
        .bind(to_json(&item.aliases)?)
        .bind(&digest)
        .bind(item.document.as_slice())
        .bind(timestamp(item.ingested_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        outcomes.push(match current {
            Some(_) => IngestOutcome::Replaced { seq },
            None => IngestOutcome::Inserted { seq },
        });
    }
    if let Some(last) = last_seq {
        sqlx::query("UPDATE counters SET value = ? WHERE tenant = ? AND name = ?")
            .bind(last)
            .bind(tenant.as_str())
            .bind(EVIDENCE_COUNTER)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(outcomes)
}

pub(crate) async fn snapshot_point(
    pool: &SqlitePool,
    tenant: &TenantId,
) -> Result<SnapshotPoint, StoreError> {
    let row = sqlx::query("SELECT seq, ingested_at FROM evidence WHERE tenant = ? ORDER BY seq DESC LIMIT 1")
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    match row {
        None => Ok(SnapshotPoint {
            watermark: 0,
            at: None,
        }),
        Some(row) => Ok(SnapshotPoint {
            watermark: column(&row, "seq")?,
            at: optional_timestamp_column(&row, "ingested_at")?,
        }),
    }
}

pub(crate) async fn count_items(
    pool: &SqlitePool,
    tenant: &TenantId,
    watermark: i64,
    target: &Target,
) -> Result<u64, StoreError> {
    let count: i64 = match &target.source {
        None => sqlx::query_scalar(COUNT_KIND)
            .bind(watermark)
            .bind(tenant.as_str())
            .bind(target.kind.as_str())
            .fetch_one(pool)
            .await
            .map_err(db)?,
        Some(source) => sqlx::query_scalar(COUNT_KIND_SOURCE)
            .bind(watermark)
            .bind(tenant.as_str())
            .bind(target.kind.as_str())
            .bind(source.as_str())
            .fetch_one(pool)
            .await
            .map_err(db)?,
    };
    u64::try_from(count).map_err(|err| StoreError::corrupt("count", err))
}

/// Streams the snapshot straight off the cursor: the rows come in index order, so
/// nothing is sorted or held in memory.
pub(crate) fn stream_items<'a>(
    pool: &'a SqlitePool,
    tenant: &'a TenantId,
    watermark: i64,
    target: &'a Target,
) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
    let query = match &target.source {
        None => sqlx::query(STREAM_KIND),
        Some(_) => sqlx::query(STREAM_KIND_SOURCE),
    }
    .bind(watermark)
    .bind(tenant.as_str())
    .bind(target.kind.as_str());
    let query = match &target.source {
        None => query,
        Some(source) => query.bind(source.as_str()),
    };
    query
        .fetch(pool)
        .map(|row| row.map_err(db).and_then(|row| record(&row)))
        .boxed()
}

fn record(row: &SqliteRow) -> Result<EvidenceRecord, StoreError> {
    Ok(EvidenceRecord {
        kind: parsed(row, "kind", |text| Kind::parse(text).ok_or("unknown kind"))?,
        source: parsed(row, "source", SourceName::parse)?,
        format: parsed(row, "format", |text| {
            DocumentFormat::parse(text).ok_or("unknown document format")
        })?,
        id: column(row, "id")?,
        modified: column(row, "modified")?,
        digest: parsed(row, "digest", |text| {
            Sha256Digest::parse(text).ok_or("expected `sha256:<hex>`")
        })?,
        document: column(row, "document")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many items a snapshot holds, streaming it walks an index in order (no
    /// temporary sort), and counting it reads an index alone (no documents).
    #[tokio::test]
    async fn snapshot_queries_walk_an_index_in_order() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = crate::SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .expect("open");
        for (sql, expected) in [
            (STREAM_KIND, "SEARCH evidence USING INDEX evidence_by_kind (tenant=? AND kind=?)"),
            (
                STREAM_KIND_SOURCE,
                "SEARCH evidence USING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=?)",
            ),
            (COUNT_KIND, "SEARCH evidence USING COVERING INDEX evidence_by_kind"),
            (
                COUNT_KIND_SOURCE,
                "SEARCH evidence USING COVERING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=?)",
            ),
        ] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain)
                .bind(10_i64)
                .bind("acme")
                .bind("advisory");
            if sql.contains("?4") {
                query = query.bind("osv-go");
            }
            let plan: Vec<String> = query
                .fetch_all(&store.pool)
                .await
                .expect("explain")
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect();
            assert!(
                plan.len() == 1 && plan[0].starts_with(expected),
                "{sql}: {plan:?}"
            );
        }
    }
}
