//! NATS events (SPEC §16): with `notifications.nats_url`, each notification is published
//! on `export.run.<event>` from the outbox, so what happens while the NATS server is down
//! arrives once it is back. The test runs its own `nats-server` (JetStream, a storage
//! directory) on a free port, so it can stop and restart it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{TenantClient, TestApp};

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` process, killed when dropped.
struct NatsServer(Child);

impl NatsServer {
    async fn start(port: u16, store: &Path) -> Self {
        assert!(
            Path::new(NATS_SERVER).exists(),
            "{NATS_SERVER} is missing: apt-get install nats-server"
        );
        let child = Command::new(NATS_SERVER)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self(child)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Cancels a new queued run of `tiny`: a `run.cancelled` notification.
async fn cancelled_run(acme: &TenantClient<'_>) -> String {
    let run = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let cancel = acme
        .post(&format!("/export-center/runs/{}/cancel", run.run_id))
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success());
    run.run_id
}

/// The messages the stream holds: (subject, `Nats-Msg-Id`, body).
async fn stream_messages(url: &str) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let context = jetstream::new(client);
    let stream = context.get_stream("EXPORT").await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut found = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Msg-Id"))
            .map(|id| id.to_string())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        found.push((message.subject.to_string(), id, body));
    }
    found
}

/// Runs the delivery task, the test clock moving past each backoff, until the stream
/// holds `count` messages (the client connects and reconnects in real time).
async fn deliver_until(app: &TestApp, render: &export_notify::Renderer, url: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        app.app.notifier.run_once(render).await.unwrap();
        if stream_messages(url).await.len() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {count} messages on NATS"
        );
        app.clock.advance(chrono::Duration::seconds(10));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_event_reaches_nats_once_also_after_the_server_was_down() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(port, store.path()).await;
    {
        let client = async_nats::connect(&url).await.unwrap();
        jetstream::new(client)
            .create_stream(stream::Config {
                name: "EXPORT".to_owned(),
                subjects: vec!["export.run.>".to_owned()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let app = TestApp::spawn_with(|config| {
        config.notifications.nats_url = Some(url.clone());
        config.notifications.timeout_seconds = 2;
        config.notifications.lease_seconds = 10;
    })
    .await;
    let acme = app.tenant("acme");
    let mut state = app.app.state.clone();
    Arc::make_mut(&mut state.config).public_base_url = app.base.clone();
    let render: export_notify::Renderer =
        Arc::new(move |notification, run| export_api::notification_body(&state, notification, run));

    let before = cancelled_run(&acme).await;
    deliver_until(&app, &render, &url, 1).await;

    // Down: the event waits in the outbox, its attempt recorded as failed.
    drop(nats);
    let during = cancelled_run(&acme).await;
    app.app.notifier.run_once(&render).await.unwrap();
    app.app.notifier.run_once(&render).await.unwrap();

    assert!(app.app.notifier.run_once(&render).await.is_ok());
    let _nats = NatsServer::start(port, store.path()).await;
    deliver_until(&app, &render, &url, 2).await;
    // Once delivered, nothing is sent again.
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::minutes(5));
        app.app.notifier.run_once(&render).await.unwrap();
    }

    let mut found = stream_messages(&url).await;
    found.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = vec![before, during];
    expected.sort();
    assert_eq!(found.len(), 2, "each event once: {found:?}");
    for ((subject, id, body), run_id) in found.iter().zip(&expected) {
        assert_eq!(subject, "export.run.cancelled");
        assert_eq!(id, &format!("{run_id}/run.cancelled"));
        assert_eq!(body["id"], json!(id));
        assert_eq!(body["type"], "run.cancelled");
        assert_eq!(body["tenant"], "acme");
        assert_eq!(body["data"]["runId"], json!(run_id));
        assert_eq!(body["data"]["status"], "cancelled");
    }
}
