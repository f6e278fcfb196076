//! The OpenAPI 3.1 document, assembled from the handlers' `#[utoipa::path]` annotations
//! and the wire types' schemas, so it cannot drift from the code. It describes the
//! public listener; the operator listener's `/metrics` and detailed `/readyz` are in
//! docs/OPERATIONS.md.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Export Center",
        description = "Deterministic, signed, verifiable exports of a tenant's security evidence.",
        version = "0.9.0"
    ),
    paths(
        crate::profiles::list_profiles,
        crate::runs::create_run,
        crate::runs::list_runs,
        crate::runs::get_run,
        crate::runs::cancel_run,
        crate::events::stream_run_events,
        crate::distributions::get_distribution,
        crate::artifacts::download_artifact,
        crate::service::openapi_json,
        crate::service::healthz,
        crate::service::readyz,
    ),
    components(schemas(
        export_api_types::CreateRunRequest,
        export_api_types::RunAccepted,
        export_api_types::RunStatusResponse,
        export_api_types::RunList,
        export_api_types::ProfileList,
        export_api_types::Problem,
        export_api_types::DistributionResponse,
        export_api_types::ReadinessStatus,
    ))
)]
struct ApiDoc;

/// The document as pretty-printed JSON.
pub fn openapi_document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}
