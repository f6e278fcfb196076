//! `S3Server`: a real S3-compatible server (`s3s-fs`, from crates.io) on a free loopback
//! port, with a temporary data directory and fixed credentials, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{ArtifactStore, S3Location, S3Settings, DEFAULT_S3_REGION};

/// How to install the server; `scripts/test` does it before running the tests.
const INSTALL: &str = "cargo install s3s-fs@0.14.1 --features binary --locked";

/// What `s3s-fs` logs once it listens, followed by its address.
const LISTENING: &str = "server is running at ";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `s3s-fs` process: an S3 API on `127.0.0.1`, storing its buckets as
/// directories of a temporary data directory (or the caller's, [`S3Server::start_in`]) (objects are plain files under
/// `<data_dir>/<bucket>/<key>`; multipart parts and metadata live beside the buckets).
///
/// The bucket [`S3Server::BUCKET`] exists from the start; [`S3Server::create_bucket`] adds
/// more. The process is killed, and the directory removed, on drop.
///
/// A missing `s3s-fs` binary is a panic that says how to install it, never a skipped test.
pub struct S3Server {
    child: Child,
    endpoint: String,
    data_dir: PathBuf,
    /// The temporary data directory of [`S3Server::start`], removed on drop; `None` for
    /// the caller's directory of [`S3Server::start_in`].
    _temporary: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    pub const ACCESS_KEY_ID: &'static str = "export-center-test";
    pub const SECRET_ACCESS_KEY: &'static str = "export-center-test-secret-key";
    /// The bucket that exists from the start.
    pub const BUCKET: &'static str = "export-center-test";

    /// Starts `s3s-fs` on a port the kernel picks (read back from its log, so two tests
    /// never race for a port), and returns once it accepts connections.
    pub fn start() -> Self {
        let temporary = tempfile::Builder::new()
            .prefix("s3s-fs-")
            .tempdir()
            .expect("create the S3 server's data directory");
        let mut server = Self::start_in(temporary.path());
        server._temporary = Some(temporary);
        server
    }

    /// Starts `s3s-fs` as [`S3Server::start`] does, storing its buckets in `data_dir`
    /// (an existing directory, left in place on drop): a small volume, say, to see what
    /// a full disk under the bucket does.
    pub fn start_in(data_dir: &Path) -> Self {
        let (child, endpoint) = spawn(data_dir, 0);
        let server = Self {
            child,
            endpoint,
            data_dir: data_dir.to_owned(),
            _temporary: None,
        };
        server.create_bucket(Self::BUCKET);
        server.wait_until_it_answers();
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Settings that reach this server with its credentials.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: DEFAULT_S3_REGION.to_owned(),
            access_key_id: Self::ACCESS_KEY_ID.to_owned(),
            secret_access_key: export_core::Secret::new(Self::SECRET_ACCESS_KEY),
            allow_http: true,
        }
    }

    /// An artifact store in [`S3Server::BUCKET`], under `prefix` (empty for none).
    pub fn artifact_store(&self, prefix: &str) -> ArtifactStore {
        let location = S3Location::new(Self::BUCKET, prefix).expect("valid test S3 location");
        ArtifactStore::s3(&self.settings(), &location).expect("S3 artifact store")
    }

    /// Creates the bucket `name`: for `s3s-fs`, a bucket is a directory of its data
    /// directory.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.data_dir.join(name))
            .unwrap_or_else(|err| panic!("create bucket `{name}`: {err}"));
    }

    /// Where the server keeps its buckets, to look at what is stored.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server now (to test what happens when S3 is down); dropping does it too.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server and starts it again on the same port with the same data directory,
    /// as an operator's restart does: what it stored survives, connections do not.
    pub fn restart(&mut self, down_for: Duration) {
        self.kill();
        std::thread::sleep(down_for);
        let port = self
            .endpoint
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("an endpoint with a port");
        let (child, endpoint) = spawn(&self.data_dir, port);
        assert_eq!(endpoint, self.endpoint, "s3s-fs came back on another address");
        self.child = child;
        self.wait_until_it_answers();
    }

    fn wait_until_it_answers(&self) {
        let address = self.endpoint.strip_prefix("http://").expect("an http endpoint");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while let Err(err) = TcpStream::connect(address) {
            assert!(
                Instant::now() < deadline,
                "s3s-fs does not answer at {address}: {err}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `s3s-fs` over `data_dir` on `port` (0: one the kernel picks) and returns it with
/// the endpoint it logs.
fn spawn(data_dir: &Path, port: u16) -> (Child, String) {
    let binary = binary();
    let mut child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3Server::ACCESS_KEY_ID])
        .args(["--secret-key", S3Server::SECRET_ACCESS_KEY])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", binary.display()));
    let endpoint = read_endpoint(&mut child);
    (child, endpoint)
}

/// The `s3s-fs` binary: on `PATH`, or where `cargo install` puts it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`s3s-fs` was found neither on PATH nor in the cargo bin directory; the S3 \
                 tests need this real S3-compatible server. Install it with `{INSTALL}` \
                 (scripts/test does)"
            )
        })
}

/// Reads the server's log until it says where it listens, then keeps forwarding the log
/// to stderr (where the test harness captures it) so that the pipe never fills up.
fn read_endpoint(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let endpoint = line
                .split_once(LISTENING)
                .and_then(|(_, rest)| rest.split_whitespace().next());
            match (endpoint, &sender) {
                (Some(endpoint), Some(found)) => {
                    let _ = found.send(endpoint.to_owned());
                    sender = None;
                }
                _ => eprintln!("s3s-fs: {line}"),
            }
        }
    });
    match receiver.recv_timeout(STARTUP_TIMEOUT) {
        Ok(endpoint) => endpoint,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("s3s-fs did not start listening (exit status {status:?}); its log is above")
        }
    }
}
