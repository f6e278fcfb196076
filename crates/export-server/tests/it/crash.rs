//! Crash recovery with a real process: a server killed mid-run loses its lease, the
//! restarted server takes the run over, and the outputs are byte-identical to those of
//! an undisturbed run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use export_auth::client::DpopKey;
use export_auth::http::DpopClient;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::shared_data;

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data: &Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_export-center"));
    command
        .env("EXPORT_CENTER_SERVER__DATA_DIR", data)
        .env("EXPORT_CENTER_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EXPORT_CENTER_WORKERS__LEASE_SECONDS", "2")
        .env("EXPORT_CENTER_WORKERS__HEARTBEAT_SECONDS", "1")
        .env("EXPORT_CENTER_WORKERS__POLL_INTERVAL_MS", "100")
        .env("EXPORT_CENTER_WORKERS__CONCURRENCY", "1")
        .env("RUST_LOG", "warn");
    command
}

async fn start(data: &Path, port: u16) -> Server {
    let child = command(data, port)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child };
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

fn client(data: &Path, port: u16) -> DpopClient {
    let output = command(data, port)
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
    DpopClient::new(
        reqwest::Client::new(),
        minted["accessToken"].as_str().unwrap(),
        key,
    )
}

async fn call(client: &DpopClient, method: Method, url: &str, body: Option<Value>) -> Value {
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

async fn wait_for(client: &DpopClient, url: &str, done: impl Fn(&Value) -> bool) -> Value {
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

async fn download(status: &Value) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for output in status["outputs"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let name = url
            .split('?')
            .next()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
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

#[tokio::test]
async fn a_run_interrupted_by_kill_9_completes_after_restart_with_identical_bytes() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Enough evidence that the run is still going when it is killed.
    for source in ["osv-a", "osv-b", "osv-c"] {
        let status = command(data.path(), port)
            .args(["ingest", "--tenant", "tenant-default", "--source", source])
            .arg(shared_data().join("osv-go"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let api = client(data.path(), port);
    let base = format!("http://127.0.0.1:{port}/export-center");
    let request = json!({ "profileId": "export-profile::tenant-default::default" });

    let server = start(data.path(), port).await;
    let accepted = call(&api, Method::POST, &format!("{base}/runs"), Some(request.clone())).await;
    let status_url = format!(
        "http://127.0.0.1:{port}{}",
        accepted["links"]["status"].as_str().unwrap()
    );
    let running = wait_for(&api, &status_url, |s| {
        s["status"] == "succeeded" || s["progress"]["itemsCompleted"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(
        running["status"], "running",
        "the run finished before it could be killed: {running}"
    );
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no cleanup.
    server.child.wait().unwrap();
    drop(server);

    let _server = start(data.path(), port).await;
    let recovered = wait_for(&api, &status_url, |s| {
        s["status"] != "running" && s["status"] != "queued"
    })
    .await;
    assert_eq!(recovered["status"], "succeeded", "{recovered}");
    assert_eq!(recovered["progress"]["itemsCompleted"], 3 * 4291);

    // An undisturbed run of the same request on the same snapshot.
    let again = call(&api, Method::POST, &format!("{base}/runs"), Some(request)).await;
    let again_url = format!(
        "http://127.0.0.1:{port}{}",
        again["links"]["status"].as_str().unwrap()
    );
    let undisturbed = wait_for(&api, &again_url, |s| s["status"] == "succeeded").await;
    let (a, b) = (download(&recovered).await, download(&undisturbed).await);
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after recovery");
    }
}
