//! The reconnect schedule of SPEC §7: 1 s, 2 s, 4 s, 8 s … capped at 30 s, scaled by a
//! configurable base so tests need not sleep for seconds.

use std::time::Duration;

/// The base delay when `EXPORTCTL_BACKOFF_MS` is not set.
pub(crate) const DEFAULT_BASE: Duration = Duration::from_millis(1000);

/// The longest wait, in units of the base (30 s with the default base).
const CAP_FACTOR: u32 = 30;

/// Consecutive failed connection attempts after which `watch` gives up, when
/// `EXPORTCTL_MAX_RETRIES` is not set: about two minutes with the default base.
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 8;

/// How long to wait before reconnect number `attempt` (0 for the first reconnect after
/// a connection that delivered an event): `base × 2^attempt`, at most `30 × base`.
pub(crate) fn delay(attempt: u32, base: Duration) -> Duration {
    let cap = base.saturating_mul(CAP_FACTOR);
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// The retry settings of one `watch`, read once from the (hidden) environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub(crate) base: Duration,
    pub(crate) max_retries: u32,
}

impl RetryPolicy {
    /// `EXPORTCTL_BACKOFF_MS` (default 1000) and `EXPORTCTL_MAX_RETRIES` (default 8).
    pub(crate) fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
        };
        Self {
            base: read("EXPORTCTL_BACKOFF_MS").map_or(DEFAULT_BASE, Duration::from_millis),
            max_retries: read("EXPORTCTL_MAX_RETRIES")
                .map_or(DEFAULT_MAX_RETRIES, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        delay(attempt, self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_from_one_second() {
        let delays: Vec<u64> = (0..5).map(|n| delay(n, SECOND).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn is_capped_at_thirty_seconds() {
        assert_eq!(delay(5, SECOND), Duration::from_secs(30));
        assert_eq!(delay(6, SECOND), Duration::from_secs(30));
        assert_eq!(delay(31, SECOND), Duration::from_secs(30));
        assert_eq!(delay(32, SECOND), Duration::from_secs(30));
        assert_eq!(delay(u32::MAX, SECOND), Duration::from_secs(30));
    }

    #[test]
    fn scales_with_the_base() {
        let base = Duration::from_millis(10);
        assert_eq!(delay(0, base), Duration::from_millis(10));
        assert_eq!(delay(3, base), Duration::from_millis(80));
        assert_eq!(delay(10, base), Duration::from_millis(300));
    }

    #[test]
    fn a_zero_base_never_waits() {
        assert_eq!(delay(7, Duration::ZERO), Duration::ZERO);
    }
}
