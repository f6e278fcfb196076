//! Operator endpoints: liveness, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use export_api_types::{Readiness, ReadinessCheck};

use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Alive")))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: `503` while any check fails.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A check fails", body = Readiness),
    )
)]
pub(crate) async fn readyz(State(app): State<AppState>) -> Response {
    let database = match app.store.ping().await {
        Ok(()) => check("database", true, "reachable"),
        Err(err) => check("database", false, &format!("{err:#}")),
    };
    let artifacts = match app.artifacts.check_writable().await {
        Ok(()) => check("artifact_store", true, "writable"),
        Err(err) => check("artifact_store", false, &err.to_string()),
    };
    let checks = vec![database, artifacts];
    let ready = checks.iter().all(|check| check.ok);
    let body = Readiness {
        status: if ready { "ready" } else { "unready" }.to_owned(),
        sealed: app.config.sealed,
        checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn check(name: &str, ok: bool, detail: &str) -> ReadinessCheck {
    ReadinessCheck {
        name: name.to_owned(),
        ok,
        detail: detail.to_owned(),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    if let Ok(depth) = app.store.queue_depth().await {
        metrics::gauge!("export_queue_depth").set(depth as f64);
    }
    let text = app
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this surface, generated from the handlers.
#[utoipa::path(get, path = "/export-center/openapi.json", tag = "service", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_document(),
    )
        .into_response()
}
