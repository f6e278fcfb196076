//! Webhooks (SPEC §16): the API's statuses and scopes, and a receiver on loopback that
//! verifies every signature, answers `500` to the first attempts and sees the retries,
//! and gets each event once: in process with the test clock, and across a killed
//! server process on PostgreSQL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use export_core::Clock;
use export_notify::Renderer;
use export_store::{RunError, RunOutcome, TerminalEvent};
use export_store_postgres::testing::{fresh_schema, url_for};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{TenantClient, TestApp};
use crate::processes::{command, start};

const SECRET: &str = "receiver-secret-0123456789";

/// A webhook receiver on `127.0.0.1`: checks the signature with `SECRET` (a bad one is
/// `400`), answers `500` to the first `fail_first` attempts of each notification id,
/// then `204`, and keeps what it saw.
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    fail_first: usize,
}

#[derive(Default)]
struct Seen {
    attempts: HashMap<String, usize>,
    delivered: Vec<Value>,
    bad_signatures: usize,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Self, SocketAddr) {
        let receiver = Self {
            seen: Arc::default(),
            fail_first,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, address)
    }

    fn delivered(&self) -> Vec<Value> {
        self.seen.lock().unwrap().delivered.clone()
    }

    fn attempts(&self) -> HashMap<String, usize> {
        self.seen.lock().unwrap().attempts.clone()
    }
}

/// The receiver's check, written from docs/API.md: HMAC-SHA256 over `<t>.<body>`.
fn verifies(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("x-export-center-signature")
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let parts: HashMap<&str, &str> = header
        .split(',')
        .filter_map(|part| part.split_once('='))
        .collect();
    let (Some(t), Some(v1)) = (parts.get("t"), parts.get("v1")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::decode(v1).is_ok_and(|tag| mac.verify_slice(&tag).is_ok())
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = receiver.seen.lock().unwrap();
    if !verifies(&headers, &body) {
        seen.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    let notification: Value = serde_json::from_slice(&body).unwrap();
    let id = notification["id"].as_str().unwrap().to_owned();
    let attempts = seen.attempts.entry(id).or_default();
    *attempts += 1;
    if *attempts <= receiver.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    seen.delivered.push(notification);
    StatusCode::NO_CONTENT
}

const ADMIN: &[&str] = &["export:read", "export:admin"];

async fn create_webhook(client: &TenantClient<'_>, url: &str, events: &[&str]) -> Value {
    let response = client
        .with_scopes(Method::POST, "/export-center/webhooks", ADMIN)
        .json(&json!({ "url": url, "events": events, "secret": SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The renderer `App::serve` gives the delivery task, with the test server's base URL.
fn renderer(app: &TestApp) -> Renderer {
    let mut state = app.app.state.clone();
    Arc::make_mut(&mut state.config).public_base_url = app.base.clone();
    Arc::new(move |notification, run| export_api::notification_body(&state, notification, run))
}

/// Runs the delivery task's rounds, the test clock moving 10 s between them, until the
/// receiver has `count` deliveries.
async fn deliver_until(app: &TestApp, receiver: &Receiver, count: usize) {
    let render = renderer(app);
    for _ in 0..40 {
        app.app.notifier.run_once(&render).await.unwrap();
        if receiver.delivered().len() >= count {
            return;
        }
        app.clock.advance(chrono::Duration::seconds(10));
    }
    panic!("gave up: {:?} delivered of {count}", receiver.delivered().len());
}

#[tokio::test]
async fn a_receiver_verifies_each_event_type_sees_retries_and_gets_each_once() {
    let (receiver, address) = Receiver::start(2).await;
    let app = TestApp::spawn_with(|config| config.egress_allowlist = vec!["127.0.0.1".to_owned()]).await;
    let acme = app.tenant("acme");
    let url = format!("http://{address}/hook");
    let all = ["run.succeeded", "run.failed", "run.cancelled", "run.expired"];
    let webhook = create_webhook(&acme, &url, &all).await;
    let webhook_id = webhook["id"].as_str().unwrap();

    let succeeded = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny"), "retentionDays": 1 }))
        .await;
    app.run_pending().await;
    let cancelled = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let cancel = acme
        .post(&format!("/export-center/runs/{}/cancel", cancelled.run_id))
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success());
    // A run the worker fails ends through the same store call as this one.
    let failed = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let store = &app.app.state.store;
    let failed_id = export_core::RunId::parse(&failed.run_id).unwrap();
    let tenant = failed_id.tenant.clone();
    store
        .claim_next_run("test-worker", app.clock.now(), Duration::from_secs(30), 10)
        .await
        .unwrap()
        .unwrap();
    let outcome = RunOutcome::Failed(RunError {
        code: export_core::ErrorCode::Timeout,
        message: "the run took too long".to_owned(),
        retry_after_seconds: None,
    });
    let event = TerminalEvent::of(&failed_id, &outcome, false);
    store
        .finish_run(&tenant, &failed_id, outcome, &event, app.clock.now())
        .await
        .unwrap();

    deliver_until(&app, &receiver, 3).await;
    // Past the succeeded run's retention, the janitor expires it.
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(app.app.runner.expire_due().await.unwrap(), 1);
    deliver_until(&app, &receiver, 4).await;

    let delivered = receiver.delivered();
    let found: Vec<(String, String, String)> = delivered
        .iter()
        .map(|body| {
            (
                body["type"].as_str().unwrap().to_owned(),
                body["data"]["runId"].as_str().unwrap().to_owned(),
                body["data"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected = vec![
        ("run.succeeded", &succeeded.run_id, "succeeded"),
        ("run.cancelled", &cancelled.run_id, "cancelled"),
        ("run.failed", &failed.run_id, "failed"),
        ("run.expired", &succeeded.run_id, "expired"),
    ]
    .into_iter()
    .map(|(event, run, status)| (event.to_owned(), run.clone(), status.to_owned()))
    .collect::<Vec<_>>();
    let mut found_sorted = found.clone();
    found_sorted.sort();
    expected.sort();
    assert_eq!(found_sorted, expected, "each event once");
    for body in &delivered {
        assert_eq!(body["tenant"], "acme");
        let id = body["id"].as_str().unwrap();
        assert_eq!(
            id,
            format!(
                "{}/{}",
                body["data"]["runId"].as_str().unwrap(),
                body["type"].as_str().unwrap()
            )
        );
        assert_eq!(receiver.attempts()[id], 3, "two 500s, then delivered");
    }
    // The body's `data` is the run's status as the API renders it.
    let status = serde_json::to_value(acme.run(&succeeded.run_id).await).unwrap();
    let expired = delivered
        .iter()
        .find(|body| body["type"] == "run.expired")
        .unwrap();
    assert_eq!(expired["data"], status);
    let first = delivered
        .iter()
        .find(|body| body["type"] == "run.succeeded")
        .unwrap();
    assert!(
        !first["data"]["outputs"].as_array().unwrap().is_empty(),
        "{first}"
    );
    assert_eq!(receiver.seen.lock().unwrap().bad_signatures, 0);

    let deliveries: Value = acme
        .get(&format!("/export-center/webhooks/{webhook_id}/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{deliveries}");
    for item in items {
        assert_eq!(item["state"], "delivered", "{item}");
        let statuses: Vec<&Value> = item["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["httpStatus"])
            .collect();
        assert_eq!(statuses, [&json!(500), &json!(500), &json!(204)], "{item}");
    }
}

#[tokio::test]
async fn webhook_endpoints_answer_every_status_and_keep_tenants_apart() {
    let app = TestApp::spawn_with(|config| config.egress_allowlist = vec!["127.0.0.1".to_owned()]).await;
    let (acme, globex) = (app.tenant("acme"), app.tenant("globex"));
    let body = json!({ "url": "https://hooks.example.com/x", "events": ["run.succeeded"] });

    let anonymous = app
        .http
        .post(app.url("/export-center/webhooks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let read_only = acme
        .with_scopes(
            Method::POST,
            "/export-center/webhooks",
            &["export:read", "export:write"],
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(read_only.status(), 403);
    for (bad, field) in [
        (
            json!({ "url": "https://hooks.example.com/x", "events": ["run.started"] }),
            "events",
        ),
        (
            json!({ "url": "https://hooks.example.com/x", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "https://10.1.2.3/hook", "events": ["run.failed"] }),
            "url",
        ),
        (
            json!({ "url": "https://169.254.169.254/hook", "events": ["run.failed"] }),
            "url",
        ),
        (
            json!({ "url": "http://hooks.example.com/x", "events": ["run.failed"] }),
            "url",
        ),
        (
            json!({ "url": "https://hooks.example.com/x", "events": ["run.failed"], "secret": "short" }),
            "secret",
        ),
    ] {
        let response = acme
            .with_scopes(Method::POST, "/export-center/webhooks", ADMIN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    let created = acme
        .with_scopes(Method::POST, "/export-center/webhooks", ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/export-center/webhooks/{id}");

    let listed: Value = acme
        .get("/export-center/webhooks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        listed["items"][0].get("secret").is_none(),
        "never listed: {listed}"
    );
    let shown: Value = acme.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!((&shown["url"], &shown["events"]), (&body["url"], &body["events"]));
    assert!(shown.get("secret").is_none());

    // Another tenant's webhook does not exist for it.
    assert_eq!(globex.get(&path).send().await.unwrap().status(), 404);
    assert_eq!(
        globex
            .with_scopes(Method::DELETE, &path, ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        globex
            .get(&format!("{path}/deliveries"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let empty: Value = globex
        .get("/export-center/webhooks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["items"], json!([]));

    let rotated = acme
        .with_scopes(Method::POST, &format!("{path}/rotate-secret"), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);

    assert_eq!(
        acme.with_scopes(Method::DELETE, &path, &["export:read"])
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        acme.with_scopes(Method::DELETE, &path, ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(acme.get(&path).send().await.unwrap().status(), 404);
    assert_eq!(
        acme.with_scopes(Method::DELETE, &path, ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_loopback_webhook_without_the_allowlist_is_refused() {
    let app = TestApp::spawn().await;
    let response = app
        .tenant("acme")
        .with_scopes(Method::POST, "/export-center/webhooks", ADMIN)
        .json(&json!({ "url": "http://127.0.0.1:9/hook", "events": ["run.failed"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "ERR_EXPORT_EGRESS_BLOCKED", "{problem}");
    assert_eq!(problem["errors"][0]["field"], "url");
}

fn on_postgres(data: &std::path::Path, database_url: &str) -> Command {
    let mut command = command(data);
    command
        .env("EXPORT_CENTER_DATABASE__URL", database_url)
        .env("EXPORT_CENTER_EGRESS_ALLOWLIST", "[\"127.0.0.1\"]")
        .env("EXPORT_CENTER_NOTIFICATIONS__POLL_INTERVAL_MS", "100")
        .env("EXPORT_CENTER_NOTIFICATIONS__RETRY_INITIAL_SECONDS", "1")
        .env("EXPORT_CENTER_NOTIFICATIONS__LEASE_SECONDS", "3")
        .env("EXPORT_CENTER_NOTIFICATIONS__TIMEOUT_SECONDS", "2");
    command
}

/// An admin client of `tenant-default` minted by the server binary.
fn admin_client(mut command: Command) -> export_auth::http::DpopClient {
    let output = command
        .args([
            "token",
            "--tenant",
            "tenant-default",
            "--scopes",
            "export:read export:write export:admin",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let minted: Value = serde_json::from_slice(&output.stdout).unwrap();
    let key = export_auth::client::DpopKey::from_pkcs8_pem(minted["dpopKey"].as_str().unwrap()).unwrap();
    export_auth::http::DpopClient::new(
        crate::helpers::http_client(),
        minted["accessToken"].as_str().unwrap(),
        key,
    )
}

async fn call(client: &export_auth::http::DpopClient, method: Method, url: &str, body: Value) -> Value {
    let response = client
        .send(method, url, |request| {
            request.header("X-StellaOps-Tenant", "tenant-default").json(&body)
        })
        .await
        .unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.unwrap()
}

async fn wait(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_event_is_delivered_once_across_a_killed_server_on_postgres() {
    let schema = fresh_schema().await;
    let database_url = url_for(&schema);
    let data = tempfile::tempdir().unwrap();
    let (receiver, address) = Receiver::start(3).await;

    let first = start(on_postgres(data.path(), &database_url), &[]).await;
    let client = admin_client(on_postgres(data.path(), &database_url));
    let base = format!("{}/export-center", first.base());
    let all = ["run.succeeded", "run.failed", "run.cancelled", "run.expired"];
    let hook = json!({ "url": format!("http://{address}/hook"), "events": all, "secret": SECRET });
    call(&client, Method::POST, &format!("{base}/webhooks"), hook).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = json!({ "profileId": "export-profile::tenant-default::default" });
        let accepted = call(&client, Method::POST, &format!("{base}/runs"), run).await;
        runs.push(accepted["runId"].as_str().unwrap().to_owned());
    }
    // Every event has been tried (and refused) at least once: the process dies with
    // deliveries pending, maybe one in flight.
    wait("a first attempt of every event", || {
        receiver.attempts().len() == 3
    })
    .await;
    assert!(receiver.delivered().is_empty());
    drop(first);

    let _second = start(on_postgres(data.path(), &database_url), &[]).await;
    wait("every event delivered", || receiver.delivered().len() >= 3).await;
    // Late duplicates would arrive within a lease and a poll or two.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut delivered: Vec<String> = receiver
        .delivered()
        .iter()
        .map(|body| body["data"]["runId"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    runs.sort();
    assert_eq!(delivered, runs, "each run's event delivered exactly once");
    assert_eq!(receiver.seen.lock().unwrap().bad_signatures, 0);
}
