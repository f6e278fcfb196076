//! The `/export-center` HTTP API: one router, thin handlers, extractors for the request
//! context, and the single place where errors become `application/problem+json`.

mod artifacts;
mod body;
mod byte_range;
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
mod service;
mod state;
mod status_cache;

pub use context::{Caller, Scope};
pub use error::ApiError;
pub use event_hub::EventHub;
pub use event_streams::EventStreams;
pub use openapi::openapi_document;
pub use rate_limit::RateLimiter;
pub use router::{admin_router, probe_router, router};
pub use service::ReadinessCache;
pub use state::{ApiConfig, AppState, ProfileRegistry};
