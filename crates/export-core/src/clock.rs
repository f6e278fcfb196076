//! Time as the domain sees it: an injectable clock, so tests never sleep, and the one
//! timestamp format of the contract (RFC 3339 UTC, whole seconds, `Z`).

use chrono::{DateTime, SubsecRound, Utc};

/// The source of "now" for everything that stamps or expires.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock, truncated to whole seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(0)
    }
}

/// Formats `at` as `2025-12-06T10:00:00Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
