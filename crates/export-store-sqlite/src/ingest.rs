//! How an ingest batch travels on SQLite: multi-row statements, with as many rows as
//! the variable limit allows each.
//!
//! Each statement is a round trip to the driver's worker thread, and those hand-offs
//! (not SQLite) were most of the cost of ingesting one statement per document. The text
//! of these statements varies with the number of rows, so they stay out of the
//! connection's statement cache, where a few large ones would hold megabytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use export_core::{Sha256Digest, TenantId};
use export_store::ingest_plan::{new_seq, Current, NewVersion, Version};
use export_store::sql::{db, timestamp, to_json};
use export_store::{NewEvidence, StoreError};
use sqlx::SqliteConnection;

/// Bind variables one statement may use: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`
/// since 3.32 (the bundled SQLite is newer).
pub(crate) const MAX_VARIABLES: usize = 32_766;

/// Ids per query for current versions. Without statistics SQLite plans that query as one
/// seek per id up to some 24,000 ids, and as a scan of the tenant per id beyond (SQLite
/// 3.46); `current_versions_are_one_seek_per_id` checks the plan at this size.
const IDS_PER_QUERY: usize = 1_000;

/// `n` copies of `group` joined by `separator`: the placeholders of a statement that
/// carries many rows.
fn repeated(group: &str, separator: &str, n: usize) -> String {
    vec![group; n].join(separator)
}

/// The stored current version of every (source, id) in `items`.
pub(crate) async fn current_versions<'a>(
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

/// Marks the stored versions the batch replaces as superseded by their new versions.
pub(crate) async fn supersede_stored(
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
pub(crate) async fn insert_versions(
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

#[cfg(test)]
mod tests {
    use export_core::{Kind, Target};
    use export_store::sql::{int, Dialect};
    use export_store::testing::document;
    use export_store::{IngestOutcome, Store};

    use super::*;
    use crate::SqliteStore;

    const SNAPSHOT: export_store::sql::Snapshot = <SqliteStore as Dialect>::SNAPSHOT;

    /// SQLite's plan of a snapshot statement, one line per step, bound to watermark 10 of
    /// `acme`'s advisories, then (when the statement has them) source `osv-go` and a
    /// lower watermark 5.
    async fn snapshot_plan(store: &SqliteStore, sql: &str, source: bool, after: bool) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain)
            .bind(10_i64)
            .bind("acme")
            .bind("advisory");
        if source {
            query = query.bind("osv-go");
        }
        if after {
            query = query.bind(5_i64);
        }
        query
            .fetch_all(&store.pool)
            .await
            .expect("explain")
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect()
    }

    /// However many items a snapshot holds, streaming it (or its changes since a
    /// watermark) walks an index in order (no temporary sort), and counting it reads an
    /// index alone (no documents).
    #[tokio::test]
    async fn snapshot_queries_walk_an_index_in_order() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .expect("open");
        for (sql, expected) in [
            (SNAPSHOT.stream_kind, "SEARCH evidence USING INDEX evidence_by_kind (tenant=? AND kind=?)"),
            (
                SNAPSHOT.stream_kind_source,
                "SEARCH evidence USING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=?)",
            ),
            (SNAPSHOT.count_kind, "SEARCH evidence USING COVERING INDEX evidence_by_kind"),
            (
                SNAPSHOT.count_kind_source,
                "SEARCH evidence USING COVERING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=?)",
            ),
            (SNAPSHOT.changes_kind, "SEARCH evidence USING INDEX evidence_by_kind (tenant=? AND kind=?)"),
            (SNAPSHOT.count_changes_kind, "SEARCH evidence USING COVERING INDEX evidence_by_kind"),
            (
                SNAPSHOT.count_changes_kind_source,
                "SEARCH evidence USING COVERING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=?)",
            ),
            (
                SNAPSHOT.changes_kind_source,
                "SEARCH evidence USING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=?)",
            ),
        ] {
            let plan = snapshot_plan(&store, sql, sql.contains("source = $4"), sql.contains("+seq > $")).await;
            assert!(
                plan.len() == 1 && plan[0].starts_with(expected),
                "{sql}: {plan:?}"
            );
        }
    }

    /// However long the interval, the removals of a delta read the interval's tombstones
    /// of the target's kind, and look each item's later versions up by its source and id,
    /// never by reading the interval's versions through the primary key.
    #[tokio::test]
    async fn removals_look_each_item_up_by_source_and_id() {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let store = fresh_store(&dir, "plan.db").await;
        for target in ["advisory", "advisory:osv-go"] {
            let sql = export_store::sql::removals_statement(&Target::parse(target).unwrap());
            let plan = snapshot_plan(&store, sql, target.contains(':'), true).await;
            let searches: Vec<&str> = plan
                .iter()
                .map(String::as_str)
                .filter(|line| line.starts_with("SEARCH") || line.starts_with("SCAN"))
                .collect();
            assert_eq!(
                searches,
                [
                    "SEARCH t USING INDEX tombstones_by_kind (tenant=? AND kind=? AND seq>? AND seq<?)",
                    "SEARCH e USING COVERING INDEX evidence_by_kind_source (tenant=? AND kind=? AND source=? AND id=?)",
                ],
                "{target}: {plan:?}"
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

    async fn fresh_store(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
        SqliteStore::open(&dir.path().join(name))
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
    async fn rows(store: &SqliteStore) -> Vec<(String, i64, Option<i64>, String, String, String)> {
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
            let outcomes = batched.ingest(&tenant, &batch).await.expect("batched ingest");
            let mut expected = Vec::new();
            for item in &batch {
                expected.extend(
                    one_by_one
                        .ingest(&tenant, std::slice::from_ref(item))
                        .await
                        .expect("ingest of one document"),
                );
            }
            assert_eq!(outcomes, expected);
        }
        assert_eq!(rows(&batched).await, rows(&one_by_one).await);

        let acme = tenant("acme");
        let outcomes = batched
            .ingest(
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
                    split
                        .with_max_variables(max_variables)
                        .ingest(&tenant, &batch)
                        .await
                        .expect("split ingest"),
                    whole.ingest(&tenant, &batch).await.expect("whole ingest"),
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
        let outcomes = store.ingest(&acme, &items).await.expect("ingest");
        let last = int(n_items as u64);
        assert_eq!(outcomes.len(), n_items + 1);
        assert_eq!(outcomes[n_items - 1], IngestOutcome::Inserted { seq: last });
        assert_eq!(outcomes[n_items], IngestOutcome::Unchanged { seq: 1 });

        items[n_items - 1] = advisory(&format!("GO-{}", n_items - 1), 2);
        let again = store.ingest(&acme, &items).await.expect("ingest again");
        assert_eq!(again[0], IngestOutcome::Unchanged { seq: 1 });
        assert_eq!(again[n_items - 2], IngestOutcome::Unchanged { seq: last - 1 });
        assert_eq!(again[n_items - 1], IngestOutcome::Replaced { seq: last + 1 });
        assert_eq!(
            store
                .count_items(&acme, last + 1, &Target::parse("advisory").unwrap())
                .await
                .unwrap(),
            n_items as u64
        );
    }
}
