//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution
//! registry), started on a free loopback port with a temporary storage directory and
//! stopped when dropped. A missing binary is a loud failure, never a skipped test.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::settings::{OciSettings, RegistrySettings};

pub struct RegistryServer {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// Its configuration, its log and its storage.
    dir: tempfile::TempDir,
}

/// Where the registry binary is (`EXPORT_CENTER_TEST_REGISTRY` overrides).
fn binary() -> PathBuf {
    std::env::var_os("EXPORT_CENTER_TEST_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

impl RegistryServer {
    /// Starts a registry and waits until it answers `GET /v2/`.
    pub fn start() -> Self {
        Self::start_with("", "")
    }

    /// A registry in maintenance read-only mode: it serves pulls and refuses every push.
    pub fn start_read_only() -> Self {
        Self::start_with("  maintenance:\n    readonly:\n      enabled: true\n", "")
    }

    /// A registry that wants HTTP Basic credentials: [`Self::USERNAME`] and
    /// [`Self::PASSWORD`] (an htpasswd file with their bcrypt hash).
    pub fn start_with_basic_auth() -> Self {
        Self::start_with(
            "",
            "auth:\n  htpasswd:\n    realm: export-center-test\n    path: {dir}/htpasswd\n",
        )
    }

    pub const USERNAME: &'static str = "exporter";
    pub const PASSWORD: &'static str = "export-s3cret";
    /// bcrypt (cost 5) of [`Self::PASSWORD`], made once with Python's `bcrypt`.
    const PASSWORD_BCRYPT: &'static str = "$2b$05$sG62bbCIqBcFDuLXDPjYG.rr3j5qExctBsAQvmwOvIk94H7K1MbJi";

    fn start_with(storage_extra: &str, extra: &str) -> Self {
        let binary = binary();
        assert!(
            binary.exists(),
            "the OCI distribution tests need a real registry: `{}` is missing; install it with \
             `apt-get install docker-registry` (scripts/test does)",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("registry dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("{}:{}\n", Self::USERNAME, Self::PASSWORD_BCRYPT),
        )
        .expect("htpasswd");
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{storage_extra}{extra}http:\n  addr: {address}\n",
                dir.path().join("storage").display()
            ),
        )
        .expect("registry config");
        let server = Self {
            child: spawn(dir.path()),
            address,
            dir,
        };
        server.wait_until_ready();
        server
    }

    /// Starts a stopped registry again on its address, with what it stored.
    pub fn start_again(&mut self) {
        self.stop();
        self.child = spawn(self.dir.path());
        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(&self.address) {
                use std::io::{Read, Write};
                let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
                let mut answer = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut answer).is_ok()
                    && (answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.0 401"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the registry on {} did not start within 20 s", self.address);
    }

    /// Settings that reach this registry over plain HTTP, with fast retries.
    pub fn settings(&self) -> OciSettings {
        let mut settings = OciSettings {
            retry_backoff_ms: 50,
            timeout_seconds: 10,
            ..OciSettings::default()
        };
        settings.registries.insert(
            self.address.clone(),
            RegistrySettings {
                insecure: true,
                ..RegistrySettings::default()
            },
        );
        settings
    }

    /// Stops the registry now (to test a registry that is down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the registry of the configuration in `dir`.
fn spawn(dir: &std::path::Path) -> Child {
    let binary = binary();
    // The registry logs every 404 of a blob probe as an error: keep it in a file.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .expect("registry log");
    Command::new(&binary)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", binary.display()))
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}
