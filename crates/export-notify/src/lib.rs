#![doc = include_str!("../README.md")]

mod nats;
mod signature;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use export_core::{Clock, RetryPolicy};
use export_egress::EgressProxy;
use export_store::{ClaimedDelivery, DeliveryState, DeliveryTarget, Notification, Run, Store, StoreError};
use futures::future::join_all;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use signature::{sign, signature_header, SIGNATURE_HEADER};

use crate::nats::NatsPublisher;
use crate::webhook::WebhookRequest;

/// Renders a notification's body (`export_api::notification_body`): the run's status as
/// the API shows it, which only the API knows how to render.
pub type Renderer = Arc<dyn Fn(&Notification, &Run) -> Vec<u8> + Send + Sync>;

/// How the delivery task works (`[notifications]` of the configuration).
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Who claims: the process's worker id.
    pub owner: String,
    /// How long a claimed delivery is this process's: longer than an attempt can take
    /// (`timeout`), so a lease lapses only when its process is gone.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// How long the task sleeps when there was nothing to do.
    pub poll_interval: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Deliveries claimed (and sent concurrently) at a time.
    pub batch: u32,
    /// `notifications.nats_url`: every notification is also published there.
    pub nats_url: Option<String>,
}

/// The delivery task: cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    egress: EgressProxy,
    clock: Arc<dyn Clock>,
    config: NotifierConfig,
    nats: Option<NatsPublisher>,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        egress: EgressProxy,
        clock: Arc<dyn Clock>,
        config: NotifierConfig,
    ) -> Self {
        let nats = config
            .nats_url
            .clone()
            .map(|url| NatsPublisher::new(url, config.timeout));
        Self {
            inner: Arc::new(Inner {
                store,
                egress,
                clock,
                config,
                nats,
            }),
        }
    }

    /// Runs the task until `shutdown`: renders waiting notifications, then sends what is
    /// due; sleeps `poll_interval` when a round found nothing. A store error is logged
    /// and the round tried again after the interval.
    pub fn spawn(&self, render: Renderer, shutdown: CancellationToken) -> JoinHandle<()> {
        let notifier = self.clone();
        tokio::spawn(async move {
            loop {
                let busy = match notifier.run_once(&render).await {
                    Ok(done) => done > 0,
                    Err(err) => {
                        tracing::warn!(error = %err, "notification delivery round failed: {err}");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(notifier.inner.config.poll_interval) => {}
                }
            }
        })
    }

    /// One round: prepares every waiting notification, then claims one batch of due
    /// deliveries and attempts each. How many notifications and attempts it handled.
    pub async fn run_once(&self, render: &Renderer) -> Result<usize, StoreError> {
        let prepared = self.prepare(render).await?;
        let inner = &self.inner;
        let config = &inner.config;
        let claimed = inner
            .store
            .claim_deliveries(&config.owner, inner.clock.now(), config.lease, config.batch)
            .await?;
        let attempts = claimed.iter().map(|delivery| self.deliver(delivery));
        let results = join_all(attempts).await;
        let handled = results.len();
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(prepared + handled)
    }

    /// Renders and stores the body of every waiting notification, with its deliveries.
    async fn prepare(&self, render: &Renderer) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let waiting = inner.store.unprepared_notifications(100).await?;
        for notification in &waiting {
            let tenant = notification.tenant();
            let Some(run) = inner.store.get_run(tenant, &notification.run_id).await? else {
                return Err(StoreError::corrupt(
                    "notification",
                    format!("{} names no run", notification.id),
                ));
            };
            let body = render(notification, &run);
            let nats = inner.nats.is_some();
            let now = inner.clock.now();
            if inner
                .store
                .prepare_notification(tenant, &notification.id, &body, nats, now)
                .await?
            {
                tracing::debug!(tenant.id = %tenant, notification.id = %notification.id, "prepared notification {}", notification.id);
            }
        }
        Ok(waiting.len())
    }

    async fn deliver(&self, delivery: &ClaimedDelivery) -> Result<(), StoreError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let (result, destination) = match &delivery.target {
            DeliveryTarget::Webhook { id, url, secret } => {
                let request = WebhookRequest {
                    url,
                    secret: secret.expose(),
                    notification_id: &delivery.notification_id,
                    event: delivery.event,
                    body: &delivery.body,
                };
                let result = webhook::attempt(&inner.egress, &request, now, inner.config.timeout).await;
                (result, id.to_string())
            }
            DeliveryTarget::Nats => {
                let subject = delivery.event.subject();
                let Some(nats) = &inner.nats else {
                    // Made while NATS was configured; this process has no server to
                    // publish to, so it leaves the delivery to its lease.
                    return Ok(());
                };
                let result = nats
                    .attempt(&subject, &delivery.notification_id, &delivery.body, now)
                    .await;
                (result, subject)
            }
        };
        let state = inner
            .store
            .record_delivery_attempt(&delivery.tenant, delivery, &result, &inner.config.retry)
            .await?;
        log_attempt(delivery, &destination, &result, state);
        Ok(())
    }
}

fn log_attempt(
    delivery: &ClaimedDelivery,
    destination: &str,
    result: &export_store::AttemptResult,
    state: Option<DeliveryState>,
) {
    let id = &delivery.notification_id;
    let tenant = &delivery.tenant;
    match (state, &result.error) {
        (None, _) => {
            tracing::info!(tenant.id = %tenant, notification.id = %id, "delivery of {id} to {destination} was taken over; its attempt is not recorded")
        }
        (Some(DeliveryState::Delivered { .. }), _) => {
            tracing::info!(tenant.id = %tenant, notification.id = %id, "delivered {id} to {destination}")
        }
        (Some(DeliveryState::Pending { next_attempt_at }), error) => {
            tracing::info!(tenant.id = %tenant, notification.id = %id, error = ?error, "delivery of {id} to {destination} failed; next attempt at {next_attempt_at}")
        }
        (Some(DeliveryState::DeadLettered { .. }), error) => {
            tracing::warn!(tenant.id = %tenant, notification.id = %id, error = ?error, "delivery of {id} to {destination} dead-lettered after its retry window")
        }
    }
}
