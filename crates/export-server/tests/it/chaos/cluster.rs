//! The scale-out setup under test: three `export-center serve` replicas (two `all`, one
//! `worker`) sharing a data directory (keyrings, URL-signing key), a PostgreSQL server of
//! the test's own, an `s3s-fs` bucket as the artifact store, and a registry for OCI
//! distributions; and the faults done to them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use export_artifacts::testing::S3Server;
use export_auth::http::DpopClient;
use export_oci::testing::RegistryServer;
use rustix::process::{kill_process, Pid, Signal};

use super::postgres::PrivatePostgres;
use crate::helpers::{fixtures, http_client, shared_data};
use crate::processes::{client_as, command, try_start, Server};

/// The tenants, each with every profile of [`PROFILES`].
pub(crate) const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// The profiles runs are made of: signed tar.zst, signed tar.gz, signed and encrypted
/// with age, signed and pushed to the registry.
pub(crate) const PROFILES: [&str; 4] = ["signed", "bundled-gz", "encrypted", "published"];

/// How long a replica sent SIGTERM may take to stop (`server.shutdown_grace_seconds`).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The recipient of [`crate::helpers::TEST_AGE_IDENTITY`].
const AGE_RECIPIENT: &str = "age1p88lfa2wgjlr8f3gv7f25p3ufka7k99khla7345utvnzdyyru58q6v00sr";

/// The replicas' roles, in order: the first two serve the API.
const ROLES: [&str; 3] = ["all", "all", "worker"];

pub(crate) struct Cluster {
    /// The replicas' shared data directory.
    pub(crate) data: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) postgres: PrivatePostgres,
    pub(crate) s3: S3Server,
    pub(crate) registry: RegistryServer,
    replicas: Vec<Option<Server>>,
    /// `http://<address>` of each replica serving the API, read by the clients while the
    /// replicas come and go.
    pub(crate) api_bases: Arc<RwLock<Vec<String>>>,
}

impl Cluster {
    /// Starts the services, writes the configuration and keys, ingests every tenant's
    /// evidence and starts the replicas.
    pub(crate) async fn start() -> Self {
        let postgres = PrivatePostgres::start();
        let s3 = S3Server::start();
        let registry = RegistryServer::start();
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("export-center.toml");
        std::fs::write(&config, configuration(&registry.address)).unwrap();
        install_keys(data.path());
        let mut cluster = Self {
            data,
            config,
            postgres,
            s3,
            registry,
            replicas: Vec::new(),
            api_bases: Arc::default(),
        };
        for tenant in TENANTS {
            ingest(|| cluster.command(), &cluster.config, tenant);
        }
        for replica in 0..ROLES.len() {
            let server = try_start(cluster.command(), &cluster.serve_args(replica))
                .await
                .unwrap_or_else(|failure| panic!("{failure}"));
            cluster.replicas.push(Some(server));
        }
        cluster.publish_bases();
        cluster
    }

    /// `export-center` with the cluster's database, artifact store and configuration.
    pub(crate) fn command(&self) -> Command {
        let mut command = command(self.data.path());
        let s3 = self.s3.settings();
        command
            .env("EXPORT_CENTER_DATABASE__URL", self.postgres.url())
            .env(
                "EXPORT_CENTER_ARTIFACTS__URL",
                format!("s3://{}/artifacts", S3Server::BUCKET),
            )
            .env("EXPORT_CENTER_ARTIFACTS__S3__ENDPOINT", s3.endpoint.unwrap())
            .env("EXPORT_CENTER_ARTIFACTS__S3__ACCESS_KEY_ID", s3.access_key_id)
            .env(
                "EXPORT_CENTER_ARTIFACTS__S3__SECRET_ACCESS_KEY",
                S3Server::SECRET_ACCESS_KEY,
            )
            .env("EXPORT_CENTER_ARTIFACTS__S3__ALLOW_HTTP", "true");
        command
    }

    fn serve_args(&self, replica: usize) -> [&str; 4] {
        [
            "--config",
            self.config.to_str().unwrap(),
            "--role",
            ROLES[replica],
        ]
    }

    pub(crate) fn replica_count(&self) -> usize {
        ROLES.len()
    }

    /// A DPoP client of `tenant`, with a token the service mints (dev mode).
    pub(crate) fn client(&self, tenant: &str) -> DpopClient {
        client_as(self.command(), tenant)
    }

    /// SIGKILL: no shutdown, no cleanup; the replica stays down until [`Self::restart`].
    pub(crate) fn kill(&mut self, replica: usize) {
        if let Some(server) = self.replicas[replica].as_mut() {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }

    /// Stops every replica (SIGKILL).
    pub(crate) fn stop_replicas(&mut self) {
        for replica in 0..ROLES.len() {
            self.kill(replica);
        }
    }

    /// SIGTERM, then waits for the process to exit; returns how long it took (`None` when
    /// it had not exited after twice the grace period, and was then killed).
    pub(crate) async fn terminate(&mut self, replica: usize) -> Option<Duration> {
        let server = self.replicas[replica].as_mut().expect("a started replica");
        let pid = Pid::from_child(&server.child);
        let sent = Instant::now();
        kill_process(pid, Signal::TERM).unwrap();
        while sent.elapsed() < 2 * SHUTDOWN_GRACE + Duration::from_secs(5) {
            if server.child.try_wait().unwrap().is_some() {
                return Some(sent.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = server.child.kill();
        let _ = server.child.wait();
        None
    }

    /// Starts a stopped replica again on its former addresses (or, when another process
    /// took one meanwhile, on new ones, which the clients then use).
    pub(crate) async fn restart(&mut self, replica: usize) {
        let previous = self.replicas[replica].take().expect("a replica");
        let (address, admin_address) = (previous.address, previous.admin_address);
        drop(previous);
        let mut again = self.command();
        again
            .env("EXPORT_CENTER_SERVER__LISTEN", address.to_string())
            .env("EXPORT_CENTER_SERVER__ADMIN_LISTEN", admin_address.to_string());
        let server = match try_start(again, &self.serve_args(replica)).await {
            Ok(server) => server,
            Err(_) => try_start(self.command(), &self.serve_args(replica))
                .await
                .unwrap_or_else(|failure| panic!("replica {replica} did not start again: {failure}")),
        };
        self.replicas[replica] = Some(server);
        self.publish_bases();
    }

    fn publish_bases(&self) {
        let bases = self
            .replicas
            .iter()
            .zip(ROLES)
            .filter(|(_, role)| *role == "all")
            .filter_map(|(server, _)| server.as_ref().map(Server::base))
            .collect();
        *self.api_bases.write().unwrap() = bases;
    }

    /// Whether every replica answers `/readyz` with `200`.
    pub(crate) async fn ready(&self) -> bool {
        let http = http_client();
        for server in self.replicas.iter().flatten() {
            let answer = http
                .get(format!("{}/readyz", server.base()))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if !answer.is_ok_and(|answer| answer.status() == 200) {
                return false;
            }
        }
        true
    }

    /// Waits until every replica is ready; returns how long that took.
    pub(crate) async fn wait_until_ready(&self, since: Instant) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.ready().await {
            assert!(
                Instant::now() < deadline,
                "the replicas were not ready after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        since.elapsed()
    }
}

/// The configuration every replica reads: the tenants' profiles, the registry, fast
/// retries, and limits that let the harness create its runs at its own pace.
fn configuration(registry: &str) -> String {
    let mut text = format!(
        r#"egress_allowlist = ["{registry}"]

[server]
shutdown_grace_seconds = {grace}

[limits]
runs_per_minute = 6000
runs_burst = 1000
idempotency_lease_seconds = 3

[distribution.oci]
attempts = 3
retry_backoff_ms = 200
timeout_seconds = 10

[distribution.oci.registries."{registry}"]
insecure = true
"#,
        grace = SHUTDOWN_GRACE.as_secs()
    );
    for tenant in TENANTS {
        text.push_str(&format!(
            r#"
[tenants.{tenant}.profiles.signed]
targets = ["advisory", "vex", "policy"]
signing = {{ enabled = true, keys = ["kms://{tenant}/signer"] }}

[tenants.{tenant}.profiles.bundled-gz]
targets = ["advisory", "vex"]
signing = {{ enabled = true, keys = ["kms://{tenant}/signer"] }}
bundle = {{ format = "tar.gz" }}

[tenants.{tenant}.profiles.encrypted]
targets = ["advisory", "vex", "policy"]
signing = {{ enabled = true, keys = ["kms://{tenant}/signer"] }}
encryption = {{ enabled = true, recipients = ["{AGE_RECIPIENT}"] }}

[tenants.{tenant}.profiles.published]
targets = ["advisory", "vex", "policy"]
distributions = ["oci", "http"]
signing = {{ enabled = true, keys = ["kms://{tenant}/signer"] }}
"#
        ));
    }
    text
}

/// An Ed25519 signing key per tenant, in the shared keyring directory.
fn install_keys(data: &Path) {
    for tenant in TENANTS {
        let (private, _) = export_signing::generate("ed25519".parse().unwrap()).unwrap();
        let dir = data.join("keyrings").join(tenant);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("signer.pem"), private).unwrap();
    }
}

/// The repository's fixtures for every tenant, and for `acme` the Go advisories three
/// times over as well, so that some runs last long enough to be killed in the middle.
pub(crate) fn ingest(command: impl Fn() -> Command, config: &Path, tenant: &str) {
    let mut sources: Vec<(String, PathBuf)> =
        ["osv-go", "csaf", "csaf-vex", "openvex", "cyclonedx-vex", "policy"]
            .into_iter()
            .map(|source| (source.to_owned(), fixtures().join(source)))
            .collect();
    if tenant == "acme" {
        for copy in ["go-a", "go-b", "go-c"] {
            sources.push((copy.to_owned(), shared_data().join("osv-go")));
        }
    }
    for (source, path) in sources {
        let status = command()
            .args(["ingest", "--tenant", tenant, "--source", &source, "--config"])
            .arg(config)
            .arg(path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "ingest {source} for {tenant}");
    }
}
