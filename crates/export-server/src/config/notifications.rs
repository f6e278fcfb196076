//! `[notifications]`: the delivery of run notifications to webhooks and NATS (SPEC §16).

use std::time::Duration;

use anyhow::bail;
use export_core::RetryPolicy;
use serde::{Deserialize, Serialize};

/// How the outbox is delivered, by every process that runs workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// `nats://host:port`: every notification is also published on `export.run.<event>`.
    pub nats_url: Option<String>,
    /// How often the delivery task looks for work when it found none.
    pub poll_interval_ms: u64,
    /// How long a claimed delivery stays this process's before any other may take it
    /// over; longer than `timeout_seconds`.
    pub lease_seconds: u64,
    /// How long one attempt may take (connect, send, answer or acknowledgement).
    pub timeout_seconds: u64,
    /// The wait after the first failed attempt; it doubles after each failure.
    pub retry_initial_seconds: u64,
    /// The longest wait between two attempts.
    pub retry_max_seconds: u64,
    /// How long after its event a delivery is retried before it is dead-lettered.
    pub retry_window_seconds: u64,
    /// Deliveries claimed and sent at once by one process.
    pub batch: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        let retry = RetryPolicy::DEFAULT;
        Self {
            nats_url: None,
            poll_interval_ms: 1000,
            lease_seconds: 60,
            timeout_seconds: 10,
            retry_initial_seconds: retry.initial.as_secs(),
            retry_max_seconds: retry.max.as_secs(),
            retry_window_seconds: retry.window.as_secs(),
            batch: 16,
        }
    }
}

impl NotificationsConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("notifications.poll_interval_ms", self.poll_interval_ms),
            ("notifications.lease_seconds", self.lease_seconds),
            ("notifications.timeout_seconds", self.timeout_seconds),
            ("notifications.retry_initial_seconds", self.retry_initial_seconds),
            ("notifications.retry_max_seconds", self.retry_max_seconds),
            ("notifications.retry_window_seconds", self.retry_window_seconds),
            ("notifications.batch", u64::from(self.batch)),
        ] {
            if value == 0 {
                bail!("{key}: must be positive");
            }
        }
        if self.lease_seconds <= self.timeout_seconds {
            bail!("notifications.lease_seconds: must be longer than notifications.timeout_seconds");
        }
        if self.retry_max_seconds < self.retry_initial_seconds {
            bail!("notifications.retry_max_seconds: must be at least notifications.retry_initial_seconds");
        }
        if let Some(url) = &self.nats_url {
            let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://"));
            let authority_ok = rest.is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ']));
            if !authority_ok {
                bail!(
                    "notifications.nats_url: expected `nats://host:port` (or `tls://host:port`), got `{url}`"
                );
            }
        }
        Ok(())
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(self.retry_initial_seconds),
            max: Duration::from_secs(self.retry_max_seconds),
            window: Duration::from_secs(self.retry_window_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_settings_are_validated_naming_the_key() {
        let mut config = NotificationsConfig::default();
        assert!(config.validate().is_ok());
        config.nats_url = Some("http://127.0.0.1:4222".to_owned());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("notifications.nats_url:"), "{err}");
        config.nats_url = Some("nats://127.0.0.1:4222".to_owned());
        config.timeout_seconds = 60;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("notifications.lease_seconds:"), "{err}");
    }
}
