//! The state every handler sees: cheap to clone, every dependency visible in one struct.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use export_artifacts::ArtifactStore;
use export_auth::Authenticator;
use export_core::{Clock, EgressPolicy, Limits, Profile, ProfileId, RepositoryPrefixes, TenantId};
use export_distribution::{ObjectPublisher, UrlSigner};
use export_signing::Keyring;

use crate::event_hub::EventHub;
use crate::event_streams::EventStreams;
use crate::rate_limit::RateLimiter;
use crate::service::ReadinessCache;
use export_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

/// Settings of the HTTP surface.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The URL clients reach the service at (scheme, host and path prefix), used for
    /// absolute links; no trailing slash.
    pub public_base_url: String,
    pub limits: Limits,
    /// How long a signed download link lives (before rounding and the retention cap).
    pub link_lifetime: Duration,
    pub sealed: bool,
    /// Where outputs may be sent (SPEC §17): on an open site, no internal address the
    /// allowlist does not list; on a sealed site, the allowlist only.
    pub egress: EgressPolicy,
    /// The repositories each tenant may push to, per registry.
    pub repository_prefixes: RepositoryPrefixes,
    /// A `: keep-alive` comment on event streams this often.
    pub sse_keep_alive: Duration,
    /// An event stream that carried no event this long is closed.
    pub sse_idle_timeout: Duration,
    /// A request to an endpoint that does not stream is answered `408` after this long.
    pub request_timeout: Duration,
    /// The issuer's JWKS file, checked by readiness.
    pub jwks_file: Option<std::path::PathBuf>,
    /// Ended runs whose rendered status is kept in memory (`status_cache`).
    pub status_cache_entries: usize,
}

/// The profiles of every tenant, from configuration.
#[derive(Debug, Clone, Default)]
pub struct ProfileRegistry {
    profiles: BTreeMap<ProfileId, Profile>,
}

impl ProfileRegistry {
    pub fn new(profiles: impl IntoIterator<Item = Profile>) -> Self {
        Self {
            profiles: profiles
                .into_iter()
                .map(|profile| (profile.id.clone(), profile))
                .collect(),
        }
    }

    /// The tenant's profile with this id; never another tenant's.
    pub fn get(&self, tenant: &TenantId, id: &ProfileId) -> Option<&Profile> {
        self.profiles
            .get(id)
            .filter(|profile| &profile.id.tenant == tenant)
    }

    /// Every profile of every tenant.
    pub fn all(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The tenant's profiles sorted by id.
    pub fn for_tenant<'a>(&'a self, tenant: &'a TenantId) -> impl Iterator<Item = &'a Profile> + 'a {
        self.profiles
            .values()
            .filter(move |profile| &profile.id.tenant == tenant)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub artifacts: ArtifactStore,
    pub urls: Arc<UrlSigner>,
    pub profiles: Arc<ProfileRegistry>,
    /// Resolves `keyRef` and `kmsKey`, so a bad reference is refused at creation.
    pub keyring: Keyring,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ApiConfig>,
    pub metrics: Option<PrometheusHandle>,
    /// Verifies DPoP-bound access tokens; `None` only when authentication is disabled.
    pub auth: Option<Arc<Authenticator>>,
    pub rate_limiter: Arc<RateLimiter>,
    /// Fan-out of run events to SSE listeners.
    pub events: Arc<EventHub>,
    /// The open event streams: the per-tenant bound, and their end at shutdown.
    pub event_streams: Arc<EventStreams>,
    /// The last readiness result, shared by both listeners.
    pub readiness: Arc<ReadinessCache>,
    /// The bucket of `object` distributions, which presigns their links; `None` when
    /// the server has none.
    pub object: Option<ObjectPublisher>,
    /// Wakes the workers of this process when a run is queued.
    pub wake_workers: Arc<dyn Fn() + Send + Sync>,
}
