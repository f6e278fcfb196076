//! Idempotency records (SPEC §2.2): claimed for a short lease before a run is created,
//! completed with the run in the same transaction, taken over when a lease lapses
//! without a run, expired after `IDEMPOTENCY_TTL`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use export_core::{RunId, TenantId};
use export_store::sql::{parse_timestamp, timestamp};
use export_store::{IdempotencyBegin, IdempotencyClaim, StoreError, IDEMPOTENCY_CLAIM, IDEMPOTENCY_TTL};
use sqlx::{SqliteConnection, SqlitePool};

use crate::rows::db;

pub(crate) async fn begin(
    pool: &SqlitePool,
    tenant: &TenantId,
    claim: &IdempotencyClaim,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<IdempotencyBegin, StoreError> {
    let ttl = TimeDelta::from_std(IDEMPOTENCY_TTL).unwrap_or(TimeDelta::MAX);
    let oldest_kept = now.checked_sub_signed(ttl).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let claimed_until = now
        .checked_add_signed(TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let fingerprint = claim.fingerprint.to_string();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    // Expired records count as absent; dropping the tenant's expired ones here keeps
    // the table from growing without a janitor.
    sqlx::query("DELETE FROM idempotency WHERE tenant = ? AND created_at < ?")
        .bind(tenant.as_str())
        .bind(timestamp(oldest_kept))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // A new key is claimed; so is one whose claim lapsed without a run (the row lock
    // the upsert takes makes one of two concurrent takeovers see the other's lease).
    let claimed = sqlx::query(
        "INSERT INTO idempotency (tenant, subject, method, path, key, fingerprint, created_at, claimed_until) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (tenant, subject, method, path, key) DO UPDATE \
         SET fingerprint = excluded.fingerprint, created_at = excluded.created_at, \
             claimed_until = excluded.claimed_until \
         WHERE idempotency.run_id IS NULL AND idempotency.claimed_until <= excluded.created_at",
    )
    .bind(tenant.as_str())
    .bind(&claim.subject)
    .bind(&claim.method)
    .bind(&claim.path)
    .bind(&claim.key)
    .bind(&fingerprint)
    .bind(timestamp(now))
    .bind(timestamp(claimed_until))
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    let outcome = if claimed == 1 {
        IdempotencyBegin::Started
    } else {
        let (stored, run_id, until): (String, Option<String>, String) = sqlx::query_as(
            "SELECT fingerprint, run_id, claimed_until FROM idempotency \
             WHERE tenant = ? AND subject = ? AND method = ? AND path = ? AND key = ?",
        )
        .bind(tenant.as_str())
        .bind(&claim.subject)
        .bind(&claim.method)
        .bind(&claim.path)
        .bind(&claim.key)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        match run_id {
            _ if stored != fingerprint => IdempotencyBegin::Mismatch,
            None => IdempotencyBegin::InFlight {
                until: parse_timestamp(&until)
                    .map_err(|err| StoreError::corrupt("idempotency claimed_until", err))?,
            },
            Some(run_id) => IdempotencyBegin::Replay(
                RunId::parse(&run_id).map_err(|err| StoreError::corrupt("idempotency run id", err))?,
            ),
        }
    };
    tx.commit().await.map_err(db)?;
    Ok(outcome)
}

/// Completes `claim` with `run_id` inside the caller's transaction. A claim that was
/// never begun (or was released, or belongs to another body) is an error, so that a
/// key can never yield two runs.
pub(crate) async fn complete(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    claim: &IdempotencyClaim,
    run_id: &RunId,
) -> Result<(), StoreError> {
    let completed = sqlx::query(
        "UPDATE idempotency SET run_id = ? \
         WHERE tenant = ? AND subject = ? AND method = ? AND path = ? AND key = ? \
         AND fingerprint = ? AND run_id IS NULL",
    )
    .bind(run_id.to_string())
    .bind(tenant.as_str())
    .bind(&claim.subject)
    .bind(&claim.method)
    .bind(&claim.path)
    .bind(&claim.key)
    .bind(claim.fingerprint.to_string())
    .execute(conn)
    .await
    .map_err(db)?
    .rows_affected();
    if completed == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            kind: IDEMPOTENCY_CLAIM,
            id: claim.key.clone(),
        })
    }
}
