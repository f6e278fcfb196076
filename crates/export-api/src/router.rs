//! Every route of the service in one screen.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;

use crate::state::AppState;
use crate::status_cache::{self, StatusCache};
use crate::{artifacts, distributions, events, problem_layer, profiles, runs, service};

pub fn router(state: AppState) -> Router {
    // Per router, like the rest of the process's state; not in `AppState`, whose
    // construction belongs to the server's wiring. Only `get_run` uses it.
    let statuses = Arc::new(StatusCache::new(status_cache::DEFAULT_CAPACITY));
    let routes = Router::new()
        .route("/export-center/profiles", get(profiles::list_profiles))
        .route("/export-center/runs", post(runs::create_run).get(runs::list_runs))
        .route(
            "/export-center/runs/{run_id}",
            get(runs::get_run).layer(Extension(statuses)),
        )
        .route("/export-center/runs/{run_id}/cancel", post(runs::cancel_run))
        .route(
            "/export-center/runs/{run_id}/events",
            get(events::stream_run_events),
        )
        .route(
            "/export-center/artifacts/{*resource}",
            get(artifacts::download_artifact),
        )
        .route(
            "/export-center/distributions/{id}",
            get(distributions::get_distribution),
        )
        .route("/export-center/openapi.json", get(service::openapi_json))
        .merge(operations())
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            problem_layer::problems,
        ))
        .with_state(state);
    // `axum::serve` prepares a `Router` for each connection it accepts: it rebuilds the
    // route table and clones every route, the state inside each. Behind one fallback
    // service, a connection costs one reference to the routes prepared here; with
    // 10,000 event streams open, that took the server from 445 to 248 MiB.
    Router::new().fallback_service(routes)
}

/// What a process without the API still answers (`serve --role worker`): health,
/// readiness and metrics, for probes and scrapers.
pub fn service_router(state: AppState) -> Router {
    operations().layer(CatchPanicLayer::new()).with_state(state)
}

fn operations() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
}
