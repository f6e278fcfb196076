//! The one configuration tree: read from an optional TOML file, then overridden by
//! `EXPORT_CENTER_<SECTION>__<KEY>` variables, then validated as a whole so that startup
//! fails early with a message naming the offending key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use export_artifacts::{S3Location, S3Settings};
use export_core::egress::split_authority;
use export_core::{
    EgressPolicy, Limits, Profile, ProfileDefinition, ProfileId, ProfileName, Secret, TenantId,
};
use export_oci::OciSettings;
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod notifications;

pub use notifications::NotificationsConfig;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub artifacts: ArtifactsConfig,
    pub url_signing: UrlSigningConfig,
    pub signing: SigningConfig,
    pub auth: AuthSettings,
    pub events: EventsConfig,
    pub workers: WorkersConfig,
    /// Webhook and NATS deliveries of run notifications (SPEC §16).
    pub notifications: NotificationsConfig,
    pub limits: Limits,
    pub logging: LoggingConfig,
    /// No egress: see SPEC §11.
    pub sealed: bool,
    /// The hosts (`host`, any port) or `host:port`s, names or IP addresses, that the
    /// service may connect to although the egress rules would refuse them: on an open
    /// site, internal (loopback, private, link-local, metadata) addresses; on a sealed
    /// site, everything. See "Egress rules" in docs/OPERATIONS.md.
    pub egress_allowlist: Vec<String>,
    pub distribution: DistributionConfig,
    /// Tenants with their profiles. When the configuration names no tenant at all, a
    /// `tenant-default` tenant with a `default` profile over every kind is provided so
    /// that the quick start works without a file.
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// Where runs are published besides the service's own signed URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributionConfig {
    /// OCI registries (`distribution.type = "oci"`).
    pub oci: OciSettings,
    /// The S3-compatible bucket of `distribution.type = "object"`; without it, runs
    /// asking for `object` are refused at creation.
    pub object: Option<ObjectDistributionConfig>,
}

/// Where `object` distributions upload: `<prefix>/<tenant>/<runId>/<path>` in `bucket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectDistributionConfig {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// The endpoint and credentials.
    pub s3: S3Settings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to listen on; port 0 picks a free port.
    pub listen: String,
    /// The URL clients use to reach the service (behind a proxy, the proxy's URL);
    /// absolute links and signed URLs are built from it. Defaults to
    /// `http://<listen address>`.
    pub public_base_url: Option<String>,
    /// Where the embedded defaults keep their files.
    pub data_dir: PathBuf,
    // --- Operator listener and connection limits (SPEC §17) ---
    /// The operator listener: `/metrics` and `/readyz` with every check's detail, which
    /// name tenants, profiles, keys and paths. Keep it off the public network. Port 0
    /// picks a free port.
    pub admin_listen: String,
    /// An HTTP/1 client must send a request's whole header within this time, and a
    /// kept-alive connection's next request must begin within it, else the connection
    /// is closed.
    pub header_read_timeout_seconds: u64,
    /// A connection that moves no byte either way this long is closed (a stalled client,
    /// one that stopped reading, an idle HTTP/2 connection). Longer than
    /// `events.keep_alive_ms`, so open event streams never count as idle.
    pub idle_timeout_seconds: u64,
    /// An endpoint that does not stream (all but events and downloads) answers `408`
    /// after this long.
    pub request_timeout_seconds: u64,
    /// On SIGTERM or Ctrl-C, event streams end at once, other requests may finish for
    /// this long, and then the connections left are closed.
    pub shutdown_grace_seconds: u64,
    /// A readiness result is reused this long, so probes do not each write to the
    /// artifact store; 0 checks on every probe.
    pub readiness_cache_seconds: u64,
    /// The rendered status of this many ended runs is kept in memory (a few KiB each),
    /// so polling a finished run reads no database and signs no link; at least 1.
    pub status_cache_entries: usize,
    // --- end of operator listener and connection limits ---
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            public_base_url: None,
            data_dir: PathBuf::from("export-center-data"),
            // Operator listener and connection limits.
            admin_listen: "127.0.0.1:9090".to_owned(),
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            request_timeout_seconds: 30,
            shutdown_grace_seconds: 25,
            readiness_cache_seconds: 5,
            status_cache_entries: 1024,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://<path>`; defaults to `sqlite://<data_dir>/export-center.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// `file://<absolute path>`, `s3://<bucket>[/<prefix>]` (with `[artifacts.s3]`) or
    /// `memory://`; defaults to `<data_dir>/artifacts`.
    pub url: Option<String>,
    /// The S3 endpoint and credentials of an `s3://` artifact store.
    pub s3: Option<S3Settings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UrlSigningConfig {
    /// Lifetime of a signed download link before rounding and the retention cap.
    pub link_lifetime_seconds: u64,
    /// HMAC keys, oldest first: the last one signs, every one verifies. When empty, a
    /// key is generated once in `<data_dir>/url-signing.key` and kept.
    pub keys: Vec<UrlKeyConfig>,
}

impl Default for UrlSigningConfig {
    fn default() -> Self {
        Self {
            link_lifetime_seconds: 6 * 60 * 60,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlKeyConfig {
    pub kid: String,
    /// The secret, base64 (at least 32 bytes once decoded). Prefer `secret_file`.
    #[serde(default, skip_serializing)]
    pub secret: Option<Secret>,
    /// A file holding the base64 secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// The tenants' keyrings: `kms://<tenant>/<name>` is `<keyring_dir>/<tenant>/<name>.pem`
    /// (a PKCS#8 signing key) or `<name>.age` (an age recipient). Defaults to
    /// `<data_dir>/keyrings`.
    pub keyring_dir: Option<PathBuf>,
}

/// Server-Sent Events streams (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// A `: keep-alive` comment this often.
    pub keep_alive_ms: u64,
    /// A stream that carried no event this long is closed (the client reconnects with
    /// `Last-Event-ID`).
    pub idle_timeout_ms: u64,
    /// How often a run's stream looks for events written by another process.
    pub poll_interval_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            keep_alive_ms: 15_000,
            idle_timeout_ms: 60_000,
            poll_interval_ms: 500,
        }
    }
}

/// How callers are authenticated (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `dev`: a local issuer whose key lives in the data directory (`export-center token`
    /// mints tokens); `jwt`: tokens of an external issuer, verified against `jwks_file` or
    /// `jwks_url`; `disabled`: no authentication at all, the tenant header alone (for
    /// benchmarks; refused when sealed).
    pub mode: AuthMode,
    /// The tokens' `iss`.
    pub issuer: String,
    /// Must be in the tokens' `aud`.
    pub audience: String,
    /// The issuer's JWKS as a file (the air-gapped default).
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS fetched over HTTP (cached; refused when sealed).
    pub jwks_url: Option<String>,
    pub clock_skew_seconds: u64,
    pub dpop_window_seconds: u64,
    /// Require server nonces in DPoP proofs (`DPoP-Nonce`, `use_dpop_nonce`).
    pub require_nonce: bool,
    /// Proof ids remembered against replay, each for `dpop_window_seconds` +
    /// `clock_skew_seconds`; when the cache is full, new proofs are refused with `503`
    /// until entries expire, never accepted unchecked.
    pub replay_cache_capacity: usize,
    /// Where seen proof ids are kept: `memory` (each process its own) or `database`
    /// (shared by every process on the database). Unset: `database` on PostgreSQL,
    /// `memory` on SQLite.
    pub replay_cache: Option<ReplayCacheKind>,
    // Authentication hardening (SPEC §17): nonce secret and JWKS file reloads.
    /// The file holding the secret that keys DPoP server nonces (base64 of 32 random bytes
    /// or more); every replica must read the same secret. Unset:
    /// `<data_dir>/dpop-nonce.key`, created on first start and never replaced.
    pub nonce_secret_file: Option<PathBuf>,
    /// How often `jwks_file` is checked for changes and reread, so that a key removed from
    /// it stops verifying tokens without a restart.
    pub jwks_reload_seconds: u64,
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A local issuer whose key lives in the data directory.
    Dev,
    /// Tokens of an external issuer, verified against its JWKS.
    Jwt,
    /// No authentication: the tenant header alone.
    Disabled,
}

impl AuthMode {
    /// The name configuration gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Jwt => "jwt",
            Self::Disabled => "disabled",
        }
    }
}

/// `auth.replay_cache`: where seen DPoP proof ids are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayCacheKind {
    /// In this process (each process its own).
    Memory,
    /// In the database, shared by every process on it.
    Database,
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Dev,
            issuer: "urn:export-center:dev-issuer".to_owned(),
            audience: "export-center".to_owned(),
            jwks_file: None,
            jwks_url: None,
            clock_skew_seconds: 30,
            dpop_window_seconds: 60,
            require_nonce: false,
            replay_cache_capacity: export_auth::MemoryReplayCache::DEFAULT_CAPACITY,
            replay_cache: None,
            nonce_secret_file: None,
            jwks_reload_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Runs executed at once by this process; 0 runs no worker (API only).
    pub concurrency: usize,
    pub poll_interval_ms: u64,
    pub lease_seconds: u64,
    pub heartbeat_seconds: u64,
    pub max_active_per_tenant: u32,
    pub max_attempts: u32,
    /// How often expired runs' bytes are deleted.
    pub janitor_interval_seconds: u64,
    /// How often the scheduler looks for due schedule fires (SPEC §16).
    pub scheduler_interval_seconds: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            poll_interval_ms: 1000,
            lease_seconds: 30,
            heartbeat_seconds: 10,
            max_active_per_tenant: 4,
            max_attempts: 3,
            janitor_interval_seconds: 60,
            scheduler_interval_seconds: 15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `export_runner=debug,info`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    pub profiles: BTreeMap<String, ProfileDefinition>,
}

const ENV_PREFIX: &str = "EXPORT_CENTER_";

impl Config {
    /// Reads `path` (when given) and the environment over the built-in defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.is_file() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut config: Config = figment.extract().map_err(|err| anyhow::anyhow!(describe(err)))?;
        config.apply_default_tenant();
        config.validate()?;
        Ok(config)
    }

    /// A configuration for tests and the demo: built-in defaults over `data_dir`,
    /// listening on a free loopback port.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".to_owned();
        config.server.admin_listen = "127.0.0.1:0".to_owned();
        config.server.data_dir = data_dir.to_owned();
        config.apply_default_tenant();
        config
    }

    fn apply_default_tenant(&mut self) {
        if self.tenants.is_empty() {
            let definition: ProfileDefinition = serde_json::from_value(serde_json::json!({
                "description": "Every advisory, VEX statement and policy of the tenant",
                "targets": ["advisory", "vex", "policy"],
            }))
            .expect("the built-in profile is valid");
            let tenant = TenantConfig {
                profiles: BTreeMap::from([("default".to_owned(), definition)]),
            };
            self.tenants.insert("tenant-default".to_owned(), tenant);
        }
    }

    /// Checks what serde cannot: names, URLs, limits and profiles.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_listeners()?;
        self.validate_connection_limits()?;
        self.validate_storage()?;
        self.validate_distribution()?;
        self.validate_egress()?;
        self.validate_url_signing()?;
        self.validate_limits()?;
        self.notifications.validate()?;
        self.validate_auth()?;
        self.profiles()?;
        Ok(())
    }

    /// The public listener and its base URL.
    fn validate_listeners(&self) -> anyhow::Result<()> {
        self.server
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "server.listen: `{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                )
            })?;
        if let Some(url) = &self.server.public_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("server.public_base_url: `{url}` must start with http:// or https://");
            }
        }
        if self.server.status_cache_entries == 0 {
            bail!("server.status_cache_entries: must be at least 1");
        }
        Ok(())
    }

    /// The database and artifact store URLs (and an `s3://` store's settings).
    fn validate_storage(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.database.url {
            let known = ["sqlite://", "postgres://", "postgresql://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                bail!(
                    "database.url: `{}` is not supported; use sqlite://<path> or postgres://[user@]host[:port]/database",
                    redact_password(url)
                );
            }
        }
        let Some(url) = &self.artifacts.url else {
            return Ok(());
        };
        if url.starts_with("s3://") {
            let settings =
                self.artifacts.s3.as_ref().with_context(|| {
                    format!("artifacts.s3: `{url}` needs the S3 endpoint and credentials")
                })?;
            settings
                .validate()
                .map_err(|err| anyhow::anyhow!("artifacts.s3: {err}"))?;
            S3Location::parse(url).map_err(|err| anyhow::anyhow!("artifacts.url: {err}"))?;
        } else if !(url.starts_with("file://") || url == "memory://") {
            bail!(
                "artifacts.url: `{url}` is not supported; use file://<absolute path>, s3://<bucket>[/<prefix>] \
                 or memory://"
            );
        }
        Ok(())
    }

    /// The object and OCI distribution settings.
    fn validate_distribution(&self) -> anyhow::Result<()> {
        if let Some(object) = &self.distribution.object {
            object
                .s3
                .validate()
                .map_err(|err| anyhow::anyhow!("distribution.object.s3: {err}"))?;
            S3Location::new(&object.bucket, &object.prefix)
                .map_err(|err| anyhow::anyhow!("distribution.object: {err}"))?;
        }
        self.distribution
            .oci
            .validate()
            .map_err(|message| anyhow::anyhow!("distribution.oci.{message}"))
    }

    /// Each URL-signing key from exactly one place, and a positive link lifetime.
    fn validate_url_signing(&self) -> anyhow::Result<()> {
        for (idx, key) in self.url_signing.keys.iter().enumerate() {
            if key.secret.is_some() == key.secret_file.is_some() {
                bail!("url_signing.keys[{idx}]: set exactly one of `secret` and `secret_file`");
            }
        }
        if self.url_signing.link_lifetime_seconds == 0 {
            bail!("url_signing.link_lifetime_seconds: must be positive");
        }
        Ok(())
    }

    /// Limits, worker and event timings: positive, and a heartbeat within its lease.
    fn validate_limits(&self) -> anyhow::Result<()> {
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_body_bytes", limits.max_body_bytes as u64),
            ("limits.max_targets", limits.max_targets as u64),
            ("limits.max_outputs", limits.max_outputs as u64),
            ("limits.max_bundle_bytes", limits.max_bundle_bytes),
            (
                "limits.idempotency_lease_seconds",
                limits.idempotency_lease_seconds,
            ),
            ("workers.lease_seconds", self.workers.lease_seconds),
            ("workers.heartbeat_seconds", self.workers.heartbeat_seconds),
            (
                "workers.max_active_per_tenant",
                u64::from(self.workers.max_active_per_tenant),
            ),
            ("workers.max_attempts", u64::from(self.workers.max_attempts)),
            ("workers.poll_interval_ms", self.workers.poll_interval_ms),
            ("events.keep_alive_ms", self.events.keep_alive_ms),
            ("events.idle_timeout_ms", self.events.idle_timeout_ms),
            ("events.poll_interval_ms", self.events.poll_interval_ms),
            (
                "workers.janitor_interval_seconds",
                self.workers.janitor_interval_seconds,
            ),
            (
                "workers.scheduler_interval_seconds",
                self.workers.scheduler_interval_seconds,
            ),
        ] {
            if value == 0 {
                bail!("{key}: must be positive");
            }
        }
        let timeout = self.limits.job_timeout_seconds;
        if !(timeout.is_finite() && timeout > 0.0) {
            bail!("limits.job_timeout_seconds: must be a positive number of seconds");
        }
        if self.workers.heartbeat_seconds >= self.workers.lease_seconds {
            bail!("workers.heartbeat_seconds: must be shorter than workers.lease_seconds");
        }
        Ok(())
    }

    /// The authentication mode, its key source and the replay and nonce settings.
    fn validate_auth(&self) -> anyhow::Result<()> {
        let auth = &self.auth;
        if auth.replay_cache_capacity == 0 {
            bail!("auth.replay_cache_capacity: must be positive");
        }
        if auth.jwks_reload_seconds == 0 {
            bail!("auth.jwks_reload_seconds: must be positive");
        }
        // Each replica's data directory would hold a secret of its own, and replicas would
        // refuse each other's nonces.
        if auth.require_nonce && auth.nonce_secret_file.is_none() && !self.database_is_sqlite() {
            bail!("auth.nonce_secret_file: required with auth.require_nonce on a shared database, the same file on every replica");
        }
        match auth.mode {
            AuthMode::Dev | AuthMode::Disabled if self.sealed => {
                bail!("auth.mode: `{}` is refused on a sealed site", auth.mode.name())
            }
            AuthMode::Dev | AuthMode::Disabled => {}
            AuthMode::Jwt => match (&auth.jwks_file, &auth.jwks_url) {
                (Some(_), None) => {}
                (None, Some(_)) if self.sealed => {
                    bail!("auth.jwks_url: a sealed site reads its JWKS from auth.jwks_file")
                }
                (None, Some(url)) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                    bail!("auth.jwks_url: `{url}` is not an http(s) URL")
                }
                (None, Some(_)) => {}
                _ => bail!("auth: set exactly one of `jwks_file` and `jwks_url` with mode `jwt`"),
            },
        }
        Ok(())
    }

    /// The operator listener and the connection limits.
    fn validate_connection_limits(&self) -> anyhow::Result<()> {
        let server = &self.server;
        server
            .admin_listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "server.admin_listen: `{}` is not an address like 127.0.0.1:9090",
                    server.admin_listen
                )
            })?;
        if server.admin_listen == server.listen && !server.listen.ends_with(":0") {
            bail!("server.admin_listen: must differ from server.listen");
        }
        for (key, value) in [
            (
                "server.header_read_timeout_seconds",
                server.header_read_timeout_seconds,
            ),
            ("server.idle_timeout_seconds", server.idle_timeout_seconds),
            ("server.request_timeout_seconds", server.request_timeout_seconds),
            (
                "limits.sse_streams_per_tenant",
                u64::from(self.limits.sse_streams_per_tenant),
            ),
        ] {
            if value == 0 {
                bail!("{key}: must be positive");
            }
        }
        if server.idle_timeout_seconds * 1000 <= self.events.keep_alive_ms {
            bail!(
                "server.idle_timeout_seconds: must be longer than events.keep_alive_ms, or open event streams \
                 would be closed as idle"
            );
        }
        Ok(())
    }

    /// Every tenant's profiles, validated.
    pub fn profiles(&self) -> anyhow::Result<Vec<Profile>> {
        let mut profiles = Vec::new();
        for (tenant_name, tenant) in &self.tenants {
            let tenant_id = TenantId::parse(tenant_name)
                .map_err(|err| anyhow::anyhow!("tenants.{tenant_name}: {err}"))?;
            for (profile_name, definition) in &tenant.profiles {
                let key = format!("tenants.{tenant_name}.profiles.{profile_name}");
                let name = ProfileName::parse(profile_name).map_err(|err| anyhow::anyhow!("{key}: {err}"))?;
                // The definition, then its schedule's request planned against it.
                let profile = Profile::new(ProfileId::new(tenant_id.clone(), name), definition.clone());
                profile
                    .validate(&self.limits)
                    .map_err(|(field, message)| anyhow::anyhow!("{key}.{field}: {message}"))?;
                profiles.push(profile);
            }
        }
        Ok(profiles)
    }

    pub fn keyring_dir(&self) -> PathBuf {
        self.signing
            .keyring_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("keyrings"))
    }

    /// Whether seen DPoP proof ids are kept in the database (`auth.replay_cache`).
    pub fn replay_cache_in_database(&self) -> bool {
        match self.auth.replay_cache {
            Some(kind) => kind == ReplayCacheKind::Database,
            None => !self.database_is_sqlite(),
        }
    }

    /// Whether `database.url` names SQLite (the default) rather than PostgreSQL.
    pub fn database_is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.server.data_dir.join("export-center.db").display()
            )
        })
    }

    pub fn artifacts_url(&self) -> String {
        self.artifacts.url.clone().unwrap_or_else(|| {
            let dir = self.server.data_dir.join("artifacts");
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            format!("file://{}", dir.display())
        })
    }
}

// Egress (SPEC §17): the rules every outbound connection is checked against.
impl Config {
    /// The egress rules of this site.
    pub fn egress_policy(&self) -> EgressPolicy {
        EgressPolicy {
            sealed: self.sealed,
            allow: self.egress_allowlist.clone(),
        }
    }

    /// Allowlist entries are `host` or `host:port`; a JWKS URL must pass the egress rules
    /// as it is named (its connections are checked again when they are made).
    fn validate_egress(&self) -> anyhow::Result<()> {
        for (idx, entry) in self.egress_allowlist.iter().enumerate() {
            if entry.contains("://") || split_authority(entry).is_none() {
                bail!("egress_allowlist[{idx}]: `{entry}` is not a `host` or `host:port`");
            }
        }
        if let (Some(url), AuthMode::Jwt) = (&self.auth.jwks_url, self.auth.mode) {
            let parsed =
                url::Url::parse(url).with_context(|| format!("auth.jwks_url: `{url}` is not a URL"))?;
            let host = parsed.host_str().unwrap_or_default();
            self.egress_policy()
                .check_host(host, parsed.port())
                .map_err(|refusal| anyhow::anyhow!("auth.jwks_url: {refusal}"))?;
        }
        Ok(())
    }
}

/// figment's errors name the key and the source; keep each on its own line.
fn describe(err: figment::Error) -> String {
    err.into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let source = error
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let mut line = if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            };
            line.push_str(&error.kind.to_string());
            if !source.is_empty() {
                line.push_str(&format!(" (from {source})"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `url` with the password of its user part, if any, replaced by `***`: what logs and
/// error messages show of a database URL.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
