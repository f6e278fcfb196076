//! Idempotency records (SPEC §2.2): claimed for a short lease before a run is created,
//! completed with the run in the same transaction, taken over when a lease lapses
//! without a run, expired after `IDEMPOTENCY_TTL`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use export_core::{RunId, TenantId};
use sqlx::Transaction;

use crate::sql::database::{query, SqlDatabase};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::{self, parse_timestamp, timestamp, Columns};
use crate::{IdempotencyBegin, IdempotencyClaim, StoreError, IDEMPOTENCY_CLAIM, IDEMPOTENCY_TTL};

pub(crate) async fn begin<D: Dialect>(
    store: &D,
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
    let mut tx = begin_write(store).await?;
    // Expired records count as absent; dropping the tenant's expired ones here keeps
    // the table from growing without a janitor.
    query("DELETE FROM idempotency WHERE tenant = $1 AND created_at < $2")
        .bind(tenant.as_str())
        .bind(timestamp(oldest_kept))
        .execute(&mut tx)
        .await?;
    // A new key is claimed; so is one whose claim lapsed without a run (the row lock
    // the upsert takes makes one of two concurrent takeovers see the other's lease).
    let claimed = query(
        "INSERT INTO idempotency (tenant, subject, method, path, key, fingerprint, created_at, claimed_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
    .execute(&mut tx)
    .await?;
    let outcome = if D::rows_affected(&claimed) == 1 {
        IdempotencyBegin::Started
    } else {
        let row = query(
            "SELECT fingerprint, run_id, claimed_until FROM idempotency \
             WHERE tenant = $1 AND subject = $2 AND method = $3 AND path = $4 AND key = $5",
        )
        .bind(tenant.as_str())
        .bind(&claim.subject)
        .bind(&claim.method)
        .bind(&claim.path)
        .bind(&claim.key)
        .fetch_one(&mut tx)
        .await?;
        let row = D::Db::columns(&row);
        let (stored, run_id, until) = (
            row.text("fingerprint")?,
            row.optional_text("run_id")?,
            row.text("claimed_until")?,
        );
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
    tx.commit().await.map_err(sql::db)?;
    Ok(outcome)
}

/// Completes `claim` with `run_id` inside the caller's transaction. A claim that was
/// never begun (or was released, or belongs to another body) is an error, so that a
/// key can never yield two runs.
pub(crate) async fn complete<D: Dialect>(
    tx: &mut Transaction<'static, D::Db>,
    tenant: &TenantId,
    claim: &IdempotencyClaim,
    run_id: &RunId,
) -> Result<(), StoreError> {
    let completed = query(
        "UPDATE idempotency SET run_id = $1 \
         WHERE tenant = $2 AND subject = $3 AND method = $4 AND path = $5 AND key = $6 \
         AND fingerprint = $7 AND run_id IS NULL",
    )
    .bind(run_id.to_string())
    .bind(tenant.as_str())
    .bind(&claim.subject)
    .bind(&claim.method)
    .bind(&claim.path)
    .bind(&claim.key)
    .bind(claim.fingerprint.to_string())
    .execute(tx)
    .await?;
    if D::rows_affected(&completed) == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            kind: IDEMPOTENCY_CLAIM,
            id: claim.key.clone(),
        })
    }
}
