//! Servers as real processes: started from the built binary with a data directory and a
//! port, killed when dropped, and called over HTTP with a DPoP client.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use export_auth::client::DpopKey;
use export_auth::http::DpopClient;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::output_name;

/// A server process, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `export-center` with the data directory, the listen port, any free port for the
/// operator listener, and leases and polls short enough for tests; callers add the
/// subcommand and anything else.
pub(crate) fn command(data: &Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_export-center"));
    command
        .env("EXPORT_CENTER_SERVER__DATA_DIR", data)
        .env("EXPORT_CENTER_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EXPORT_CENTER_SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .env("EXPORT_CENTER_WORKERS__LEASE_SECONDS", "2")
        .env("EXPORT_CENTER_WORKERS__HEARTBEAT_SECONDS", "1")
        .env("EXPORT_CENTER_WORKERS__POLL_INTERVAL_MS", "100")
        .env("EXPORT_CENTER_WORKERS__CONCURRENCY", "1")
        .env("RUST_LOG", "warn");
    command
}

/// Spawns `export-center serve` with `serve_args`, as `command` has it set up.
fn spawn(mut command: Command, serve_args: &[&str]) -> Server {
    let child = command
        .arg("serve")
        .args(serve_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server { child }
}

/// Spawns `export-center serve` with `serve_args` and waits until it answers on `port`.
pub(crate) async fn start(command: Command, port: u16, serve_args: &[&str]) -> Server {
    let server = spawn(command, serve_args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// A port nothing listens on at the moment.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DPoP client of `tenant-default`, with a token `command` mints.
pub(crate) fn client(command: Command) -> DpopClient {
    let (access_token, key) = mint(command);
    DpopClient::new(reqwest::Client::new(), &access_token, key)
}

/// An access token of `tenant-default` and its DPoP key, as `command` mints them.
pub(crate) fn mint(mut command: Command) -> (String, DpopKey) {
    let output = command
        .args(["token", "--tenant", "tenant-default"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted: Value = serde_json::from_slice(&output.stdout).unwrap();
    let key = DpopKey::from_pkcs8_pem(minted["dpopKey"].as_str().unwrap()).unwrap();
    (minted["accessToken"].as_str().unwrap().to_owned(), key)
}

pub(crate) async fn call(client: &DpopClient, method: Method, url: &str, body: Option<Value>) -> Value {
    let response = client
        .send(method, url, |request| {
            let request = request.header("X-StellaOps-Tenant", "tenant-default");
            match &body {
                Some(body) => request.json(body),
                None => request,
            }
        })
        .await
        .unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.unwrap()
}

pub(crate) async fn wait_for(client: &DpopClient, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = call(client, Method::GET, url, None).await;
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every output of a run (but its provenance, which names the run), sorted by name.
pub(crate) async fn download(status: &Value) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for output in status["outputs"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let name = output_name(url);
        if name == "provenance.dsse.json" {
            continue;
        }
        files.push((
            name,
            reqwest::get(url).await.unwrap().bytes().await.unwrap().to_vec(),
        ));
    }
    files.sort();
    files
}
