//! Evidence: versioned documents and the snapshots runs read.
//!
//! Every version of an item is a row. It records the ingestion sequence that created it
//! and the one that superseded it (NULL while it is current), so the snapshot at a
//! watermark W is every row with `seq <= W` not superseded by W.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use export_core::{EvidenceRecord, Sha256Digest, Target, TenantId};
use export_store::ingest_plan::{new_seq, Current, NewVersion, Plan, Version};
use export_store::sql::{self, int, optional_timestamp_column, timestamp, to_json, Columns};
use export_store::{IngestOutcome, NewEvidence, SnapshotPoint, StoreError};
use futures::stream::{BoxStream, StreamExt};
use sqlx::{SqliteConnection, SqlitePool};

use crate::rows::{db, Row};

/// The tenant's ingestion sequence in the counters table.
const EVIDENCE_COUNTER: &str = "evidence";

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

/// Bind variables one statement may use: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`
/// since 3.32 (the bundled SQLite is newer), and within PostgreSQL's 65,535.
const MAX_VARIABLES: usize = 32_766;

/// Ids per query for current versions. Without statistics SQLite plans that query as one
/// seek per id up to some 24,000 ids, and as a scan of the tenant per id beyond (SQLite
/// 3.46); `current_versions_are_one_seek_per_id` checks the plan at this size.
const IDS_PER_QUERY: usize = 1_000;

/// Takes `?3` numbers of a tenant counter at once, creating it, and returns the last.
pub(crate) const TAKE_COUNTER: &str = "INSERT INTO counters (tenant, name, value) VALUES (?1, ?2, ?3) \
     ON CONFLICT (tenant, name) DO UPDATE SET value = counters.value + excluded.value \
     RETURNING value";

/// Stores a batch in one transaction with a handful of statements, however many items it
/// holds: one query for the current versions, one for the sequence numbers, one update
/// for the stored versions it supersedes and one multi-row insert, each split only where
/// it would pass the variable limit.
///
/// Each statement is a round trip to the driver's worker thread, and those hand-offs
/// (not SQLite) were most of the cost of ingesting one statement per document. The text
/// of these statements varies with the number of rows, so they stay out of the
/// connection's statement cache, where a few large ones would hold megabytes.
pub(crate) async fn ingest(
    pool: &SqlitePool,
    tenant: &TenantId,
    items: &[NewEvidence],
) -> Result<Vec<IngestOutcome>, StoreError> {
    ingest_within(pool, tenant, items, MAX_VARIABLES).await
}

async fn ingest_within(
    pool: &SqlitePool,
    tenant: &TenantId,
    items: &[NewEvidence],
    max_variables: usize,
) -> Result<Vec<IngestOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let stored = current_versions(&mut tx, tenant, items, max_variables).await?;
    let plan = Plan::new(items, stored);
    let first_seq = match plan.versions.len() {
        0 => 0,
        n_new => take_sequences(&mut tx, tenant, n_new).await?,
    };
    supersede_stored(&mut tx, tenant, &plan.superseded, first_seq, max_variables).await?;
    insert_versions(&mut tx, tenant, &plan.versions, first_seq, max_variables).await?;
    tx.commit().await.map_err(db)?;
    Ok(plan.outcomes(first_seq))
}

/// `n` copies of `group` joined by `separator`: the placeholders of a statement that
/// carries many rows.
fn repeated(group: &str, separator: &str, n: usize) -> String {
    vec![group; n].join(separator)
}

/// The stored current version of every (source, id) in `items`.
async fn current_versions<'a>(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    items: &'a [NewEvidence],
    max_variables: usize,
) -> Result<HashMap<(&'a str, &'a str), Current>, StoreError> {
    let mut ids_by_source: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for item in items {
        ids_by_source
            .entry(item.source.as_str())
            .or_default()
            .insert(item.id.as_str());
    }
    let mut current = HashMap::new();
    for (source, ids) in ids_by_source {
        let ids: Vec<&str> = ids.into_iter().collect();
        // Two variables for the tenant and the source, the rest for ids.
        for chunk in ids.chunks(IDS_PER_QUERY.min(max_variables - 2)) {
            let sql = select_current(chunk.len());
            let mut query = sqlx::query_as(&sql).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            let query = query.bind(tenant.as_str()).bind(source);
            let rows: Vec<(String, i64, String)> = query.fetch_all(&mut *tx).await.map_err(db)?;
            for (id, seq, digest) in rows {
                // The key borrows the item's id, as the plan looks it up.
                let id = chunk
                    .binary_search(&id.as_str())
                    .map(|idx| chunk[idx])
                    .map_err(|_| StoreError::corrupt("id", format!("`{id}` was not asked for")))?;
                let digest = Sha256Digest::parse(&digest).ok_or_else(|| {
                    StoreError::corrupt("digest", format!("`{digest}`: expected `sha256:<hex>`"))
                })?;
                current.insert(
                    (source, id),
                    Current {
                        version: Version::Stored(seq),
                        digest,
                    },
                );
            }
        }
    }
    Ok(current)
}

/// The current versions of `n_ids` ids (bound first) of one tenant and source (bound
/// last).
///
/// The ids drive the join, so each is one seek in `evidence_current`. Written as
/// `id IN (…)`, the same query is planned, without statistics, as a scan of all the
/// tenant's rows in the covering index `evidence_by_kind_source`, and a batch then
/// costs as much as everything stored before it.
fn select_current(n_ids: usize) -> String {
    format!(
        "WITH wanted (id) AS (VALUES {}) \
         SELECT evidence.id, evidence.seq, evidence.digest FROM wanted JOIN evidence \
         ON evidence.tenant = ? AND evidence.source = ? AND evidence.id = wanted.id \
         AND evidence.superseded_seq IS NULL",
        repeated("(?)", ", ", n_ids)
    )
}

/// Takes `n_new` ingestion sequences in one statement and returns the first.
async fn take_sequences(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    n_new: usize,
) -> Result<i64, StoreError> {
    let n_new = int(n_new as u64);
    let last: i64 = sqlx::query_scalar(TAKE_COUNTER)
        .bind(tenant.as_str())
        .bind(EVIDENCE_COUNTER)
        .bind(n_new)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    Ok(last - n_new + 1)
}

/// Marks the stored versions the batch replaces as superseded by their new versions.
async fn supersede_stored(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    superseded: &[(i64, usize)],
    first_seq: i64,
    max_variables: usize,
) -> Result<(), StoreError> {
    // Three variables per row (`WHEN ? THEN ?`, `IN (?)`), and the tenant.
    for chunk in superseded.chunks((max_variables - 1) / 3) {
        let sql = format!(
            "UPDATE evidence SET superseded_seq = CASE seq {} END WHERE tenant = ? AND seq IN ({})",
            repeated("WHEN ? THEN ?", " ", chunk.len()),
            repeated("?", ", ", chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for &(seq, new) in chunk {
            query = query.bind(seq).bind(new_seq(first_seq, new));
        }
        query = query.bind(tenant.as_str());
        for &(seq, _) in chunk {
            query = query.bind(seq);
        }
        query.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

/// Inserts the batch's new versions, already marked superseded when a later version of
/// the same batch replaces them.
async fn insert_versions(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    versions: &[NewVersion<'_>],
    first_seq: i64,
    max_variables: usize,
) -> Result<(), StoreError> {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let rows_per_statement = max_variables / 12;
    for (chunk_idx, chunk) in versions.chunks(rows_per_statement).enumerate() {
        let sql = format!(
            "INSERT INTO evidence \
             (tenant, seq, superseded_seq, kind, source, id, format, modified, aliases, digest, document, ingested_at) \
             VALUES {}",
            repeated(ROW, ", ", chunk.len())
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (idx, version) in chunk.iter().enumerate() {
            let item = version.item;
            query = query
                .bind(tenant.as_str())
                .bind(new_seq(first_seq, chunk_idx * rows_per_statement + idx))
                .bind(version.superseded_by.map(|new| new_seq(first_seq, new)))
                .bind(item.kind.as_str())
                .bind(item.source.as_str())
                .bind(&item.id)
                .bind(item.format.as_str())
                .bind(item.modified.as_deref())
                .bind(to_json(&item.aliases)?)
                .bind(item.digest.to_string())
                .bind(item.document.as_slice())
                .bind(timestamp(item.ingested_at));
        }
        query.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
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
            watermark: Row(&row).integer("seq")?,
            at: optional_timestamp_column(&Row(&row), "ingested_at")?,
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
        .map(|row| row.map_err(db).and_then(|row| sql::record(&Row(&row))))
        .boxed()
}

#[cfg(test)]
mod tests {
    use export_core::Kind;
    use export_store::testing::document;

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

    /// However many ids a batch asks for, and however many rows the tenant has, the
    /// current versions are found with one seek per id, never by scanning the tenant.
    #[tokio::test]
    async fn current_versions_are_one_seek_per_id() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = fresh_store(&dir, "plan.db").await;
        for n_ids in [1, 2, IDS_PER_QUERY] {
            let explain = format!("EXPLAIN QUERY PLAN {}", select_current(n_ids));
            let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
            for idx in 0..n_ids {
                query = query.bind(format!("GO-{idx}"));
            }
            let plan: Vec<String> = query
                .bind("acme")
                .bind("osv-go")
                .fetch_all(&store.pool)
                .await
                .expect("explain")
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect();
            let on_evidence: Vec<_> = plan.iter().filter(|line| line.contains(" evidence ")).collect();
            assert_eq!(
                on_evidence,
                ["SEARCH evidence USING INDEX evidence_current (tenant=? AND source=? AND id=?)"],
                "{n_ids} ids: {plan:?}"
            );
        }
    }

    async fn fresh_store(dir: &tempfile::TempDir, name: &str) -> crate::SqliteStore {
        crate::SqliteStore::open(&dir.path().join(name))
            .await
            .expect("opening a store")
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).expect("valid tenant")
    }

    fn advisory(id: &str, revision: u32) -> NewEvidence {
        document("osv-go", Kind::Advisory, id, revision)
    }

    /// Every row of the evidence table, as (tenant, seq, superseded_seq, source, id,
    /// digest), in order.
    async fn rows(store: &crate::SqliteStore) -> Vec<(String, i64, Option<i64>, String, String, String)> {
        sqlx::query_as(
            "SELECT tenant, seq, superseded_seq, source, id, digest FROM evidence ORDER BY tenant, seq",
        )
        .fetch_all(&store.pool)
        .await
        .expect("reading the evidence table")
    }

    /// Batches that repeat documents, carry several versions of one, replace stored
    /// versions and mix sources.
    fn mixed_batches() -> Vec<(TenantId, Vec<NewEvidence>)> {
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let pysec = |id: &str, revision| document("osv-pypi", Kind::Advisory, id, revision);
        vec![
            (
                acme.clone(),
                vec![advisory("GO-1", 1), advisory("GO-2", 1), pysec("GO-1", 1)],
            ),
            (
                acme.clone(),
                vec![
                    advisory("GO-1", 1),
                    advisory("GO-3", 1),
                    advisory("GO-1", 2),
                    advisory("GO-3", 1),
                    advisory("GO-1", 2),
                    advisory("GO-2", 2),
                    pysec("GO-1", 1),
                    advisory("GO-1", 1),
                    advisory("GO-4", 1),
                    advisory("GO-2", 2),
                    advisory("GO-2", 3),
                    pysec("GO-1", 2),
                ],
            ),
            (globex.clone(), vec![advisory("GO-1", 2), advisory("GO-1", 2)]),
            (
                acme.clone(),
                (0..40)
                    .map(|idx| advisory(&format!("GO-{}", idx % 25), idx / 25 + 1))
                    .collect(),
            ),
            (acme, vec![]),
        ]
    }

    /// A batch gives the same outcomes and rows as its documents ingested one at a time:
    /// a repeated document is unchanged, a second version replaces the first of the same
    /// batch, and the first version's row is superseded by the second's sequence.
    #[tokio::test]
    async fn a_batch_repeating_documents_stores_what_one_call_per_document_would() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let (batched, one_by_one) = (
            fresh_store(&dir, "batched.db").await,
            fresh_store(&dir, "one-by-one.db").await,
        );
        for (tenant, batch) in mixed_batches() {
            let outcomes = ingest(&batched.pool, &tenant, &batch)
                .await
                .expect("batched ingest");
            let mut expected = Vec::new();
            for item in &batch {
                expected.extend(
                    ingest(&one_by_one.pool, &tenant, std::slice::from_ref(item))
                        .await
                        .expect("ingest of one document"),
                );
            }
            assert_eq!(outcomes, expected);
        }
        assert_eq!(rows(&batched).await, rows(&one_by_one).await);

        let acme = tenant("acme");
        let outcomes = ingest(
            &batched.pool,
            &acme,
            &[
                advisory("GO-99", 1),
                advisory("GO-99", 1),
                advisory("GO-99", 2),
                advisory("GO-99", 1),
            ],
        )
        .await
        .expect("ingest");
        let last = rows(&batched).await.iter().filter(|row| row.0 == "acme").count() as i64;
        assert_eq!(
            outcomes,
            [
                IngestOutcome::Inserted { seq: last - 2 },
                IngestOutcome::Unchanged { seq: last - 2 },
                IngestOutcome::Replaced { seq: last - 1 },
                IngestOutcome::Replaced { seq: last },
            ]
        );
        let go_99: Vec<_> = rows(&batched)
            .await
            .into_iter()
            .filter(|row| row.4 == "GO-99")
            .map(|row| (row.1, row.2))
            .collect();
        assert_eq!(
            go_99,
            [(last - 2, Some(last - 1)), (last - 1, Some(last)), (last, None)]
        );
    }

    /// Statements split wherever the variable limit falls (here a tiny one, so that every
    /// statement of a batch is split, across duplicates and versions) store exactly what
    /// unsplit statements store.
    #[tokio::test]
    async fn batches_split_at_the_variable_limit_store_what_unsplit_ones_do() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let (split, whole) = (
            fresh_store(&dir, "split.db").await,
            fresh_store(&dir, "whole.db").await,
        );
        for max_variables in [13, 25] {
            for (tenant, batch) in mixed_batches() {
                assert_eq!(
                    ingest_within(&split.pool, &tenant, &batch, max_variables)
                        .await
                        .expect("split ingest"),
                    ingest(&whole.pool, &tenant, &batch).await.expect("whole ingest"),
                    "limit {max_variables}"
                );
            }
        }
        assert_eq!(rows(&split).await, rows(&whole).await);
    }

    /// A batch with more documents than one statement may have variables is stored whole
    /// and numbered in order, and ingesting it again finds every document.
    #[tokio::test]
    async fn a_batch_larger_than_the_variable_limit_is_stored() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = fresh_store(&dir, "large.db").await;
        let acme = tenant("acme");
        let n_items = MAX_VARIABLES + 10;
        let mut items: Vec<NewEvidence> = (0..n_items)
            .map(|idx| advisory(&format!("GO-{idx}"), 1))
            .collect();
        items.push(items[0].clone());
        let outcomes = ingest(&store.pool, &acme, &items).await.expect("ingest");
        let last = int(n_items as u64);
        assert_eq!(outcomes.len(), n_items + 1);
        assert_eq!(outcomes[n_items - 1], IngestOutcome::Inserted { seq: last });
        assert_eq!(outcomes[n_items], IngestOutcome::Unchanged { seq: 1 });

        items[n_items - 1] = advisory(&format!("GO-{}", n_items - 1), 2);
        let again = ingest(&store.pool, &acme, &items).await.expect("ingest again");
        assert_eq!(again[0], IngestOutcome::Unchanged { seq: 1 });
        assert_eq!(again[n_items - 2], IngestOutcome::Unchanged { seq: last - 1 });
        assert_eq!(again[n_items - 1], IngestOutcome::Replaced { seq: last + 1 });
        assert_eq!(
            count_items(&store.pool, &acme, last + 1, &Target::parse("advisory").unwrap())
                .await
                .unwrap(),
            n_items as u64
        );
    }
}
