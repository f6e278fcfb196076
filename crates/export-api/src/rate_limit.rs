//! Per-tenant token buckets on run creation (SPEC §12): a tenant over its rate gets
//! `429 ERR_EXPORT_RATE_LIMIT` with `Retry-After`; other tenants are unaffected.
//! Handlers never call the limiter: a handler that creates takes a [`RateLimited`]
//! caller, whose extraction takes the token.
//!
//! The buckets live in this process: with several API replicas each enforces the limit
//! on its own share of the traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use export_core::{ErrorCode, TenantId};

use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// The caller of an endpoint that creates runs: authenticated, holding `export:write`,
/// and within its tenant's rate. The scope is checked before a token is taken, so a
/// caller without it never spends its tenant's tokens; the body is read only after.
pub(crate) struct RateLimited(pub(crate) Caller);

impl FromRequestParts<AppState> for RateLimited {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Scope::ExportWrite)?;
        state.rate_limiter.admit(&caller.tenant)?;
        Ok(Self(caller))
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The state of a tenant's bucket after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub allowed: bool,
    pub remaining: u32,
    /// Seconds until the next token (when refused) or until the bucket is full.
    pub reset_seconds: u64,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `tenant`'s bucket if there is one.
    pub fn acquire(&self, tenant: &TenantId) -> RateState {
        self.acquire_at(tenant, Instant::now())
    }

    /// Takes one token from `tenant`'s bucket, or refuses with `429` and the
    /// `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers).
    pub(crate) fn admit(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let rate = self.acquire(tenant);
        if rate.allowed {
            return Ok(());
        }
        let mut error = ApiError::new(
            ErrorCode::RateLimit,
            format!("tenant `{tenant}` is creating runs faster than its limit"),
        )
        .with_header("ratelimit", self.header(&rate))
        .with_header("ratelimit-policy", self.policy());
        error.retry_after = Some(rate.reset_seconds);
        Err(error)
    }

    fn acquire_at(&self, tenant: &TenantId, now: Instant) -> RateState {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            let reset = ((burst - bucket.tokens) / rate).ceil() as u64;
            RateState {
                allowed: true,
                remaining: bucket.tokens.floor() as u32,
                reset_seconds: reset,
            }
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
            RateState {
                allowed: false,
                remaining: 0,
                reset_seconds: wait,
            }
        }
    }

    /// `RateLimit-Policy`: the burst over the window it refills in.
    pub fn policy(&self) -> String {
        let window = (f64::from(self.burst) * 60.0 / f64::from(self.per_minute)).ceil() as u64;
        format!("{};w={}", self.burst, window.max(1))
    }

    /// `RateLimit`: what is left now.
    pub fn header(&self, state: &RateState) -> String {
        format!(
            "limit={}, remaining={}, reset={}",
            self.burst, state.remaining, state.reset_seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies_per_tenant() {
        let limiter = RateLimiter::new(60, 10);
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let start = Instant::now();
        for idx in 0..10 {
            let state = limiter.acquire_at(&acme, start);
            assert!(state.allowed, "request {idx} of the burst");
            assert_eq!(state.remaining, 9 - idx);
        }
        let refused = limiter.acquire_at(&acme, start);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_seconds, 1, "one token a second at 60 per minute");
        assert!(
            limiter.acquire_at(&globex, start).allowed,
            "another tenant has its own bucket"
        );
        assert!(
            limiter
                .acquire_at(&acme, start + Duration::from_millis(1000))
                .allowed
        );
        assert!(
            !limiter
                .acquire_at(&acme, start + Duration::from_millis(1500))
                .allowed
        );
        assert_eq!(limiter.policy(), "10;w=10");
    }
}
