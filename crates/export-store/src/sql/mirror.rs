//! Mirror imports (SPEC §15): a sealed site applies a bundle to its own evidence with the
//! machinery of ingest and removal, in one transaction, and records it, so the next
//! bundle of the chain is checked against what was applied.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use export_core::{MirrorMode, Sha256Digest, SourceName, TenantId};
use futures::stream::{BoxStream, StreamExt};
use sqlx::Transaction;

use crate::sql::database::{query, SqlDatabase};
use crate::sql::dialect::Dialect;
use crate::sql::evidence::{begin_ingest, ingest_batch, newest_change, remove_current, remove_items};
use crate::sql::{self, int, timestamp, Columns};
use crate::{IngestOutcome, MirrorImport, NewEvidence, NewMirrorImport, StoreError, Tombstone};

/// Items per ingest batch, as `export-center ingest` sends them: memory holds one batch
/// of documents, whatever the bundle's size.
const BATCH: usize = 500;

const IMPORT_COLUMNS: &str = "generation, mode, watermark, manifest_digest, snapshot_time, expires_at, \
     imported_at, added, changed, unchanged, removed, local_watermark";

pub(crate) async fn imports<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    limit: u32,
) -> Result<Vec<MirrorImport>, StoreError> {
    let rows = query(format!(
        "SELECT {IMPORT_COLUMNS} FROM mirror_imports WHERE tenant = $1 ORDER BY generation DESC LIMIT $2"
    ))
    .bind(tenant.as_str())
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| sql::mirror_import(&D::Db::columns(row)))
        .collect()
}

/// One row per tenant, each found by its primary key `(tenant, generation)`.
pub(crate) async fn latest_imports<D: Dialect>(
    store: &D,
) -> Result<Vec<(TenantId, MirrorImport)>, StoreError> {
    let rows = query(format!(
        "SELECT tenant, {IMPORT_COLUMNS} FROM mirror_imports AS m \
         WHERE generation = (SELECT MAX(generation) FROM mirror_imports WHERE tenant = m.tenant) \
         ORDER BY tenant"
    ))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let row = D::Db::columns(row);
            Ok((
                sql::parsed(&row, "tenant", TenantId::parse)?,
                sql::mirror_import(&row)?,
            ))
        })
        .collect()
}

/// Applies the bundle in one transaction of `begin_ingest`: the ingest lock keeps every
/// other ingest, removal and import of the tenant out from the generation check to the
/// commit, so the check holds for what is written. Whatever fails, the transaction is
/// rolled back before the error is returned, and the lock with it.
pub(crate) async fn apply<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    expected_generation: Option<i64>,
    import: &NewMirrorImport,
    items: BoxStream<'_, Result<NewEvidence, StoreError>>,
    removals: &[Tombstone],
) -> Result<MirrorImport, StoreError> {
    let mut tx = begin_ingest(store, tenant).await?;
    let applied = write(
        store,
        &mut tx,
        tenant,
        expected_generation,
        import,
        items,
        removals,
    )
    .await;
    match applied {
        Ok(applied) => {
            tx.commit().await.map_err(sql::db)?;
            Ok(applied)
        }
        Err(err) => {
            // The caller needs the cause; should the rollback fail, the database drops
            // the transaction with the connection anyway.
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

/// The items a bundle named so far, by source and id, with their digests: what tells an
/// item named twice, and what a full bundle keeps.
type Named = HashMap<SourceName, HashMap<String, Sha256Digest>>;

/// Everything `apply` writes, in its transaction. A full bundle removes whatever it
/// does not name, so `removals` only counts for a delta.
async fn write<D: Dialect>(
    store: &D,
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    expected_generation: Option<i64>,
    import: &NewMirrorImport,
    mut items: BoxStream<'_, Result<NewEvidence, StoreError>>,
    removals: &[Tombstone],
) -> Result<MirrorImport, StoreError> {
    let newest = newest_generation::<D>(tx, tenant).await?;
    if newest != expected_generation {
        let generation = |generation: Option<i64>| match generation {
            Some(generation) => format!("generation {generation}"),
            None => "no import".to_owned(),
        };
        return Err(StoreError::conflict(
            "mirror import",
            format!(
                "the tenant's newest import is {}, the bundle was checked against {}: \
                 another import got there first",
                generation(newest),
                generation(expected_generation)
            ),
        ));
    }
    let mut applied = MirrorImport {
        generation: newest.unwrap_or(0) + 1,
        mode: import.mode,
        watermark: import.watermark,
        manifest_digest: import.manifest_digest,
        snapshot_time: import.snapshot_time,
        expires_at: import.expires_at,
        imported_at: import.imported_at,
        added: 0,
        changed: 0,
        unchanged: 0,
        removed: 0,
        local_watermark: 0,
    };
    // A tenant without current items (a first import) has nothing a full bundle could
    // remove, so its page-by-page search for them is skipped.
    let had_items =
        query("SELECT 1 AS present FROM evidence WHERE tenant = $1 AND superseded_seq IS NULL LIMIT 1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
    let mut named = Named::new();
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = items.next().await {
        let mut item = item?;
        if !name(&mut named, &item)? {
            continue;
        }
        item.ingested_at = import.imported_at;
        batch.push(item);
        if batch.len() == BATCH {
            count(&mut applied, ingest_batch(store, tx, tenant, &batch).await?);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        count(&mut applied, ingest_batch(store, tx, tenant, &batch).await?);
    }
    let removed = match import.mode {
        MirrorMode::Delta => remove_items(store, tx, tenant, removals, import.imported_at).await?,
        MirrorMode::Full if !had_items => Vec::new(),
        MirrorMode::Full => {
            let kept = |item: &Tombstone| {
                named
                    .get(&item.source)
                    .is_some_and(|ids| ids.contains_key(&item.id))
            };
            remove_current(store, tx, tenant, None, kept, import.imported_at).await?
        }
    };
    applied.removed = removed.len() as u64;
    applied.local_watermark = newest_change(&mut *tx, tenant).await?.watermark;
    record::<D>(tx, tenant, &applied).await?;
    Ok(applied)
}

/// Adds `item` to `named`: true when it is named for the first time, false when it was
/// named before with the same digest (it is applied once), and a conflict when it was
/// named with another.
fn name(named: &mut Named, item: &NewEvidence) -> Result<bool, StoreError> {
    match named
        .entry(item.source.clone())
        .or_default()
        .entry(item.id.clone())
    {
        Entry::Vacant(entry) => {
            entry.insert(item.digest);
            Ok(true)
        }
        Entry::Occupied(entry) if *entry.get() == item.digest => Ok(false),
        Entry::Occupied(entry) => Err(StoreError::conflict(
            "mirror item",
            format!(
                "`{}` of source `{}` is in the bundle twice, as {} and as {}",
                item.id,
                item.source,
                entry.get(),
                item.digest
            ),
        )),
    }
}

fn count(applied: &mut MirrorImport, outcomes: Vec<IngestOutcome>) {
    for outcome in outcomes {
        match outcome {
            IngestOutcome::Inserted { .. } => applied.added += 1,
            IngestOutcome::Replaced { .. } => applied.changed += 1,
            IngestOutcome::Unchanged { .. } => applied.unchanged += 1,
        }
    }
}

async fn newest_generation<D: Dialect>(
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
) -> Result<Option<i64>, StoreError> {
    let row = query("SELECT MAX(generation) AS generation FROM mirror_imports WHERE tenant = $1")
        .bind(tenant.as_str())
        .fetch_one(tx)
        .await?;
    let generation = D::Db::columns(&row).optional_integer("generation");
    generation
}

async fn record<D: Dialect>(
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    applied: &MirrorImport,
) -> Result<(), StoreError> {
    query(format!(
        "INSERT INTO mirror_imports (tenant, {IMPORT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(tenant.as_str())
    .bind(applied.generation)
    .bind(applied.mode.as_str())
    .bind(applied.watermark)
    .bind(applied.manifest_digest.to_string())
    .bind(timestamp(applied.snapshot_time))
    .bind(timestamp(applied.expires_at))
    .bind(timestamp(applied.imported_at))
    .bind(int(applied.added))
    .bind(int(applied.changed))
    .bind(int(applied.unchanged))
    .bind(int(applied.removed))
    .bind(applied.local_watermark)
    .execute(tx)
    .await?;
    Ok(())
}
