//! Publishing notifications on NATS (SPEC §16): the body on `export.run.<event>`.
//!
//! JetStream first, with the notification's id as `Nats-Msg-Id`, so a retry after a
//! lost acknowledgement is dropped by the stream's duplicate window and the stored
//! message is acknowledged before the delivery counts as done. When no stream captures
//! the subject (the server answers "no responders"), a plain publish followed by a
//! flush: core NATS subscribers then get it at least once. Either failure (the server
//! down, no acknowledgement in time) is a failed attempt, retried from the outbox.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use export_store::AttemptResult;
use tokio::sync::OnceCell;

/// A connection to `notifications.nats_url`, opened on first use and kept; the client
/// reconnects by itself after the server comes back.
pub(crate) struct NatsPublisher {
    url: String,
    timeout: Duration,
    client: OnceCell<async_nats::Client>,
}

impl NatsPublisher {
    pub(crate) fn new(url: String, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            client: OnceCell::new(),
        }
    }

    /// Publishes `body` on `subject` with `id`, at `now`.
    pub(crate) async fn attempt(
        &self,
        subject: &str,
        id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> AttemptResult {
        let started = Instant::now();
        let error = match tokio::time::timeout(self.timeout, self.publish(subject, id, body)).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err),
            Err(_) => Some(format!(
                "timeout: no acknowledgement within {}s",
                self.timeout.as_secs()
            )),
        };
        AttemptResult {
            at: now,
            duration: started.elapsed(),
            http_status: None,
            delivered: error.is_none(),
            error,
        }
    }

    async fn publish(&self, subject: &str, id: &str, body: &[u8]) -> Result<(), String> {
        let client = self
            .client
            .get_or_try_init(|| async {
                // Connects in the background, so a server that is down now is reached
                // when it comes up; until then publishing fails and is retried.
                async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connection_timeout(self.timeout)
                    .connect(self.url.as_str())
                    .await
            })
            .await
            .map_err(|err| format!("connect: {err}"))?;
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err("connect: the NATS server is not connected".to_owned());
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(self.timeout);
        let published = jetstream
            .publish_with_headers(subject.to_owned(), headers.clone(), body.to_vec().into())
            .await;
        let acked = match published {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        match acked {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound => {
                client
                    .publish_with_headers(subject.to_owned(), headers, body.to_vec().into())
                    .await
                    .map_err(|err| format!("publish: {err}"))?;
                client.flush().await.map_err(|err| format!("flush: {err}"))
            }
            Err(err) => Err(format!("jetstream: {err}")),
        }
    }
}
