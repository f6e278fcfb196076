//! The rows of webhooks and of the notification outbox (SPEC §16), in domain types.

use std::time::Duration;

use chrono::{DateTime, Utc};
use export_core::{NotificationEvent, RunId, Secret, TenantId, WebhookId};

/// A tenant's webhook as stored; its secret is read only by the delivery
/// ([`DeliveryTarget::Webhook`]), never listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    /// Sorted, each once.
    pub events: Vec<NotificationEvent>,
    pub created_at: DateTime<Utc>,
}

/// A webhook to register, with the secret its deliveries are signed with.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<NotificationEvent>,
    pub secret: Secret,
    pub created_at: DateTime<Utc>,
}

/// A notification whose body has not been rendered yet: written in the transaction
/// that ended (or expired) its run, so none is lost and none is made twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `<run id>/<event>`: a run ends once and expires once, so the id is unique and the
    /// same on every replica (the NATS `Nats-Msg-Id`, the body's `id`).
    pub id: String,
    pub run_id: RunId,
    pub event: NotificationEvent,
    pub created_at: DateTime<Utc>,
}

impl Notification {
    pub fn id_of(run_id: &RunId, event: NotificationEvent) -> String {
        format!("{run_id}/{event}")
    }

    pub fn tenant(&self) -> &TenantId {
        &self.run_id.tenant
    }
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryTarget {
    Webhook {
        id: WebhookId,
        url: String,
        secret: Secret,
    },
    /// The NATS server of `notifications.nats_url`.
    Nats,
}

/// A delivery claimed under a lease: until `lease_until` no other claimant gets it, and
/// only this claim (`claim`) may record its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub key: i64,
    /// Which claim of the delivery this is (1, 2, 3 …): a claimant whose lease lapsed
    /// and was taken over records nothing.
    pub claim: i64,
    pub tenant: TenantId,
    pub notification_id: String,
    pub event: NotificationEvent,
    pub event_at: DateTime<Utc>,
    /// The body rendered once for every delivery and retry of the notification.
    pub body: Vec<u8>,
    pub target: DeliveryTarget,
    /// Failed attempts so far.
    pub failures: u32,
    pub lease_until: DateTime<Utc>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub at: DateTime<Utc>,
    pub duration: Duration,
    /// The HTTP status the receiver answered (webhooks).
    pub http_status: Option<u16>,
    /// The class of a failure (`timeout`, `connect`, `egress_blocked`, `http_status`, …),
    /// with at most a sanitized excerpt of what the remote side said.
    pub error: Option<String>,
    pub delivered: bool,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending {
        next_attempt_at: DateTime<Utc>,
    },
    Delivered {
        at: DateTime<Utc>,
    },
    /// No attempt succeeded within the retry window; no further attempt is made.
    DeadLettered {
        at: DateTime<Utc>,
    },
}

/// One recorded attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// A webhook's delivery of one notification, with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub notification_id: String,
    pub event: NotificationEvent,
    pub run_id: RunId,
    pub event_at: DateTime<Utc>,
    pub state: DeliveryState,
    pub attempts: Vec<DeliveryAttempt>,
}
