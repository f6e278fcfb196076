//! The DPoP `jti` replay cache: a trait, so replicas can share one (PostgreSQL), and the
//! in-memory implementation for a single process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::AuthError;

/// Remembers which proofs were seen, until they could no longer be accepted anyway.
///
/// Entries expire by the implementation's own clock (the wall clock, or the database's),
/// which is why `until` is an absolute time.
#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// Records `jti_hash` until `until`. True if it was newly inserted, false if the jti was
    /// already seen (and its entry has not expired).
    /// `now` is the verifier's clock, the same one the proof's `iat` was checked against.
    async fn check_and_insert(
        &self,
        jti_hash: [u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, AuthError>;
}

/// An in-process [`ReplayCache`] with expiring entries and a hard cap on their number.
///
/// When the cap is reached and nothing has expired, new proofs are refused with
/// [`AuthError::ReplayCache`] rather than forgetting entries early, which would reopen the
/// replay window.
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    until: HashMap<[u8; 32], DateTime<Utc>>,
    /// Insertion order; `until` grows almost monotonically with it, so expired entries are
    /// found at the front.
    order: VecDeque<(DateTime<Utc>, [u8; 32])>,
}

impl MemoryReplayCache {
    /// Default cap: about a million entries (some 100 MB at worst), enough for 10,000 proofs
    /// a second with the default windows.
    pub const DEFAULT_CAPACITY: usize = 1 << 20;

    /// A cache with [`MemoryReplayCache::DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A cache that holds at most `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// How many entries are held (some may have expired but not yet been dropped).
    pub fn len(&self) -> usize {
        self.lock().until.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_and_insert_at(
        &self,
        jti_hash: [u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, AuthError> {
        let mut entries = self.lock();
        entries.drop_expired(now);
        if entries
            .until
            .get(&jti_hash)
            .is_some_and(|seen_until| *seen_until > now)
        {
            return Ok(false);
        }
        if entries.until.len() >= self.capacity {
            return Err(AuthError::ReplayCache("memory replay cache is full".into()));
        }
        entries.until.insert(jti_hash, until);
        entries.order.push_back((until, jti_hash));
        Ok(true)
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new()
    }
}

impl Entries {
    fn drop_expired(&mut self, now: DateTime<Utc>) {
        while let Some(&(until, hash)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            // The jti may have been inserted again later, with a later expiry.
            if self.until.get(&hash).is_some_and(|current| *current <= now) {
                self.until.remove(&hash);
            }
        }
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn check_and_insert(
        &self,
        jti_hash: [u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, AuthError> {
        self.check_and_insert_at(jti_hash, until, now)
    }
}
