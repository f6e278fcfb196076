//! The `/export-center` HTTP API: one router, thin handlers, extractors for the request
//! context, and the single place where errors become `application/problem+json`.

mod artifacts;
mod body;
mod byte_range;
mod catalog;
mod conditional;
mod context;
mod creation;
mod distributions;
mod error;
mod event_hub;
mod event_streams;
mod events;
mod links;
mod openapi;
mod presenter;
mod problem_layer;
mod profiles;
mod rate_limit;
mod router;
mod runs;
mod scheduler;
mod service;
mod state;
mod status_cache;
mod webhooks;

pub use catalog::active_profiles;
pub use context::{Caller, Scope};
pub use error::ApiError;
pub use event_hub::EventHub;
pub use event_streams::EventStreams;
pub use openapi::openapi_document;
pub use rate_limit::RateLimiter;
pub use router::{admin_router, probe_router, router};
pub use scheduler::{scheduled_profiles, FireOutcome, Scheduler, SCHEDULE_FIRES_METRIC};
pub use service::ReadinessCache;
pub use state::{ApiConfig, AppState, ProfileRegistry};
pub use webhooks::notification_body;

/// The pure parsers of the download route, for the fuzz targets in `fuzz/`
/// (docs/reliability.md): no server, no store. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use axum::extract::Query;
    use axum::http::Uri;
    use chrono::{DateTime, Utc};
    use export_core::RunId;
    use export_distribution::UrlSigner;

    use crate::ApiError;

    pub use crate::byte_range::RangeRequest;

    /// What `GET /export-center/artifacts/…` checks of its request target before it reads
    /// anything, in the handler's order: the query (`expires`, `kid`, `sig`, as its extractor
    /// reads it), the path, then the signature and expiry against `urls` at `now`. The run,
    /// the output path and the expiry (Unix seconds) of a link that passes.
    pub fn check_download_link(
        urls: &UrlSigner,
        uri: &Uri,
        now: DateTime<Utc>,
    ) -> Result<(RunId, String, i64), ApiError> {
        let Query(query) = Query::try_from_uri(uri)?;
        crate::artifacts::check_link(urls, uri.path(), query, now)
    }
}
