//! Service endpoints: liveness, readiness (the bare status for the public listener, the
//! checks for the operator listener), metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;

use export_api_types::{MirrorImportState, Readiness, ReadinessCheck, ReadinessStatus};
use export_core::format_timestamp;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Alive")))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness, as the public listener answers it: the status alone, `503` while any check
/// fails. The checks and their details are on the operator listener.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = ReadinessStatus),
        (status = 503, description = "A check fails; the operator listener's `/readyz` says which", body = ReadinessStatus),
    )
)]
pub(crate) async fn readyz(State(app): State<AppState>) -> Response {
    let readiness = app.readiness.current(&app).await;
    let status = http_status(&readiness);
    let body = ReadinessStatus {
        status: readiness.status,
    };
    (status, Json(body)).into_response()
}

/// Readiness with every check and its detail (SPEC §11), for the operator listener:
/// details name profiles, keys and paths.
pub(crate) async fn readiness_details(State(app): State<AppState>) -> Response {
    let readiness = app.readiness.current(&app).await;
    (http_status(&readiness), Json(readiness)).into_response()
}

fn http_status(readiness: &Readiness) -> StatusCode {
    if readiness.status == READY {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

const READY: &str = "ready";

/// The last readiness result, kept for `ttl`: a probe within that time gets it without
/// checking again, so probes do not write to the artifact store (billed requests on S3)
/// or ping the database each time. Probes that come while a check runs wait for it
/// instead of starting their own.
pub struct ReadinessCache {
    ttl: Duration,
    last: Mutex<Option<(Instant, Readiness)>>,
}

impl ReadinessCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: Mutex::new(None),
        }
    }

    async fn current(&self, app: &AppState) -> Readiness {
        let mut last = self.last.lock().await;
        if let Some((checked_at, readiness)) = last.as_ref() {
            if checked_at.elapsed() < self.ttl {
                return readiness.clone();
            }
        }
        let readiness = check_readiness(app).await;
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }
}

async fn check_readiness(app: &AppState) -> Readiness {
    let database = match app.store.ping().await {
        Ok(()) => check("database", true, "reachable"),
        Err(err) => check("database", false, &format!("{err:#}")),
    };
    let artifacts = match app.artifacts.check_writable().await {
        Ok(()) => check("artifact_store", true, "writable"),
        Err(err) => check("artifact_store", false, &err.to_string()),
    };
    let checks = vec![
        database,
        artifacts,
        signing_keys(app),
        jwks(app),
        url_signing_keys(app),
    ];
    let ready = checks.iter().all(|check| check.ok);
    Readiness {
        status: if ready { READY } else { "unready" }.to_owned(),
        sealed: app.config.sealed,
        checks,
        mirror_imports: mirror_imports(app).await,
    }
}

/// The last mirror import of every tenant (SPEC §15); a store that cannot say is already
/// told by the database check.
async fn mirror_imports(app: &AppState) -> BTreeMap<String, MirrorImportState> {
    let now = app.clock.now();
    let imports = app.store.latest_mirror_imports().await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "reading the mirror imports for readiness failed");
        Vec::new()
    });
    imports
        .into_iter()
        .map(|(tenant, import)| {
            let state = MirrorImportState {
                generation: import.generation,
                mode: import.mode.to_string(),
                watermark: import.watermark,
                manifest_digest: import.manifest_digest.to_string(),
                imported_at: format_timestamp(import.imported_at),
                expires_at: format_timestamp(import.expires_at),
                expired: import.expires_at <= now,
            };
            (tenant.to_string(), state)
        })
        .collect()
}

/// Every profile that signs by default can load the key it signs with.
fn signing_keys(app: &AppState) -> ReadinessCheck {
    let mut loaded = 0;
    let mut failures = Vec::new();
    for profile in app.profiles.all() {
        let signing = &profile.definition.signing;
        let Some(key_ref) = signing
            .default_key
            .as_ref()
            .or(signing.keys.first())
            .filter(|_| signing.enabled)
        else {
            continue;
        };
        match app.keyring.signing_key(&profile.id.tenant, key_ref) {
            Ok(_) => loaded += 1,
            Err(err) => failures.push(format!("{}: {err}", profile.id)),
        }
    }
    if failures.is_empty() {
        check(
            "signing_keys",
            true,
            &format!("{loaded} default signing keys load"),
        )
    } else {
        check("signing_keys", false, &failures.join("; "))
    }
}

fn jwks(app: &AppState) -> ReadinessCheck {
    match (&app.auth, &app.config.jwks_file) {
        (None, _) => check("jwks", true, "authentication is disabled"),
        (Some(_), None) => check("jwks", true, "keys loaded"),
        (Some(_), Some(path)) => match std::fs::read(path) {
            Ok(bytes) if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() => {
                check("jwks", true, &format!("{} readable", path.display()))
            }
            Ok(_) => check("jwks", false, &format!("{} is not JSON", path.display())),
            Err(err) => check("jwks", false, &format!("{}: {err}", path.display())),
        },
    }
}

fn url_signing_keys(app: &AppState) -> ReadinessCheck {
    check(
        "url_signing_keys",
        true,
        &format!("signing links with key `{}`", app.urls.signing_kid()),
    )
}

fn check(name: &str, ok: bool, detail: &str) -> ReadinessCheck {
    ReadinessCheck {
        name: name.to_owned(),
        ok,
        detail: detail.to_owned(),
    }
}

/// Prometheus text exposition, for the operator listener: labels name tenants'
/// profiles.
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
