//! `TestApp`: the production configuration and wiring with only the port, the data
//! directory and the clock changed. Workers do not poll; tests drain the queue with
//! `run_pending`, so timing never decides an outcome.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use export_auth::client::DpopKey;
use export_auth::dev::DevIssuer;
use export_auth::Alg;

use chrono::{DateTime, TimeZone, Utc};
use export_api_types::{RunAccepted, RunStatusResponse};
use export_core::{Clock, SourceName, TenantId};
use export_server::{ingest, App, Config, Role};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A clock the test moves by hand.
#[derive(Clone)]
pub(crate) struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub(crate) fn new() -> Self {
        Self::starting_at(Utc.with_ymd_and_hms(2025, 12, 6, 9, 59, 58).unwrap())
    }

    /// Starts at `at` in whole seconds: proofs carry whole-second `iat`s, and one made
    /// in the server's first second must not look older than the server.
    pub(crate) fn starting_at(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(chrono::SubsecRound::trunc_subsecs(at, 0))))
    }

    pub(crate) fn advance(&self, duration: chrono::Duration) {
        *self.0.lock().unwrap() += duration;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

pub(crate) struct TestApp {
    pub(crate) base: String,
    /// The operator listener: `/metrics` and readiness details.
    pub(crate) admin_base: String,
    pub(crate) app: App,
    pub(crate) clock: TestClock,
    pub(crate) http: reqwest::Client,
    pub(crate) data_dir: PathBuf,
    /// The URL clients use (a proxy's, when configured); DPoP proofs are made for it.
    pub(crate) public_base: String,
    pub(crate) issuer: DevIssuer,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a configuration changed by `configure` (after the test defaults).
    pub(crate) async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_at(TestClock::new(), configure).await
    }

    /// Spawns with a clock starting at `clock`'s time (`TestClock::starting_at(Utc::now())`
    /// for tests whose tokens come from outside).
    pub(crate) async fn spawn_at(clock: TestClock, configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Tokens come from an issuer whose JWKS the service reads from a file, the
        // air-gapped default; the tests mint with the issuer's key.
        let issuer = DevIssuer::load_or_create(&dir.path().join("issuer")).unwrap();
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, issuer.jwks().to_json().to_string()).unwrap();
        let mut config = Config::for_data_dir(dir.path());
        config.auth.mode = export_server::config::AuthMode::Jwt;
        config.auth.jwks_file = Some(jwks_file);
        config.auth.issuer = issuer.issuer().to_owned();
        config.auth.audience = issuer.audience().to_owned();
        config.workers.concurrency = 0;
        config.logging.level = "warn".to_owned();
        config.tenants = toml::from_str(TENANTS).unwrap();
        // Tests create many runs quickly; the rate-limit test sets its own limits.
        config.limits.runs_burst = 10_000;
        configure(&mut config);
        let public_base = config.server.public_base_url.clone();
        config.validate().unwrap();
        let app = App::build_with_clock(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let listeners = app.bind().await.unwrap();
        let base = format!("http://{}", listeners.public_addr().unwrap());
        let admin_base = format!("http://{}", listeners.admin_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.clone().serve(listeners, Role::Api, shutdown.clone()));
        Self {
            public_base: public_base.unwrap_or_else(|| base.clone()),
            base,
            admin_base,
            app,
            clock,
            http: http_client(),
            data_dir: dir.path().to_owned(),
            issuer,
            shutdown,
            _dir: dir,
        }
    }

    /// Writes a signing key into the tenant's keyring; returns its public key PEM.
    pub(crate) fn install_signing_key(&self, tenant: &str, name: &str, algorithm: &str) -> String {
        let (private, public) = export_signing::generate(algorithm.parse().unwrap()).unwrap();
        let dir = self.data_dir.join("keyrings").join(tenant);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), private).unwrap();
        public
    }

    /// Writes an age recipient into the tenant's keyring; returns its identity.
    pub(crate) fn install_age_key(&self, tenant: &str, name: &str) -> String {
        use age::secrecy::ExposeSecret;
        let identity = age::x25519::Identity::generate();
        let dir = self.data_dir.join("keyrings").join(tenant);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.age")), identity.to_public().to_string()).unwrap();
        identity.to_string().expose_secret().to_owned()
    }

    /// Where the artifact store keeps a run's files.
    pub(crate) fn run_dir(&self, run_id: &str) -> PathBuf {
        self.data_dir.join("artifacts").join(run_prefix(run_id))
    }

    pub(crate) fn tenant(&self, tenant: &str) -> TenantClient<'_> {
        TenantClient {
            app: self,
            tenant: tenant.to_owned(),
        }
    }

    /// Executes every queued run.
    pub(crate) async fn run_pending(&self) -> usize {
        self.app.runner.run_pending().await.unwrap()
    }

    /// Ingests files or directories into `tenant`/`source`.
    pub(crate) async fn ingest(&self, tenant: &str, source: &str, paths: &[PathBuf]) -> ingest::IngestReport {
        self.ingest_as(ingest::IngestMode::Add, tenant, source, paths)
            .await
    }

    /// Ingests as `mode` says (`Sync`: the paths are the source's whole current state).
    pub(crate) async fn ingest_as(
        &self,
        mode: ingest::IngestMode,
        tenant: &str,
        source: &str,
        paths: &[PathBuf],
    ) -> ingest::IngestReport {
        ingest::ingest_paths(
            self.app.state.store.as_ref(),
            &self.clock,
            &TenantId::parse(tenant).unwrap(),
            &SourceName::parse(source).unwrap(),
            paths,
            mode,
        )
        .await
        .unwrap()
    }

    /// Ingests the repository's sample evidence: one source per folder.
    pub(crate) async fn ingest_fixtures(&self, tenant: &str) {
        for source in ["osv-go", "csaf", "csaf-vex", "openvex", "cyclonedx-vex", "policy"] {
            let report = self.ingest(tenant, source, &[fixtures().join(source)]).await;
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        }
    }

    pub(crate) async fn get(&self, url: &str) -> Response {
        self.http.get(self.url(url)).send().await.unwrap()
    }

    /// A GET on the operator listener.
    pub(crate) async fn admin_get(&self, path: &str) -> Response {
        let url = format!("{}{path}", self.admin_base);
        self.http.get(url).send().await.unwrap()
    }

    pub(crate) fn url(&self, url: &str) -> String {
        if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Requests as one tenant.
pub(crate) struct TenantClient<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) tenant: String,
}

impl TenantClient<'_> {
    /// A token of this tenant with `scopes`, bound to `key`, issued now (test clock).
    pub(crate) fn token(&self, key: &DpopKey, scopes: &[&str]) -> String {
        self.token_for(key, scopes, Duration::from_secs(3600))
    }

    /// A token of this tenant with `scopes`, bound to `key`, issued now for `lifetime`.
    pub(crate) fn token_for(&self, key: &DpopKey, scopes: &[&str], lifetime: Duration) -> String {
        let tenant = TenantId::parse(&self.tenant).unwrap();
        let now = self.app.clock.now();
        self.app
            .issuer
            .mint_at(&tenant, scopes, "test-user", key.jwk_thumbprint(), lifetime, now)
    }

    /// A request with a fresh DPoP-bound token and proof, without the tenant header.
    pub(crate) fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authed_for(method, path, Duration::from_secs(3600))
    }

    /// A request with a fresh DPoP proof and a token that expires after `lifetime`,
    /// without the tenant header.
    pub(crate) fn authed_for(
        &self,
        method: reqwest::Method,
        path: &str,
        lifetime: Duration,
    ) -> reqwest::RequestBuilder {
        self.authed_with(method, path, &["export:read", "export:write"], lifetime)
    }

    /// A request of this tenant (tenant header included) whose token has `scopes`.
    pub(crate) fn scoped(
        &self,
        method: reqwest::Method,
        path: &str,
        scopes: &[&str],
    ) -> reqwest::RequestBuilder {
        self.authed_with(method, path, scopes, Duration::from_secs(3600))
            .header("X-StellaOps-Tenant", &self.tenant)
    }

    /// A request of this tenant with `export:read` and `export:admin`.
    pub(crate) fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.scoped(method, path, &["export:read", "export:admin"])
    }

    fn authed_with(
        &self,
        method: reqwest::Method,
        path: &str,
        scopes: &[&str],
        lifetime: Duration,
    ) -> reqwest::RequestBuilder {
        let url = self.app.url(path);
        let key = DpopKey::generate(Alg::EdDSA);
        let token = self.token_for(&key, scopes, lifetime);
        let public = url.replacen(&self.app.base, &self.app.public_base, 1);
        let htu = public.split('?').next().unwrap().to_owned();
        let proof = key.proof_at(method.as_str(), &htu, Some(&token), None, self.app.clock.now());
        self.app
            .http
            .request(method, url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
    }

    /// A request of this tenant (tenant header included) whose token has `scopes`.
    pub(crate) fn with_scopes(
        &self,
        method: reqwest::Method,
        path: &str,
        scopes: &[&str],
    ) -> reqwest::RequestBuilder {
        let url = self.app.url(path);
        let key = DpopKey::generate(Alg::EdDSA);
        let token = self.token(&key, scopes);
        let public = url.replacen(&self.app.base, &self.app.public_base, 1);
        let htu = public.split('?').next().unwrap().to_owned();
        let proof = key.proof_at(method.as_str(), &htu, Some(&token), None, self.app.clock.now());
        self.app
            .http
            .request(method, url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .header("X-StellaOps-Tenant", &self.tenant)
    }

    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(reqwest::Method::GET, path)
            .header("X-StellaOps-Tenant", &self.tenant)
    }

    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(reqwest::Method::POST, path)
            .header("X-StellaOps-Tenant", &self.tenant)
    }

    pub(crate) fn profile_id(&self, name: &str) -> String {
        format!("export-profile::{}::{name}", self.tenant)
    }

    /// Creates a run and asserts it was accepted.
    pub(crate) async fn create_run(&self, body: Value) -> RunAccepted {
        let response = self.post("/export-center/runs").json(&body).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    pub(crate) async fn run(&self, run_id: &str) -> RunStatusResponse {
        let response = self
            .get(&format!("/export-center/runs/{run_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Creates a run of `profile` with `extra` request fields, runs it, returns its status.
    pub(crate) async fn export(&self, profile: &str, extra: Value) -> RunStatusResponse {
        let mut body = json!({ "profileId": self.profile_id(profile) });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let accepted = self.create_run(body).await;
        self.app.run_pending().await;
        self.run(&accepted.run_id).await
    }
}

/// Downloads every output of a finished run: file name → bytes.
pub(crate) async fn download_all(
    app: &TestApp,
    status: &RunStatusResponse,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for output in &status.outputs {
        let response = app.get(&output.url).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", output.url);
        files.insert(output_name(&output.url), response.bytes().await.unwrap().to_vec());
    }
    files
}

/// The file name of an output's signed URL: its last path segment.
pub(crate) fn output_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// Asserts a problem response: status, `code`, and the content type.
pub(crate) async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:export-center:error:{code}"));
    assert!(
        body["traceId"].as_str().is_some_and(|id| id.len() == 32),
        "{body}"
    );
    assert!(
        body["instance"]
            .as_str()
            .is_some_and(|path| path.starts_with('/')),
        "{body}"
    );
    body
}

/// The part of the artifact key layout that names a run: `runs/<tenant>/<date>/<seq>`
/// for `export-run::<tenant>::<date>::<seq>`.
pub(crate) fn run_prefix(run_id: &str) -> String {
    let parts: Vec<&str> = run_id.split("::").collect();
    format!("runs/{}/{}/{}", parts[1], parts[2], parts[3])
}

/// Every file under `dir`, at any depth (none when `dir` does not exist).
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/evidence")
}

pub(crate) fn shared_data() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/corpus");
    assert!(
        dir.is_dir(),
        "the evidence corpus is missing at {}",
        dir.display()
    );
    dir
}

/// Two tenants: `acme` with a daily profile and a narrow one, `globex` with its own.
const TENANTS: &str = r#"
[acme.profiles.daily]
targets = ["advisory", "vex", "policy"]
retention = { default_days = 7, max_days = 30 }

[acme.profiles.osv-only]
targets = ["advisory:osv-go"]
formats = ["ndjson"]
bundle = { enabled = false }

[acme.profiles.tiny]
targets = ["advisory"]

[acme.profiles.signed]
targets = ["advisory", "vex", "policy"]
signing = { enabled = true, keys = ["kms://acme/signer", "kms://acme/p256", "kms://globex/signer", "vault://acme/signer", "kms://acme/absent"] }

[acme.profiles.signed-gz]
targets = ["advisory", "vex", "policy"]
signing = { enabled = true, keys = ["kms://acme/signer"] }
bundle = { format = "tar.gz" }

[acme.profiles.signed-zip]
targets = ["advisory", "vex", "policy"]
signing = { enabled = true, keys = ["kms://acme/signer"] }
bundle = { format = "zip" }

[acme.profiles.sealed-off]
targets = ["advisory"]
signing = { enabled = true, keys = ["kms://acme/signer"] }
encryption = { recipients = ["age1p88lfa2wgjlr8f3gv7f25p3ufka7k99khla7345utvnzdyyru58q6v00sr"] }

[acme.profiles.published]
targets = ["advisory", "vex", "policy"]
distributions = ["oci", "object", "http"]
signing = { enabled = true, keys = ["kms://acme/signer"] }

[acme.profiles.mirror]
targets = ["advisory", "vex"]
signing = { keys = ["kms://acme/signer"] }
mirror = { mode = "delta", valid_days = 10 }

[globex.profiles.daily]
targets = ["advisory", "vex"]

[globex.profiles.mirror]
targets = ["advisory", "vex"]
signing = { keys = ["kms://globex/signer"] }
mirror = { mode = "full" }
"#;

/// The identity of the fixed test recipient in the `sealed-off` profile.
pub(crate) const TEST_AGE_IDENTITY: &str =
    "AGE-SECRET-KEY-1D5D70GYFGY0LWHUP3D8C48STWMFS9TQ7QRG8CW2WVNTV9KRG75NSZLYD8J";

/// A plain HTTP client. reqwest brings no TLS crypto provider of its own here (SPEC §17:
/// one provider, ring, installed per process), so every client a test builds comes
/// from this function, which installs it first.
pub(crate) fn http_client() -> reqwest::Client {
    export_egress::install_crypto_provider();
    reqwest::Client::new()
}
