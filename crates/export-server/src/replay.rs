//! The DPoP replay cache of replicas that share a database: proof ids are recorded in the
//! store (`Store::record_proof`), so a proof accepted by one replica is refused by every
//! other within its window. A single process keeps them in memory instead
//! (`export_auth::MemoryReplayCache`), which costs no write per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use export_auth::{AuthError, ReplayCache};
use export_store::Store;

/// Expired records are deleted once per this many proofs, by the replica that checks the
/// proof: no janitor needed, and at a few thousand proofs a second the table holds little
/// more than the proofs of one window.
const PRUNE_EVERY: u64 = 1_000;

pub(crate) struct DatabaseReplayCache {
    store: Arc<dyn Store>,
    checked: AtomicU64,
}

impl DatabaseReplayCache {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            checked: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl ReplayCache for DatabaseReplayCache {
    async fn check_and_insert(
        &self,
        jti_hash: [u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, AuthError> {
        if self.checked.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            if let Err(err) = self.store.prune_proofs(now).await {
                tracing::warn!(error = %err, "pruning expired DPoP proof records");
            }
        }
        self.store
            .record_proof(&jti_hash, until, now)
            .await
            .map_err(|err| AuthError::ReplayCache(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use export_store_postgres::testing::{fresh_schema, options_for};
    use export_store_postgres::PostgresStore;

    use super::*;

    /// Two replicas on one PostgreSQL database: a proof the first accepted, the second
    /// refuses; a proof of its own it accepts once.
    #[tokio::test]
    async fn a_proof_accepted_by_one_replica_is_refused_by_another() {
        let schema = fresh_schema().await;
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let store: Arc<dyn Store> = Arc::new(
                PostgresStore::connect_with(options_for(&schema))
                    .await
                    .expect("connect"),
            );
            replicas.push(DatabaseReplayCache::new(store));
        }
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let until = now + chrono::Duration::seconds(90);
        assert!(replicas[0].check_and_insert([7; 32], until, now).await.unwrap());
        assert!(!replicas[1].check_and_insert([7; 32], until, now).await.unwrap());
        assert!(replicas[1].check_and_insert([8; 32], until, now).await.unwrap());
        assert!(!replicas[1].check_and_insert([8; 32], until, now).await.unwrap());
        assert!(!replicas[0].check_and_insert([8; 32], until, now).await.unwrap());
    }
}
