//! Every route of the service in one screen: the public listener's API and probes, and
//! the operator listener's metrics and readiness details.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::state::AppState;
use crate::status_cache::StatusCache;
use crate::{artifacts, distributions, events, problem_layer, profiles, runs, service, webhooks};

/// The public listener of an API process: the `/export-center` API, `/healthz` and the
/// bare `/readyz`.
pub fn router(state: AppState) -> Router {
    // Per router, like the rest of the process's state; not in `AppState`, whose
    // construction belongs to the server's wiring. Only `get_run` uses it.
    let statuses = Arc::new(StatusCache::new(state.config.status_cache_entries));
    let bounded = Router::new()
        .route(
            "/export-center/profiles",
            get(profiles::list_profiles).post(profiles::create_profile),
        )
        .route(
            "/export-center/profiles/{profile_id}",
            get(profiles::get_profile)
                .put(profiles::update_profile)
                .delete(profiles::delete_profile),
        )
        .route(
            "/export-center/profiles/{profile_id}/revisions",
            get(profiles::list_revisions),
        )
        .route("/export-center/runs", post(runs::create_run).get(runs::list_runs))
        .route(
            "/export-center/runs/{run_id}",
            get(runs::get_run).layer(Extension(statuses)),
        )
        .route("/export-center/runs/{run_id}/cancel", post(runs::cancel_run))
        .route(
            "/export-center/distributions/{id}",
            get(distributions::get_distribution),
        )
        .route(
            "/export-center/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route(
            "/export-center/webhooks/{webhook_id}",
            get(webhooks::get_webhook).delete(webhooks::delete_webhook),
        )
        .route(
            "/export-center/webhooks/{webhook_id}/rotate-secret",
            post(webhooks::rotate_webhook_secret),
        )
        .route(
            "/export-center/webhooks/{webhook_id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route("/export-center/openapi.json", get(service::openapi_json))
        .merge(probes());
    // Event streams and downloads last as long as the client reads: the idle timeout of
    // their connection bounds them, and streams end with their token.
    let streaming = Router::new()
        .route(
            "/export-center/runs/{run_id}/events",
            get(events::stream_run_events),
        )
        .route(
            "/export-center/artifacts/{*resource}",
            get(artifacts::download_artifact),
        );
    finish(bounded.layer(request_timeout(&state)).merge(streaming), state)
}

/// The public listener of a process without the API (`serve --role worker`): `/healthz`
/// and the bare `/readyz`, for probes.
pub fn probe_router(state: AppState) -> Router {
    let routes = probes().layer(request_timeout(&state));
    finish(routes, state)
}

/// The operator listener (`server.admin_listen`): `/healthz`, `/readyz` with every
/// check's detail, and `/metrics`, whose labels name tenants' profiles (SPEC §17).
pub fn admin_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readiness_details))
        .route("/metrics", get(service::metrics))
        .layer(request_timeout(&state));
    finish(routes, state)
}

fn probes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
}

/// A handler still working after `request_timeout` is dropped and answered `408`.
fn request_timeout(state: &AppState) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.config.request_timeout)
}

/// The layers every listener has: problem bodies, trace ids and request metrics outside,
/// panics caught inside.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            problem_layer::problems,
        ))
        .with_state(state)
}
