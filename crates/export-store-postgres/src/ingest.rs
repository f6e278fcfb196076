//! How an ingest batch travels on PostgreSQL: each statement takes its rows as arrays
//! (`UNNEST`), so the statements' text is fixed and prepared once per connection,
//! whatever the batch's size.

use std::collections::{BTreeSet, HashMap};

use export_core::{Sha256Digest, TenantId};
use export_store::ingest_plan::{new_seq, Current, NewVersion, Version};
use export_store::sql::{db, timestamp, to_json};
use export_store::{NewEvidence, StoreError};
use sqlx::PgConnection;

/// The current version of each (source, id) of the arrays `$2` and `$3` of tenant `$1`.
const CURRENT_VERSIONS: &str = "SELECT wanted.source, wanted.id, current.seq, current.digest \
     FROM UNNEST($2::text[], $3::text[]) AS wanted (source, id) \
     CROSS JOIN LATERAL (SELECT seq, digest FROM evidence \
         WHERE tenant = $1 AND source = wanted.source AND id = wanted.id AND superseded_seq IS NULL \
         LIMIT 1) AS current";

/// The stored current version of every (source, id) in `items`, one seek per pair in
/// `evidence_current`.
///
/// The lookup is a `LATERAL` subquery with `LIMIT 1` (the partial unique index holds at
/// most one row), which the planner cannot flatten into a join: during a bulk load the
/// table's statistics lag behind its size, and the plain join was planned as a hash join
/// over all the tenant's current rows, a cost that grew with every batch (100,000
/// documents did not finish ingesting in minutes).
pub(crate) async fn current_versions<'a>(
    tx: &mut PgConnection,
    tenant: &TenantId,
    items: &'a [NewEvidence],
) -> Result<HashMap<(&'a str, &'a str), Current>, StoreError> {
    let wanted: Vec<(&'a str, &'a str)> = items
        .iter()
        .map(|item| (item.source.as_str(), item.id.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (sources, ids): (Vec<&str>, Vec<&str>) = wanted.iter().copied().unzip();
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(CURRENT_VERSIONS)
        .bind(tenant.as_str())
        .bind(&sources)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let mut current = HashMap::with_capacity(rows.len());
    for (source, id, seq, digest) in rows {
        // The key borrows the item's source and id, as the plan looks it up.
        let key = wanted
            .binary_search(&(source.as_str(), id.as_str()))
            .map(|idx| wanted[idx])
            .map_err(|_| StoreError::corrupt("id", format!("`{source}` `{id}` was not asked for")))?;
        let digest = Sha256Digest::parse(&digest)
            .ok_or_else(|| StoreError::corrupt("digest", format!("`{digest}`: expected `sha256:<hex>`")))?;
        current.insert(
            key,
            Current {
                version: Version::Stored(seq),
                digest,
            },
        );
    }
    Ok(current)
}

/// Marks the stored versions the batch replaces as superseded by their new versions:
/// one primary-key seek per version (`seq = ANY`), whatever the statistics say.
pub(crate) async fn supersede_stored(
    tx: &mut PgConnection,
    tenant: &TenantId,
    superseded: &[(i64, usize)],
    first_seq: i64,
) -> Result<(), StoreError> {
    if superseded.is_empty() {
        return Ok(());
    }
    let (stored, by): (Vec<i64>, Vec<i64>) = superseded
        .iter()
        .map(|&(seq, new)| (seq, new_seq(first_seq, new)))
        .unzip();
    sqlx::query(
        "UPDATE evidence SET superseded_seq = ($3::bigint[])[array_position($2::bigint[], seq)] \
         WHERE tenant = $1 AND seq = ANY($2::bigint[])",
    )
    .bind(tenant.as_str())
    .bind(&stored)
    .bind(&by)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts the batch's new versions, already marked superseded when a later version of
/// the same batch replaces them.
pub(crate) async fn insert_versions(
    tx: &mut PgConnection,
    tenant: &TenantId,
    versions: &[NewVersion<'_>],
    first_seq: i64,
) -> Result<(), StoreError> {
    let n = versions.len();
    let (mut seqs, mut superseded, mut kinds, mut sources, mut ids, mut formats) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut modified, mut aliases, mut digests, mut documents, mut ingested_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (idx, version) in versions.iter().enumerate() {
        let item = version.item;
        seqs.push(new_seq(first_seq, idx));
        superseded.push(version.superseded_by.map(|new| new_seq(first_seq, new)));
        kinds.push(item.kind.as_str());
        sources.push(item.source.as_str());
        ids.push(item.id.as_str());
        formats.push(item.format.as_str());
        modified.push(item.modified.as_deref());
        aliases.push(to_json(&item.aliases)?);
        digests.push(item.digest.to_string());
        documents.push(item.document.as_slice());
        ingested_at.push(timestamp(item.ingested_at));
    }
    sqlx::query(
        "INSERT INTO evidence \
         (tenant, seq, superseded_seq, kind, source, id, format, modified, aliases, digest, document, ingested_at) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::text[])",
    )
    .bind(tenant.as_str())
    .bind(&seqs)
    .bind(&superseded)
    .bind(&kinds)
    .bind(&sources)
    .bind(&ids)
    .bind(&formats)
    .bind(&modified)
    .bind(&aliases)
    .bind(&digests)
    .bind(&documents)
    .bind(&ingested_at)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use export_core::Kind;
    use export_store::testing::{document, tenant};
    use export_store::Store;

    use super::*;
    use crate::testing::{fresh_schema, options_for};
    use crate::PostgresStore;

    /// After a bulk load has outgrown the statistics, the current versions of a batch are
    /// still found with one seek per document in `evidence_current` by (tenant, source,
    /// id), never by a hash join over the tenant's current rows. (The `LATERAL … LIMIT 1`
    /// form guarantees it structurally; this checks the plan the server makes of it. The
    /// hash join of the first version appeared in `scripts/bench --postgres` at about
    /// 30,000 documents; this smaller load does not reproduce it.)
    #[tokio::test]
    async fn current_versions_are_one_seek_per_document_with_stale_statistics() {
        let store = PostgresStore::connect_with(options_for(&fresh_schema().await))
            .await
            .expect("connect");
        let acme = tenant("acme");
        let batch = |range: std::ops::Range<usize>| -> Vec<NewEvidence> {
            range
                .map(|idx| document("osv-go", Kind::Advisory, &format!("GO-{idx:05}"), 1))
                .collect()
        };
        store.ingest(&acme, &batch(0..10)).await.expect("ingest");
        sqlx::query("ANALYZE evidence")
            .execute(&store.pool)
            .await
            .expect("analyze");
        for start in (10..5_010).step_by(1_000) {
            store
                .ingest(&acme, &batch(start..start + 1_000))
                .await
                .expect("ingest");
        }
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {CURRENT_VERSIONS}"))
            .bind(acme.as_str())
            .bind(vec!["osv-go"; 2])
            .bind(vec!["GO-00001", "GO-04000"])
            .fetch_all(&store.pool)
            .await
            .expect("explain");
        let seek = plan
            .iter()
            .position(|line| line.contains("Index Scan using evidence_current"))
            .and_then(|at| plan.get(at + 1))
            .filter(|cond| {
                cond.contains("Index Cond") && cond.contains("source = ") && cond.contains("id = ")
            });
        assert!(seek.is_some(), "{}", plan.join("\n"));
        assert!(
            !plan.iter().any(|line| line.contains("Hash Join")),
            "{}",
            plan.join("\n")
        );
    }
}
