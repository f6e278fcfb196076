//! Servers as real processes: started from the built binary with a data directory and a
//! port, killed when dropped, and called over HTTP with a DPoP client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use export_auth::client::DpopKey;
use export_auth::http::DpopClient;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::output_name;

/// A server process, killed when dropped, with the addresses it bound.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// The public listener's address.
    pub(crate) address: SocketAddr,
    /// The operator listener's address.
    pub(crate) admin_address: SocketAddr,
}

impl Server {
    /// `http://<public address>`.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `export-center` with the data directory, any free loopback ports for both listeners,
/// and leases and polls short enough for tests; callers add the subcommand and anything
/// else (a restart on the same address sets `EXPORT_CENTER_SERVER__LISTEN` to it).
pub(crate) fn command(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_export-center"));
    command
        .env("EXPORT_CENTER_SERVER__DATA_DIR", data)
        .env("EXPORT_CENTER_SERVER__LISTEN", "127.0.0.1:0")
        .env("EXPORT_CENTER_SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .env("EXPORT_CENTER_WORKERS__LEASE_SECONDS", "2")
        .env("EXPORT_CENTER_WORKERS__HEARTBEAT_SECONDS", "1")
        .env("EXPORT_CENTER_WORKERS__POLL_INTERVAL_MS", "100")
        .env("EXPORT_CENTER_WORKERS__CONCURRENCY", "1")
        .env("RUST_LOG", "warn");
    command
}

/// Spawns `export-center serve` with `serve_args` and waits until it has bound its
/// listeners, which it names in its log. Ports are never chosen ahead (another test could
/// take one in between and answer in the server's place); a server that cannot start
/// fails the test with what it wrote.
pub(crate) async fn start(command: Command, serve_args: &[&str]) -> Server {
    try_start(command, serve_args)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"))
}

/// [`start`], with a server that could not start as an error saying why.
pub(crate) async fn try_start(mut command: Command, serve_args: &[&str]) -> Result<Server, String> {
    // The tests' own HTTP clients need the process's rustls provider.
    export_egress::install_crypto_provider();
    let mut child = command
        .arg("serve")
        .args(serve_args)
        // The two "listening" lines, as JSON; warnings and errors as before.
        .env("RUST_LOG", "warn,export_server::app=info")
        .env("EXPORT_CENTER_LOGGING__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (bound, addresses) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || read_log(BufReader::new(stderr), bound));
    match tokio::time::timeout(Duration::from_secs(60), addresses).await {
        Ok(Ok(Ok((address, admin_address)))) => Ok(Server {
            child,
            address,
            admin_address,
        }),
        Ok(Ok(Err(log))) => {
            let status = child.wait().unwrap();
            Err(format!("the server did not start ({status}):\n{log}"))
        }
        Ok(Err(_)) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("the server did not name its listeners within 60 s".to_owned())
        }
    }
}

/// Reads a server's JSON log: sends its public and operator addresses once both are
/// logged (or all it wrote, if it ends first), then passes the rest on to the test's
/// stderr, where a failing test shows it.
fn read_log(
    log: impl BufRead,
    bound: tokio::sync::oneshot::Sender<Result<(SocketAddr, SocketAddr), String>>,
) {
    let (mut public, mut admin) = (None, None);
    let mut bound = Some(bound);
    let mut written = String::new();
    for line in log.lines() {
        let Ok(line) = line else { break };
        let Some(waiting) = bound.take() else {
            eprintln!("{line}");
            continue;
        };
        written.push_str(&line);
        written.push('\n');
        let entry = serde_json::from_str::<Value>(&line).unwrap_or_default();
        let address = entry["address"].as_str().and_then(|a| a.parse().ok());
        let message = entry["message"].as_str().unwrap_or_default();
        if message.starts_with("export center") {
            public = public.or(address);
        } else if message.starts_with("operator endpoints") {
            admin = admin.or(address);
        }
        match (public, admin) {
            (Some(public), Some(admin)) => {
                let _ = waiting.send(Ok((public, admin)));
            }
            _ => bound = Some(waiting),
        }
    }
    if let Some(waiting) = bound {
        let _ = waiting.send(Err(written));
    }
}

/// A DPoP client of `tenant-default`, with a token `command` mints.
pub(crate) fn client(command: Command) -> DpopClient {
    client_as(command, "tenant-default")
}

/// A DPoP client of `tenant`, with a token `command` mints.
pub(crate) fn client_as(command: Command, tenant: &str) -> DpopClient {
    let (access_token, key) = mint_as(command, tenant);
    DpopClient::new(crate::helpers::http_client(), &access_token, key)
}

/// An access token of `tenant-default` and its DPoP key, as `command` mints them.
pub(crate) fn mint(command: Command) -> (String, DpopKey) {
    mint_as(command, "tenant-default")
}

/// An access token of `tenant` and its DPoP key, as `command` mints them.
fn mint_as(mut command: Command, tenant: &str) -> (String, DpopKey) {
    let output = command.args(["token", "--tenant", tenant]).output().unwrap();
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
