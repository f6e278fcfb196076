//! The configurable limits of SPEC §12, with the contract's defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Most targets in one run request.
    pub max_targets: usize,
    /// Most planned outputs of one run.
    pub max_outputs: usize,
    /// Largest compressed bundle, in bytes.
    pub max_bundle_bytes: u64,
    /// A run still working after this many seconds fails with `ERR_EXPORT_TIMEOUT`
    /// (fractions allowed).
    pub job_timeout_seconds: f64,
    /// Runs one tenant may create per minute (a token bucket refilling at this rate).
    pub runs_per_minute: u32,
    /// Runs one tenant may create at once before the rate applies.
    pub runs_burst: u32,
    /// How long a request holds its `Idempotency-Key` while it creates its run: a retry
    /// within it is told the request is in flight; after it, a retry takes the key over
    /// (the first request died or failed before creating a run).
    pub idempotency_lease_seconds: u64,
    /// Event streams one tenant may hold open on one server process at once; the next
    /// is refused with `429 ERR_EXPORT_RATE_LIMIT` (SPEC §17).
    pub sse_streams_per_tenant: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_targets: 50,
            max_outputs: 1000,
            max_bundle_bytes: 500 * 1024 * 1024,
            job_timeout_seconds: 3600.0,
            runs_per_minute: 60,
            runs_burst: 10,
            idempotency_lease_seconds: 10,
            sse_streams_per_tenant: 1000,
        }
    }
}
