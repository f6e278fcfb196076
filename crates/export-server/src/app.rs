//! The one place where things are wired together: configuration in, a running service
//! (HTTP API and workers sharing one store and artifact store) out.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use export_api::{
    ApiConfig, AppState, EventHub, EventStreams, ProfileRegistry, RateLimiter, ReadinessCache, Scheduler,
};
use export_artifacts::ArtifactStore;
use export_auth::dev::DevIssuer;
use export_auth::{
    AuthConfig, Authenticator, FileJwks, JwksSource, MemoryReplayCache, NonceSource, ReplayCache, UrlJwks,
};
use export_core::{Clock, SystemClock};
use export_distribution::{ObjectPublisher, UrlSigner, UrlSigningKey};
use export_egress::EgressProxy;
use export_notify::{Notifier, NotifierConfig, Renderer};
use export_oci::OciPublisher;
use export_runner::{EventNotifier, Runner, RunnerConfig};
use export_signing::Keyring;
use export_store::Store;
use export_store_postgres::PostgresStore;
use export_store_sqlite::SqliteStore;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{redact_password, AuthMode, Config};
use crate::connections::{self, ConnectionLimits};
use crate::data_dir::{create_private_dir, local_url_signing_key};
use crate::replay::DatabaseReplayCache;
use crate::telemetry;

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Api,
    Worker,
    All,
}

/// A built service, ready to serve.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub state: AppState,
    pub runner: Runner,
    /// Delivers run notifications (webhooks, NATS) in processes that run workers.
    pub notifier: Notifier,
}

impl App {
    /// Opens the store and artifact store, loads keys and profiles; fails early with
    /// the reason and the configuration key.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // The system clock counts whole seconds; the start is taken to the nanosecond, so
        // that a proof an earlier process accepted in this very second is told apart.
        Self::build_started(config, Arc::new(SystemClock), Utc::now()).await
    }

    /// Like [`App::build`], on `clock`, and started at its current time.
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let started = clock.now();
        Self::build_started(config, clock, started).await
    }

    async fn build_started(
        config: Config,
        clock: Arc<dyn Clock>,
        started: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        // The one rustls provider (ring) before any HTTP client is built (main does this
        // too; an embedding, such as the tests, may start here).
        export_egress::install_crypto_provider();
        let data_dir = &config.server.data_dir;
        create_private_dir(data_dir)
            .with_context(|| format!("server.data_dir: creating {}", data_dir.display()))?;
        let store = open_store(&config).await?;
        // Every outbound connection (OCI, object storage, JWKS) goes through this proxy,
        // which applies the egress rules after resolving each destination.
        let egress = EgressProxy::start(config.egress_policy())
            .await
            .context("egress_allowlist: starting the egress proxy")?;
        let artifacts =
            ArtifactStore::from_url_with_s3(&config.artifacts_url(), config.artifacts.s3.as_ref())
                .context("artifacts.url")?;
        let object = config
            .distribution
            .object
            .as_ref()
            .map(|object| ObjectPublisher::new_through(&object.s3, &object.bucket, &object.prefix, &egress))
            .transpose()
            .context("distribution.object")?;
        let urls = Arc::new(url_signer(&config)?);
        let profiles = Arc::new(ProfileRegistry::new(config.profiles()?));
        let keyring = Keyring::new(config.keyring_dir());

        let events = EventHub::new(
            store.clone(),
            Duration::from_millis(config.events.poll_interval_ms),
        );
        let hub = events.clone();
        let notify: EventNotifier = Arc::new(move |run_id| hub.notify(run_id));
        let workers = &config.workers;
        let runner = Runner::new(
            store.clone(),
            artifacts.clone(),
            clock.clone(),
            RunnerConfig {
                worker_id: format!("{}-{}", hostname(), std::process::id()),
                concurrency: workers.concurrency,
                poll_interval: Duration::from_millis(workers.poll_interval_ms),
                lease: Duration::from_secs(workers.lease_seconds),
                heartbeat_interval: Duration::from_secs(workers.heartbeat_seconds),
                max_active_per_tenant: workers.max_active_per_tenant,
                max_attempts: workers.max_attempts,
                job_timeout: Duration::from_secs_f64(config.limits.job_timeout_seconds),
                keyring: keyring.clone(),
                max_bundle_bytes: config.limits.max_bundle_bytes,
                janitor_interval: Duration::from_secs(workers.janitor_interval_seconds),
                oci: OciPublisher::new(config.distribution.oci.clone())?.with_egress(egress.clone()),
                object: object.clone(),
            },
            notify,
        );
        let wake = runner.clone();
        let notifier = notifier(&config, &store, &egress, &clock);
        let auth = authenticator(&config, &store, started, &egress)?;
        let state = AppState {
            store,
            artifacts,
            urls,
            profiles,
            keyring: keyring.clone(),
            clock,
            config: Arc::new(ApiConfig {
                public_base_url: String::new(),
                limits: config.limits.clone(),
                link_lifetime: Duration::from_secs(config.url_signing.link_lifetime_seconds),
                sealed: config.sealed,
                egress: config.egress_policy(),
                repository_prefixes: config.distribution.oci.repository_prefixes(),
                sse_keep_alive: Duration::from_millis(config.events.keep_alive_ms),
                sse_idle_timeout: Duration::from_millis(config.events.idle_timeout_ms),
                request_timeout: Duration::from_secs(config.server.request_timeout_seconds),
                jwks_file: (config.auth.mode == AuthMode::Jwt)
                    .then(|| config.auth.jwks_file.clone())
                    .flatten(),
                status_cache_entries: config.server.status_cache_entries,
            }),
            events,
            event_streams: Arc::new(EventStreams::new(config.limits.sse_streams_per_tenant)),
            readiness: Arc::new(ReadinessCache::new(Duration::from_secs(
                config.server.readiness_cache_seconds,
            ))),
            object,
            auth,
            rate_limiter: Arc::new(RateLimiter::new(
                config.limits.runs_per_minute,
                config.limits.runs_burst,
            )),
            metrics: Some(metrics_handle()),
            wake_workers: Arc::new(move || wake.notify()),
        };
        Ok(Self {
            config,
            state,
            runner,
            notifier,
        })
    }

    /// Binds the public address (`server.listen`) and the operator's
    /// (`server.admin_listen`).
    pub async fn bind(&self) -> anyhow::Result<Listeners> {
        let server = &self.config.server;
        let public = TcpListener::bind(&server.listen)
            .await
            .with_context(|| format!("server.listen: binding {}", server.listen))?;
        let admin = TcpListener::bind(&server.admin_listen)
            .await
            .with_context(|| format!("server.admin_listen: binding {}", server.admin_listen))?;
        Ok(Listeners { public, admin })
    }

    /// Serves until `shutdown` is cancelled; then event streams end, and in-flight
    /// requests and runs in progress may finish within `server.shutdown_grace_seconds`.
    ///
    /// Every role serves `/healthz` and the bare `/readyz` on the public listener, and
    /// `/healthz`, `/readyz` with details and `/metrics` on the operator listener; the
    /// `/export-center` API only with the roles `api` and `all`.
    pub async fn serve(
        mut self,
        listeners: Listeners,
        role: Role,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let address = listeners.public_addr()?;
        let admin_address = listeners.admin_addr()?;
        let base_url = self.public_base_url(address);
        Arc::make_mut(&mut self.state.config).public_base_url = base_url.clone();

        let mut workers = if matches!(role, Role::Worker | Role::All) && self.config.workers.concurrency > 0 {
            self.runner.spawn(shutdown.clone())
        } else {
            Vec::new()
        };
        // The scheduler and the notification delivery run where workers do; replicas'
        // schedulers race for each fire and the store keeps one run per fire
        // (`Store::create_scheduled_run`); deliveries are claimed under a lease.
        if !workers.is_empty() {
            let interval = Duration::from_secs(self.config.workers.scheduler_interval_seconds);
            let scheduler = Scheduler::new(self.state.clone());
            workers.push(tokio::spawn(scheduler.run(interval, shutdown.clone())));
            // Rendered with the public base URL set above, so the links in a
            // notification's run status are the ones `GET /runs/{id}` would give.
            let state = self.state.clone();
            let render: Renderer =
                Arc::new(move |notification, run| export_api::notification_body(&state, notification, run));
            workers.push(self.notifier.spawn(render, shutdown.clone()));
        }
        let router = if matches!(role, Role::Api | Role::All) {
            tracing::info!(%address, public_base_url = %base_url, "export center listening on {address}");
            export_api::router(self.state.clone())
        } else {
            tracing::info!(%address, "export center worker: health and readiness on {address}");
            export_api::probe_router(self.state.clone())
        };
        tracing::info!(address = %admin_address, "operator endpoints on {admin_address}");
        let limits = self.connection_limits();
        let streams = self.state.event_streams.clone();
        let end_streams = shutdown.clone();
        let upkeep = telemetry::metrics_upkeep(metrics_handle(), shutdown.clone());
        tokio::join!(
            upkeep,
            connections::serve(listeners.public, router, limits, shutdown.clone()),
            connections::serve(
                listeners.admin,
                export_api::admin_router(self.state.clone()),
                limits,
                shutdown.clone()
            ),
            // Event streams never finish by themselves: they end at once, and their
            // clients resume elsewhere with `Last-Event-ID`.
            async move {
                end_streams.cancelled().await;
                streams.close_all();
            },
            drain(workers, shutdown.clone(), limits.shutdown_grace),
        );
        Ok(())
    }

    fn connection_limits(&self) -> ConnectionLimits {
        let server = &self.config.server;
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(server.idle_timeout_seconds),
            shutdown_grace: Duration::from_secs(server.shutdown_grace_seconds),
        }
    }

    /// The configured public URL, or one built from the bound address.
    pub fn public_base_url(&self, address: SocketAddr) -> String {
        match &self.config.server.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{address}"),
        }
    }
}

/// The bound listeners: the public one and the operator's.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// The delivery task of `[notifications]`: its connections go through the egress proxy.
fn notifier(
    config: &Config,
    store: &Arc<dyn Store>,
    egress: &EgressProxy,
    clock: &Arc<dyn Clock>,
) -> Notifier {
    let settings = &config.notifications;
    Notifier::new(
        store.clone(),
        egress.clone(),
        clock.clone(),
        NotifierConfig {
            owner: format!("{}-{}", hostname(), std::process::id()),
            lease: Duration::from_secs(settings.lease_seconds),
            retry: settings.retry(),
            poll_interval: Duration::from_millis(settings.poll_interval_ms),
            timeout: Duration::from_secs(settings.timeout_seconds),
            batch: settings.batch,
            nats_url: settings.nats_url.clone(),
        },
    )
}

/// The access-token verifier of the configured `auth.mode`.
fn authenticator(
    config: &Config,
    store: &Arc<dyn Store>,
    started: DateTime<Utc>,
    egress: &EgressProxy,
) -> anyhow::Result<Option<Arc<Authenticator>>> {
    let auth = &config.auth;
    let mut verifier = AuthConfig::new(auth.issuer.clone(), auth.audience.clone());
    verifier.clock_skew = Duration::from_secs(auth.clock_skew_seconds);
    verifier.dpop_window = Duration::from_secs(auth.dpop_window_seconds);
    verifier.require_nonce = auth.require_nonce;
    let jwks: Arc<dyn JwksSource> = match auth.mode {
        AuthMode::Disabled => {
            tracing::warn!("authentication is DISABLED: any caller may act for any tenant; never run this way in production");
            return Ok(None);
        }
        AuthMode::Dev => {
            let issuer = DevIssuer::load_or_create(&config.server.data_dir)
                .context("auth.mode = dev: loading the local issuer key")?
                .with_issuer(auth.issuer.clone(), auth.audience.clone());
            tracing::warn!(
                "auth.mode = dev: tokens come from the local issuer key in {}; use `export-center token` to mint them. Not for production",
                issuer.path().display()
            );
            Arc::new(issuer.jwks())
        }
        AuthMode::Jwt => match (&auth.jwks_file, &auth.jwks_url) {
            (Some(path), _) => Arc::new(
                FileJwks::load(path)
                    .with_context(|| format!("auth.jwks_file: loading {}", path.display()))?
                    .with_change_check(Duration::from_secs(auth.jwks_reload_seconds)),
            ),
            (None, Some(url)) => {
                let jwks = UrlJwks::new(url, Duration::from_secs(300))
                    .with_context(|| format!("auth.jwks_url: {url}"))?;
                let plain_http = url.starts_with("http://").then(|| jwks.authority());
                let proxy_url = egress.lasting_proxy_url(plain_http.as_deref());
                Arc::new(
                    jwks.with_proxy(&proxy_url)
                        .with_context(|| format!("auth.jwks_url: {url}"))?,
                )
            }
            (None, None) => anyhow::bail!("auth: mode `jwt` needs `jwks_file` or `jwks_url`"),
        },
    };
    // Replicas on PostgreSQL share the proofs they have seen (by default); one machine
    // keeps them in memory, without a write per request. A memory cache starts empty, so
    // proofs dated before this process started need a nonce it issued (SPEC §17): a
    // comparison per request instead of a database write (docs/OPERATIONS.md,
    // "Authentication hardening").
    let replay: Arc<dyn ReplayCache> = if config.replay_cache_in_database() {
        Arc::new(DatabaseReplayCache::new(store.clone()))
    } else {
        verifier.replay_record_since = Some(started);
        Arc::new(MemoryReplayCache::with_capacity(auth.replay_cache_capacity))
    };
    let nonces = match &auth.nonce_secret_file {
        Some(path) => NonceSource::from_file(path, verifier.dpop_window)
            .with_context(|| format!("auth.nonce_secret_file: loading {}", path.display()))?,
        None => {
            let path = config.server.data_dir.join(NONCE_SECRET_FILE);
            NonceSource::load_or_create(&path, verifier.dpop_window)
                .with_context(|| format!("auth.nonce_secret_file: loading the default {}", path.display()))?
        }
    };
    Ok(Some(Arc::new(Authenticator::new(
        verifier,
        jwks,
        replay,
        Some(nonces),
    ))))
}

/// The nonce secret in the data directory when `auth.nonce_secret_file` is not set.
pub const NONCE_SECRET_FILE: &str = "dpop-nonce.key";

/// The store `database.url` names: SQLite (`sqlite://`, the default, one file in the
/// data directory) or PostgreSQL (`postgres://`, shared by several replicas).
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    let shown = redact_password(&url);
    let store: Arc<dyn Store> = if config.database_is_sqlite() {
        Arc::new(
            SqliteStore::connect(&url)
                .await
                .with_context(|| format!("database.url: opening {shown}"))?,
        )
    } else {
        Arc::new(
            PostgresStore::connect(&url)
                .await
                .with_context(|| format!("database.url: connecting to {shown}"))?,
        )
    };
    Ok(store)
}

/// The configured HMAC keys, or the key kept in the data directory (created on first
/// start, never replaced) so links survive restarts.
fn url_signer(config: &Config) -> anyhow::Result<UrlSigner> {
    let mut keys = Vec::new();
    for (idx, key) in config.url_signing.keys.iter().enumerate() {
        let field = format!("url_signing.keys[{idx}]");
        let text = match (&key.secret, &key.secret_file) {
            (Some(secret), _) => secret.expose().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("{field}.secret_file: reading {}", path.display()))?,
            (None, None) => anyhow::bail!("{field}: set `secret` or `secret_file`"),
        };
        let secret = STANDARD
            .decode(text.trim())
            .with_context(|| format!("{field}: the secret is not base64"))?;
        keys.push(UrlSigningKey {
            kid: key.kid.clone(),
            secret,
        });
    }
    if keys.is_empty() {
        keys.push(UrlSigningKey {
            kid: "local".to_owned(),
            secret: local_url_signing_key(&config.server.data_dir)?,
        });
    }
    UrlSigner::new(keys).context("url_signing.keys")
}

/// The process-wide Prometheus recorder (a recorder can be installed only once), with
/// histogram buckets for every `*_seconds` metric and every metric described.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    telemetry::DURATION_BUCKETS,
                )
                .expect("the duration buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (several apps in one test
            // process); this handle then renders what this recorder saw.
            if metrics::set_global_recorder(recorder).is_ok() {
                telemetry::describe_metrics();
            }
            handle
        })
        .clone()
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Once `shutdown` is cancelled, lets the workers finish the runs in hand within `grace`;
/// a run still going then is left behind: the process exits, the run's lease lapses and
/// another worker takes it over from the start (every step is idempotent), so a rolling
/// restart never waits on a long export.
async fn drain(workers: Vec<tokio::task::JoinHandle<()>>, shutdown: CancellationToken, grace: Duration) {
    shutdown.cancelled().await;
    if tokio::time::timeout(grace, futures::future::join_all(workers))
        .await
        .is_err()
    {
        tracing::warn!(
            "runs still in hand after the shutdown grace period of {} s are left to other workers, which take them over once their leases lapse",
            grace.as_secs()
        );
    }
}
