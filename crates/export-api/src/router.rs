//! Every route of the service in one screen.

use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::state::AppState;
use crate::{artifacts, distributions, events, problem_layer, profiles, runs, service};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/export-center/profiles", get(profiles::list_profiles))
        .route("/export-center/runs", post(runs::create_run).get(runs::list_runs))
        .route("/export-center/runs/{run_id}", get(runs::get_run))
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
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            problem_layer::problems,
        ))
        .with_state(state)
}
