//! Notifications of a run's end (SPEC §16): the four event types, the webhook's id and
//! URL rules, and the retry schedule of a delivery. Pure: the outbox that keeps them is
//! `export-store`'s, the sending is `export-notify`'s.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::egress::{split_authority, EgressPolicy};
use crate::ids::{IdError, TenantId};
use crate::status::RunStatus;

/// What a notification tells: how a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NotificationEvent {
    #[serde(rename = "run.succeeded")]
    Succeeded,
    #[serde(rename = "run.failed")]
    Failed,
    #[serde(rename = "run.cancelled")]
    Cancelled,
    #[serde(rename = "run.expired")]
    Expired,
}

impl NotificationEvent {
    pub const ALL: [Self; 4] = [Self::Succeeded, Self::Failed, Self::Cancelled, Self::Expired];

    /// `run.succeeded`, … : the event's `type` and a webhook's subscription.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "run.succeeded",
            Self::Failed => "run.failed",
            Self::Cancelled => "run.cancelled",
            Self::Expired => "run.expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == text)
    }

    /// The event of a run that reached `status`; `None` while it has not ended.
    pub fn for_status(status: RunStatus) -> Option<Self> {
        match status {
            RunStatus::Succeeded => Some(Self::Succeeded),
            RunStatus::Failed => Some(Self::Failed),
            RunStatus::Cancelled => Some(Self::Cancelled),
            RunStatus::Expired => Some(Self::Expired),
            RunStatus::Queued | RunStatus::Running => None,
        }
    }

    /// The NATS subject the event is published on: `export.run.succeeded`, …
    pub fn subject(self) -> String {
        format!("export.{}", self.as_str())
    }
}

impl fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `export-webhook::<tenant>::<16 lowercase hex digits>`: the tenant is part of the id,
/// so another tenant's webhook id names nothing of the caller's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WebhookId {
    pub tenant: TenantId,
    pub token: String,
}

impl WebhookId {
    const PREFIX: &'static str = "export-webhook::";

    /// A new id of `tenant` from 8 random bytes.
    pub fn new(tenant: TenantId, random: [u8; 8]) -> Self {
        Self {
            tenant,
            token: hex::encode(random),
        }
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        let invalid = || IdError {
            what: "webhook id",
            value: text.chars().take(80).collect(),
            reason: "expected `export-webhook::<tenant>::<16 hex digits>`",
        };
        let rest = text.strip_prefix(Self::PREFIX).ok_or_else(invalid)?;
        let (tenant, token) = rest.split_once("::").ok_or_else(invalid)?;
        let hex_token = token.len() == 16
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_token {
            return Err(invalid());
        }
        Ok(Self {
            tenant: TenantId::parse(tenant)?,
            token: token.to_owned(),
        })
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}::{}", Self::PREFIX, self.tenant, self.token)
    }
}

/// The longest webhook URL accepted.
pub const MAX_WEBHOOK_URL: usize = 2048;

/// Checks a webhook URL when it is registered (SPEC §17): `https://host[:port]/…`, or
/// `http://` to a destination `egress_allowlist` lists; no user information; the host
/// allowed by `policy` as named. The connections are judged again, address by address,
/// by the egress proxy. The reason, for an error naming `url`.
pub fn check_webhook_url(policy: &EgressPolicy, url: &str) -> Result<(), WebhookUrlError> {
    check_url(policy, url)
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    /// Not an `https://` URL of a host.
    #[error("{0}")]
    Invalid(String),
    /// The egress rules (SPEC §17) refuse its destination.
    #[error("{0}")]
    Egress(String),
}

fn check_url(policy: &EgressPolicy, url: &str) -> Result<(), WebhookUrlError> {
    use WebhookUrlError::{Egress, Invalid};
    if url.len() > MAX_WEBHOOK_URL {
        return Err(Invalid(format!("must be at most {MAX_WEBHOOK_URL} characters")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid(
            "must not contain spaces or control characters".to_owned(),
        ));
    }
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(Invalid("must be an `https://` URL".to_owned())),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(Invalid("must not carry user information".to_owned()));
    }
    let (host, port) = split_authority(authority)
        .filter(|(host, _)| !host.is_empty())
        .ok_or_else(|| Invalid(format!("`{authority}` is not a host")))?;
    policy
        .check_host(&host, port)
        .map_err(|refusal| Egress(refusal.to_string()))?;
    if !https && !policy.allow.iter().any(|entry| lists(entry, &host, port)) {
        return Err(Egress(format!(
            "plain HTTP to `{authority}` is refused: use `https://`, or list the host in `egress_allowlist`"
        )));
    }
    Ok(())
}

fn lists(entry: &str, host: &str, port: Option<u16>) -> bool {
    match split_authority(entry) {
        Some((entry_host, None)) => entry_host == host,
        Some((entry_host, Some(entry_port))) => entry_host == host && port == Some(entry_port),
        None => false,
    }
}

/// When a failed delivery is tried again: `initial`, doubling after each failure, at
/// most `max`; a delivery whose next try would fall more than `window` after its event
/// is dead-lettered instead (SPEC §16: retries for 24 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub window: Duration,
}

impl RetryPolicy {
    /// 10 s, 20 s, 40 s … capped at one hour, for 24 hours.
    pub const DEFAULT: Self = Self {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(3600),
        window: Duration::from_secs(24 * 3600),
    };

    /// The wait after the `failures`-th failed attempt (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1_u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// When to try again after the `failures`-th failure at `now`, or `None` when the
    /// delivery of an event created at `event_at` is to be dead-lettered.
    pub fn next_attempt(
        &self,
        failures: u32,
        event_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let next = now.checked_add_signed(TimeDelta::from_std(self.delay(failures)).ok()?)?;
        let deadline = event_at.checked_add_signed(TimeDelta::from_std(self.window).ok()?)?;
        (next <= deadline).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(allow: &[&str]) -> EgressPolicy {
        EgressPolicy {
            sealed: false,
            allow: allow.iter().map(|entry| (*entry).to_owned()).collect(),
        }
    }

    #[test]
    fn events_have_their_wire_names_and_subjects() {
        for event in NotificationEvent::ALL {
            assert_eq!(NotificationEvent::parse(event.as_str()), Some(event));
            assert_eq!(
                serde_json::to_string(&event).unwrap(),
                format!("\"{}\"", event.as_str())
            );
        }
        assert_eq!(NotificationEvent::Expired.subject(), "export.run.expired");
        assert_eq!(NotificationEvent::parse("run.started"), None);
    }

    #[test]
    fn webhook_ids_carry_their_tenant() {
        let id = WebhookId::new(TenantId::parse("acme").unwrap(), [0xab; 8]);
        assert_eq!(id.to_string(), "export-webhook::acme::abababababababab");
        assert_eq!(WebhookId::parse(&id.to_string()).unwrap(), id);
        for bad in [
            "export-webhook::acme::ABABABABABABABAB",
            "export-webhook::acme::abab",
            "webhook::acme::abababababababab",
            "export-webhook::Acme::abababababababab",
        ] {
            assert!(WebhookId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_urls_need_https_and_an_allowed_host() {
        let policy = open(&["127.0.0.1"]);
        assert!(check_webhook_url(&policy, "https://hooks.example.com/x").is_ok());
        assert!(check_webhook_url(&policy, "http://127.0.0.1:8080/hook").is_ok());
        for (url, reason) in [
            ("http://hooks.example.com/x", "plain HTTP"),
            ("https://10.0.0.1/x", "private"),
            ("https://169.254.169.254/latest", "refuse"),
            ("https://localhost/x", "loopback"),
            ("ftp://hooks.example.com", "https://"),
            ("https://user:pw@hooks.example.com/", "user information"),
            ("https://hooks.example.com/a b", "spaces"),
        ] {
            let err = check_webhook_url(&policy, url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
        }
        let sealed = EgressPolicy {
            sealed: true,
            allow: vec!["hooks.internal".to_owned()],
        };
        assert!(check_webhook_url(&sealed, "https://hooks.internal/x").is_ok());
        assert!(check_webhook_url(&sealed, "https://hooks.example.com/x").is_err());
    }

    #[test]
    fn retries_double_up_to_the_cap_and_stop_after_the_window() {
        let policy = RetryPolicy::DEFAULT;
        let delays: Vec<u64> = (1..=10).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        assert_eq!(policy.delay(u32::MAX).as_secs(), 3600);
        let event_at = DateTime::<Utc>::UNIX_EPOCH;
        let now = event_at + TimeDelta::hours(1);
        assert_eq!(
            policy.next_attempt(1, event_at, now),
            Some(now + TimeDelta::seconds(10))
        );
        let late = event_at + TimeDelta::hours(24) - TimeDelta::seconds(5);
        assert_eq!(policy.next_attempt(1, event_at, late), None);
    }
}
