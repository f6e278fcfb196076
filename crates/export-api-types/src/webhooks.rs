//! The bodies of `/export-center/webhooks` and of the notifications sent to webhooks and
//! NATS (SPEC §16).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::RunStatusResponse;

/// `POST /export-center/webhooks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://…`; plain `http://` only to a host `egress_allowlist` lists.
    #[schema(example = "https://hooks.example.com/export-center")]
    pub url: String,
    /// One or more of `run.succeeded`, `run.failed`, `run.cancelled`, `run.expired`.
    #[schema(example = json!(["run.succeeded", "run.failed"]), min_items = 1)]
    pub events: Vec<String>,
    /// 16 to 256 printable ASCII characters; generated (and returned once) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A webhook. `secret` is present only in the answers of its creation and of a
/// rotation, and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookResponse {
    #[schema(example = "export-webhook::tenant-default::3f2a9c1d0b7e6a54")]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /export-center/webhooks`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub items: Vec<WebhookResponse>,
}

/// `GET /export-center/webhooks/{webhookId}/deliveries`: newest event first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub items: Vec<DeliveryResponse>,
}

/// One notification's delivery to the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResponse {
    /// The notification's `id`, as in its body.
    pub notification_id: String,
    /// `run.succeeded`, `run.failed`, `run.cancelled` or `run.expired`.
    pub event: String,
    pub run_id: String,
    /// When the run ended (or expired).
    pub created_at: String,
    /// `pending`, `delivered` or `deadLettered`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered_at: Option<String>,
    pub attempts: Vec<DeliveryAttemptResponse>,
}

/// One attempt: the receiver's HTTP status, or the class of the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttemptResponse {
    pub attempt: u32,
    pub at: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of every notification, to webhooks and on NATS: rendered once per event,
/// so every retry carries the same bytes and the same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationBody {
    /// `<runId>/<type>`: the same on every retry and replica.
    pub id: String,
    /// `run.succeeded`, `run.failed`, `run.cancelled` or `run.expired`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the run ended (or expired).
    pub created_at: String,
    pub tenant: String,
    /// The run's status, as `GET /export-center/runs/{runId}` renders it.
    pub data: RunStatusResponse,
}
