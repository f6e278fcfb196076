//! `/export-center/webhooks` (SPEC §16): register, list, show, delete a tenant's
//! webhooks, rotate their secret, and list their deliveries; and the one rendering of a
//! notification's body, which the delivery task stores and sends.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use export_api_types::{
    CreateWebhookRequest, DeliveryAttemptResponse, DeliveryList, DeliveryResponse, NotificationBody, Problem,
    WebhookList, WebhookResponse,
};
use export_core::{
    check_webhook_url, format_timestamp, NotificationEvent, Secret, TenantId, WebhookId, WebhookUrlError,
};
use export_store::{DeliveryRecord, DeliveryState, NewWebhook, Notification, Run, Webhook};

use crate::body::{JsonBody, Path};
use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::links::Links;
use crate::presenter::run_status;
use crate::state::AppState;

/// The most deliveries one listing shows.
const DELIVERY_PAGE: u32 = 100;

/// Registers a webhook; its secret (given, or generated) is in this answer only.
#[utoipa::path(
    post,
    path = "/export-center/webhooks",
    tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; `secret` is shown this once", body = WebhookResponse),
        (status = 415, description = "Content type is not JSON", body = Problem),
    )
)]
pub(crate) async fn create_webhook(
    State(app): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookResponse>), ApiError> {
    caller.require(Scope::ExportAdmin)?;
    let new = new_webhook(&app, &caller.tenant, body.value)?;
    let created = app.store.create_webhook(&caller.tenant, &new).await?;
    tracing::info!(tenant.id = %caller.tenant, webhook.id = %created.id, "registered webhook {}", created.id);
    let mut response = webhook_response(&created);
    response.secret = Some(new.secret.expose().to_owned());
    Ok((StatusCode::CREATED, Json(response)))
}

/// The tenant's webhooks, oldest first, without their secrets.
#[utoipa::path(
    get,
    path = "/export-center/webhooks",
    tag = "webhooks",
    responses((status = 200, description = "The tenant's webhooks", body = WebhookList))
)]
pub(crate) async fn list_webhooks(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let webhooks = app.store.webhooks(&caller.tenant).await?;
    let items = webhooks.iter().map(webhook_response).collect();
    Ok(Json(WebhookList { items }))
}

/// One webhook, without its secret.
#[utoipa::path(
    get,
    path = "/export-center/webhooks/{webhookId}",
    tag = "webhooks",
    params(("webhookId" = String, Path, description = "export-webhook::<tenant>::<hex>")),
    responses(
        (status = 200, description = "The webhook", body = WebhookResponse),
        (status = 404, description = "No such webhook for this tenant", body = Problem),
    )
)]
pub(crate) async fn get_webhook(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookResponse>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let id = visible_id(&caller, &id)?;
    let webhook = app
        .store
        .get_webhook(&caller.tenant, &id)
        .await?
        .ok_or_else(|| not_found(&id.to_string()))?;
    Ok(Json(webhook_response(&webhook)))
}

/// Deletes the webhook, its pending deliveries and its delivery history.
#[utoipa::path(
    delete,
    path = "/export-center/webhooks/{webhookId}",
    tag = "webhooks",
    params(("webhookId" = String, Path, description = "export-webhook::<tenant>::<hex>")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook for this tenant", body = Problem),
    )
)]
pub(crate) async fn delete_webhook(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::ExportAdmin)?;
    let webhook_id = visible_id(&caller, &id)?;
    if !app.store.delete_webhook(&caller.tenant, &webhook_id).await? {
        return Err(not_found(&id));
    }
    tracing::info!(tenant.id = %caller.tenant, webhook.id = %webhook_id, "deleted webhook {webhook_id}");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the webhook's secret with a generated one, shown in this answer only; every
/// attempt from now on, retries included, is signed with it.
#[utoipa::path(
    post,
    path = "/export-center/webhooks/{webhookId}/rotate-secret",
    tag = "webhooks",
    params(("webhookId" = String, Path, description = "export-webhook::<tenant>::<hex>")),
    responses(
        (status = 200, description = "The webhook with its new `secret`, shown this once", body = WebhookResponse),
        (status = 404, description = "No such webhook for this tenant", body = Problem),
    )
)]
pub(crate) async fn rotate_webhook_secret(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookResponse>, ApiError> {
    caller.require(Scope::ExportAdmin)?;
    let webhook_id = visible_id(&caller, &id)?;
    let secret = generated_secret();
    if !app
        .store
        .rotate_webhook_secret(&caller.tenant, &webhook_id, &secret)
        .await?
    {
        return Err(not_found(&id));
    }
    let webhook = app.store.get_webhook(&caller.tenant, &webhook_id).await?;
    let webhook = webhook.ok_or_else(|| not_found(&id))?;
    tracing::info!(tenant.id = %caller.tenant, webhook.id = %webhook_id, "rotated the secret of webhook {webhook_id}");
    let mut response = webhook_response(&webhook);
    response.secret = Some(secret.expose().to_owned());
    Ok(Json(response))
}

/// The webhook's deliveries, newest event first (at most 100), with every attempt.
#[utoipa::path(
    get,
    path = "/export-center/webhooks/{webhookId}/deliveries",
    tag = "webhooks",
    params(("webhookId" = String, Path, description = "export-webhook::<tenant>::<hex>")),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 404, description = "No such webhook for this tenant", body = Problem),
    )
)]
pub(crate) async fn list_deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let webhook_id = visible_id(&caller, &id)?;
    let records = match app
        .store
        .webhook_deliveries(&caller.tenant, &webhook_id, DELIVERY_PAGE)
        .await
    {
        Err(export_store::StoreError::NotFound { .. }) => return Err(not_found(&id)),
        found => found?,
    };
    let items = records.iter().map(delivery_response).collect();
    Ok(Json(DeliveryList { items }))
}

/// The body of a notification: `{id, type, createdAt, tenant, data}`, `data` being the
/// run's status as `GET /export-center/runs/{runId}` renders it now.
pub fn notification_body(app: &AppState, notification: &Notification, run: &Run) -> Vec<u8> {
    let body = NotificationBody {
        id: notification.id.clone(),
        event_type: notification.event.as_str().to_owned(),
        created_at: format_timestamp(notification.created_at),
        tenant: notification.tenant().to_string(),
        data: run_status(&Links::new(app), run, app.clock.now()),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

fn new_webhook(
    app: &AppState,
    tenant: &TenantId,
    request: CreateWebhookRequest,
) -> Result<NewWebhook, ApiError> {
    check_webhook_url(&app.config.egress, &request.url).map_err(|err| match err {
        WebhookUrlError::Invalid(reason) => ApiError::invalid_field("url", reason),
        WebhookUrlError::Egress(reason) => ApiError::egress_blocked("url", reason),
    })?;
    let events = parse_events(&request.events)?;
    let secret = match request.secret {
        Some(secret) => check_secret(secret)?,
        None => generated_secret(),
    };
    Ok(NewWebhook {
        id: WebhookId::new(tenant.clone(), rand::random()),
        url: request.url,
        events,
        secret,
        created_at: app.clock.now(),
    })
}

fn parse_events(names: &[String]) -> Result<Vec<NotificationEvent>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::invalid_field("events", "name at least one event"));
    }
    let mut events = names
        .iter()
        .map(|name| {
            NotificationEvent::parse(name).ok_or_else(|| {
                let known: Vec<&str> = NotificationEvent::ALL
                    .iter()
                    .map(|event| event.as_str())
                    .collect();
                ApiError::invalid_field(
                    "events",
                    format!("unknown event `{name}`; expected one of {}", known.join(", ")),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    events.sort();
    events.dedup();
    Ok(events)
}

fn check_secret(secret: String) -> Result<Secret, ApiError> {
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    if !(16..=256).contains(&secret.len()) || !printable {
        return Err(ApiError::invalid_field(
            "secret",
            "must be 16 to 256 printable ASCII characters without spaces",
        ));
    }
    Ok(Secret::new(secret))
}

/// 32 random bytes in lowercase hex, prefixed so it is recognizable: `whsec_…`.
fn generated_secret() -> Secret {
    Secret::new(format!("whsec_{}", hex_encode(&rand::random::<[u8; 32]>())))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id, if it is well formed and names a webhook of the caller's tenant.
fn visible_id(caller: &Caller, id: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(id)
        .ok()
        .filter(|id| id.tenant == caller.tenant)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("webhook `{}`", id.chars().take(120).collect::<String>()))
}

fn webhook_response(webhook: &Webhook) -> WebhookResponse {
    WebhookResponse {
        id: webhook.id.to_string(),
        url: webhook.url.clone(),
        events: webhook
            .events
            .iter()
            .map(|event| event.as_str().to_owned())
            .collect(),
        created_at: format_timestamp(webhook.created_at),
        secret: None,
    }
}

fn delivery_response(record: &DeliveryRecord) -> DeliveryResponse {
    let stamp = |at: DateTime<Utc>| Some(format_timestamp(at));
    let (state, next_attempt_at, delivered_at, dead_lettered_at) = match record.state {
        DeliveryState::Pending { next_attempt_at } => ("pending", stamp(next_attempt_at), None, None),
        DeliveryState::Delivered { at } => ("delivered", None, stamp(at), None),
        DeliveryState::DeadLettered { at } => ("deadLettered", None, None, stamp(at)),
    };
    DeliveryResponse {
        notification_id: record.notification_id.clone(),
        event: record.event.as_str().to_owned(),
        run_id: record.run_id.to_string(),
        created_at: format_timestamp(record.event_at),
        state: state.to_owned(),
        next_attempt_at,
        delivered_at,
        dead_lettered_at,
        attempts: record
            .attempts
            .iter()
            .map(|attempt| DeliveryAttemptResponse {
                attempt: attempt.attempt,
                at: format_timestamp(attempt.at),
                duration_ms: attempt.duration_ms,
                http_status: attempt.http_status,
                error: attempt.error.clone(),
            })
            .collect(),
    }
}
