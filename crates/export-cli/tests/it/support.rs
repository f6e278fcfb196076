//! The harness: a real `export-center serve` child process on a free loopback port and a
//! temporary data directory, and the real `exportctl` binary run against it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub(crate) const TENANT: &str = "tenant-default";

/// How long any one `exportctl` invocation may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn exportctl_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_exportctl"))
}

/// The `export-center` binary: `TEST_EXPORT_CENTER_BIN` when set, else the one beside
/// `exportctl`, built here once per test run. `scripts/test` sets the variable to the binary
/// its workspace build made, so that this harness never rebuilds it with other features
/// (and without the failpoints the server's tests use) while those tests run it.
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(binary) = std::env::var_os("TEST_EXPORT_CENTER_BIN") {
            let binary = PathBuf::from(binary);
            assert!(
                binary.is_file(),
                "TEST_EXPORT_CENTER_BIN: {} is not a file",
                binary.display()
            );
            return binary;
        }
        let binary = exportctl_binary().with_file_name("export-center");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--bin", "export-center"])
            .current_dir(workspace_root());
        if binary.parent().and_then(Path::file_name) == Some("release".as_ref()) {
            cargo.arg("--release");
        }
        let output = cargo.output().expect("running cargo build --bin export-center");
        assert!(
            output.status.success(),
            "cargo build --bin export-center failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// A loopback port nothing listens on: bind port 0, note the port, let it go (for a
/// server that is never started; servers bind port 0 themselves).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("the bound address").port()
}

/// Options of a test server.
#[derive(Debug, Clone)]
pub(crate) struct ServerOptions {
    /// Workers in the process; 0 keeps every run queued.
    pub(crate) workers: u32,
    /// Evidence directories ingested as (source, directory).
    pub(crate) evidence: Vec<(String, PathBuf)>,
    /// A configuration file (TOML) instead of the built-in tenant and profile.
    pub(crate) config: Option<String>,
    /// Generate the Ed25519 key `kms://tenant-default/signer` in the tenant's keyring.
    pub(crate) signing_key: bool,
    /// `server.public_base_url`, for a server behind a TLS terminator.
    pub(crate) public_base_url: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            evidence: vec![(
                "osv-go".to_owned(),
                workspace_root().join("fixtures/evidence/osv-go"),
            )],
            config: None,
            signing_key: false,
            public_base_url: None,
        }
    }
}

/// A running `export-center serve`, killed when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    data_dir: TempDir,
    port: u16,
    options: ServerOptions,
    pub(crate) token_file: PathBuf,
}

impl Server {
    pub(crate) fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    pub(crate) fn start_with(options: ServerOptions) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("exportctl-it-")
            .tempdir()
            .expect("creating a data directory");
        let token_file = data_dir.path().join("token.json");
        let mut server = Self {
            child: None,
            // Bound by the server, which names it in its log; kept across restarts.
            port: 0,
            token_file,
            data_dir,
            options,
        };
        if let Some(config) = &server.options.config {
            std::fs::write(server.config_path(), config).expect("writing the configuration");
        }
        if server.options.signing_key {
            let keyring = server.signing_keyring();
            let output = server
                .command("keys")
                .args(["generate", "--name", "signer", "--out"])
                .arg(&keyring)
                .output()
                .expect("running export-center keys generate");
            assert!(
                output.status.success(),
                "keys generate failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        server.spawn();
        for (source, dir) in server.options.evidence.clone() {
            let output = server
                .command("ingest")
                .args(["--tenant", TENANT, "--source", &source])
                .arg(&dir)
                .output()
                .expect("running export-center ingest");
            assert!(
                output.status.success(),
                "ingest failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        mint_token(server.command("token"), &server.token_file);
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir.path().join("export-center.toml")
    }

    /// Where `kms://tenant-default/signer` lives (the default keyring directory).
    pub(crate) fn signing_keyring(&self) -> PathBuf {
        self.data_dir.path().join("keyrings").join(TENANT)
    }

    /// `export-center verify <dir> --key <signer.pub.pem>` must pass.
    #[track_caller]
    pub(crate) fn assert_verifies(&self, dir: &Path) {
        let verify = self
            .command("verify")
            .arg(dir)
            .arg("--key")
            .arg(self.signing_keyring().join("signer.pub.pem"))
            .output()
            .expect("running export-center verify");
        assert!(
            verify.status.success(),
            "export-center verify failed:\n{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    /// `export-center <subcommand>` with this server's environment and configuration.
    pub(crate) fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(server_binary());
        command.arg(subcommand);
        let takes_config = matches!(subcommand, "serve" | "ingest" | "token");
        if takes_config && self.options.config.is_some() {
            command.arg("--config").arg(self.config_path());
        }
        command
            .env("EXPORT_CENTER_SERVER__DATA_DIR", self.data_dir.path())
            .env("EXPORT_CENTER_SERVER__LISTEN", format!("127.0.0.1:{}", self.port))
            .env("EXPORT_CENTER_SERVER__ADMIN_LISTEN", "127.0.0.1:0")
            .env(
                "EXPORT_CENTER_WORKERS__CONCURRENCY",
                self.options.workers.to_string(),
            )
            // A killed server's run is taken over soon after the restart.
            .env("EXPORT_CENTER_WORKERS__LEASE_SECONDS", "3")
            .env("EXPORT_CENTER_WORKERS__HEARTBEAT_SECONDS", "1")
            .env("EXPORT_CENTER_WORKERS__POLL_INTERVAL_MS", "100")
            .env("EXPORT_CENTER_LOGGING__LEVEL", "warn")
            .env_remove("RUST_LOG");
        if let Some(url) = &self.options.public_base_url {
            command.env("EXPORT_CENTER_SERVER__PUBLIC_BASE_URL", url);
        }
        command
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .expect("opening the server log");
        let child = self
            .command("serve")
            // The "listening" line, as JSON, beside the warnings.
            .env("RUST_LOG", "warn,export_server::app=info")
            .env("EXPORT_CENTER_LOGGING__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting export-center serve");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("export-center serve exited with {status}:\n{}", self.log());
            }
            if self.port == 0 {
                self.port = listening_port(&self.log()).unwrap_or(0);
            }
            if self.port != 0 && healthz(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "export-center serve did not become healthy:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL: a crash, no graceful shutdown).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// `exportctl` pointed at this server with its token.
    pub(crate) fn exportctl(&self) -> Command {
        let mut command = Command::new(exportctl_binary());
        command
            .env("EXPORTCTL_SERVER", self.url())
            .env("EXPORTCTL_TOKEN_FILE", &self.token_file)
            .env("EXPORTCTL_BACKOFF_MS", "100")
            .env_remove("EXPORTCTL_TENANT")
            .env_remove("EXPORTCTL_MAX_RETRIES")
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut command = self.exportctl();
        command.args(args);
        run(command)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Mints a dev token into `path` with `export-center token`.
fn mint_token(mut token: Command, path: &Path) {
    let output = token
        .args(["--tenant", TENANT])
        .output()
        .expect("running export-center token");
    assert!(
        output.status.success(),
        "export-center token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(path, &output.stdout).expect("writing the token file");
}

/// A token for a server that is not running: the dev issuer only needs a data directory.
pub(crate) fn offline_token(dir: &Path) -> PathBuf {
    let mut command = Command::new(server_binary());
    command
        .arg("token")
        .env("EXPORT_CENTER_SERVER__DATA_DIR", dir)
        .env("EXPORT_CENTER_LOGGING__LEVEL", "warn");
    let path = dir.join("token.json");
    mint_token(command, &path);
    path
}

/// The public port a server's JSON log says it listens on.
fn listening_port(log: &str) -> Option<u16> {
    log.lines().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        let message = entry["message"].as_str()?;
        if !message.starts_with("export center listening") {
            return None;
        }
        let address: std::net::SocketAddr = entry["address"].as_str()?.parse().ok()?;
        Some(address.port())
    })
}

fn healthz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// What one `exportctl` invocation did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    #[track_caller]
    pub(crate) fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "exportctl failed:\n{self}");
        self
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{self}"))
    }

    /// Every line of stdout as JSON (`runs create --follow --json`: the accepted run,
    /// then one line per event).
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {self}")))
            .collect()
    }

    /// The run id of `runs create --json` (the first line).
    pub(crate) fn run_id(&self) -> String {
        let lines = self.json_lines();
        let first = lines.first().unwrap_or_else(|| panic!("no output: {self}"));
        first["runId"].as_str().expect("runId").to_owned()
    }
}

/// The configuration that lets a server push to the test registry at `address` (plain
/// HTTP, and the one loopback address the egress rules allow).
pub(crate) fn registry_config(address: &str) -> String {
    format!(
        r#"
egress_allowlist = ["{address}"]

[distribution.oci.registries."{address}"]
insecure = true
"#
    )
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to its end (at most [`COMMAND_TIMEOUT`]), capturing its output.
pub(crate) fn run(mut command: Command) -> Run {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting exportctl");
    let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
    let status = wait_with_timeout(&mut child, COMMAND_TIMEOUT);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("reading stdout"),
        stderr: stderr.join().expect("reading stderr"),
    }
}

pub(crate) fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

pub(crate) fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for exportctl") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("exportctl did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
