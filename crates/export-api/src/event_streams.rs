//! The event streams this process holds open (SPEC §17): at most
//! `limits.sse_streams_per_tenant` per tenant, so one tenant cannot take every
//! connection, and one switch that ends them all when the server shuts down.
//!
//! Like the run-creation buckets, the count is per process: with several API replicas
//! each bounds its own share of a tenant's streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use export_core::TenantId;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

#[derive(Debug)]
pub struct EventStreams {
    per_tenant: u32,
    open: Mutex<HashMap<TenantId, u32>>,
    closing: CancellationToken,
}

/// One open stream of a tenant; dropping it (the stream's end) frees the place.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    streams: Arc<EventStreams>,
    tenant: TenantId,
}

impl EventStreams {
    pub fn new(per_tenant: u32) -> Self {
        Self {
            per_tenant,
            open: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
        }
    }

    /// A place for one more stream of `tenant`, or `None` when it holds its limit.
    pub(crate) fn open(self: &Arc<Self>, tenant: &TenantId) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(tenant.clone()).or_default();
        if *count >= self.per_tenant {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            streams: self.clone(),
            tenant: tenant.clone(),
        })
    }

    /// Ends every open stream (at its next chunk) and refuses none: the server is
    /// shutting down, and clients resume elsewhere with `Last-Event-ID`.
    pub fn close_all(&self) {
        self.closing.cancel();
    }

    /// Completes when `close_all` is called.
    pub(crate) fn closing(&self) -> WaitForCancellationFutureOwned {
        self.closing.clone().cancelled_owned()
    }
}

impl StreamSlot {
    /// Whether the server is shutting down.
    pub(crate) fn is_closing(&self) -> bool {
        self.streams.closing.is_cancelled()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_limit_and_a_closed_stream_frees_its_place() {
        let streams = Arc::new(EventStreams::new(2));
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let first = streams.open(&acme).unwrap();
        let _second = streams.open(&acme).unwrap();
        assert!(streams.open(&acme).is_none(), "the third is over the limit");
        assert!(
            streams.open(&globex).is_some(),
            "another tenant has its own count"
        );
        drop(first);
        assert!(streams.open(&acme).is_some(), "a closed stream frees its place");
    }
}
