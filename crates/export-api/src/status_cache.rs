//! The rendered status of ended runs, kept in memory so that polling a finished run
//! costs no database read and no signing.
//!
//! A run that has ended (`succeeded`, `failed`, `cancelled` or `expired`) no longer
//! changes in the store, with one exception whose time is known in advance: a succeeded
//! run becomes `expired` once its retention ends. Its status document therefore depends
//! only on the run and on the link window, the rounded expiry of its signed links
//! (`link_expiry`), which moves every few minutes. An entry keeps the run and the body
//! rendered for the latest window; a request in another window renders it again. A
//! succeeded run is only served from here while `now` is before its `expires_at`; from
//! then on it is read from the store again, where the janitor marks it `expired`.
//!
//! Entries are keyed by run id, which carries the tenant; callers check the tenant and
//! project on every hit exactly as on a read from the store.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use export_core::{RunId, RunStatus};
use export_store::Run;
use hashlink::LruCache;

pub(crate) struct StatusCache {
    entries: Mutex<LruCache<RunId, Arc<CachedStatus>>>,
}

/// An ended run and its status body for one link window.
pub(crate) struct CachedStatus {
    pub(crate) run: Run,
    rendered: Mutex<Option<(DateTime<Utc>, Bytes)>>,
}

impl CachedStatus {
    /// The body rendered for the link window `links_expire`, if it is the one kept.
    pub(crate) fn body(&self, links_expire: DateTime<Utc>) -> Option<Bytes> {
        let rendered = lock(&self.rendered);
        match &*rendered {
            Some((window, body)) if *window == links_expire => Some(body.clone()),
            _ => None,
        }
    }

    /// Keeps `body` as the rendering for the link window `links_expire`.
    pub(crate) fn set_body(&self, links_expire: DateTime<Utc>, body: Bytes) {
        *lock(&self.rendered) = Some((links_expire, body));
    }
}

impl StatusCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    /// The cached ended run `run_id`, unless it is a succeeded run whose retention has
    /// ended at `now` (it is dropped then: the store decides what it is now).
    pub(crate) fn get(&self, run_id: &RunId, now: DateTime<Utc>) -> Option<Arc<CachedStatus>> {
        let mut entries = lock(&self.entries);
        let cached = entries.get(run_id)?.clone();
        if is_final(&cached.run, now) {
            Some(cached)
        } else {
            entries.remove(run_id);
            None
        }
    }

    /// Keeps `run`, read from the store at `now`, if its status can no longer change
    /// before its known expiry; returns the entry to render into.
    pub(crate) fn insert(&self, run: &Run, now: DateTime<Utc>) -> Option<Arc<CachedStatus>> {
        if !is_final(run, now) {
            return None;
        }
        let cached = Arc::new(CachedStatus {
            run: run.clone(),
            rendered: Mutex::new(None),
        });
        lock(&self.entries).insert(cached.run.id.clone(), cached.clone());
        Some(cached)
    }
}

/// Whether the stored run cannot change any more before `now` moves past a time the
/// run itself names: it has ended, and a succeeded run is still within its retention.
fn is_final(run: &Run, now: DateTime<Utc>) -> bool {
    match run.status {
        RunStatus::Queued | RunStatus::Running => false,
        RunStatus::Succeeded => run.expires_at.is_some_and(|expires_at| now < expires_at),
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Expired => true,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
