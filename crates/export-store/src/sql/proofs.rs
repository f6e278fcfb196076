//! DPoP proof ids seen, shared by every process on the database.

use chrono::{DateTime, Utc};

use crate::sql::database::query;
use crate::sql::dialect::Dialect;
use crate::sql::timestamp;
use crate::StoreError;

/// One statement: a new id is inserted, an expired record is taken over, a live one is
/// left alone and returns no row.
pub(crate) async fn record<D: Dialect>(
    store: &D,
    jti_hash: &[u8; 32],
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let recorded = query(
        "INSERT INTO dpop_proofs (jti, until) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET until = excluded.until WHERE dpop_proofs.until <= $3 \
         RETURNING jti",
    )
    .bind(jti_hash.as_slice())
    .bind(timestamp(until))
    .bind(timestamp(now))
    .fetch_optional(store.pool())
    .await?;
    Ok(recorded.is_some())
}

pub(crate) async fn prune<D: Dialect>(store: &D, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let pruned = query("DELETE FROM dpop_proofs WHERE until <= $1")
        .bind(timestamp(now))
        .execute(store.pool())
        .await?;
    Ok(D::rows_affected(&pruned))
}
