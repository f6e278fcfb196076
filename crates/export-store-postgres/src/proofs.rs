//! DPoP proof ids seen, shared by every process on the database.

use chrono::{DateTime, Utc};
use export_store::sql::timestamp;
use export_store::StoreError;
use sqlx::PgPool;

use crate::rows::db;

/// One statement: a new id is inserted, an expired record is taken over, a live one is
/// left alone and returns no row.
pub(crate) async fn record(
    pool: &PgPool,
    jti_hash: &[u8; 32],
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let recorded: Option<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO dpop_proofs (jti, until) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET until = excluded.until WHERE dpop_proofs.until <= $3 \
         RETURNING jti",
    )
    .bind(jti_hash.as_slice())
    .bind(timestamp(until))
    .bind(timestamp(now))
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    Ok(recorded.is_some())
}

pub(crate) async fn prune(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let pruned = sqlx::query("DELETE FROM dpop_proofs WHERE until <= $1")
        .bind(timestamp(now))
        .execute(pool)
        .await
        .map_err(db)?
        .rows_affected();
    Ok(pruned)
}
