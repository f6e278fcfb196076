//! Connection bounds (SPEC §17) against a real server: slow and idle clients are cut
//! off, requests that do not stream are timed out, a tenant holds a bounded number of
//! event streams, a stream ends with its token, and shutdown ends streams.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_problem, TestApp};
use crate::processes::{call, client, command, start};

/// Reads until the server closes the connection; what it sent, and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => received.extend_from_slice(&buf[..read]),
            Err(_) => panic!(
                "the server kept the connection open for {limit:?}; it sent: {}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

fn tcp_address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_that_sends_half_a_header_and_stalls_is_disconnected() {
    let app = TestApp::spawn_with(|config| {
        config.server.header_read_timeout_seconds = 1;
        config.server.idle_timeout_seconds = 30;
    })
    .await;
    let mut stream = TcpStream::connect(tcp_address(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let (_, closed_after) = read_until_closed(&mut stream, Duration::from_secs(8)).await;
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed too early: {closed_after:?}"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let app = TestApp::spawn_with(|config| {
        config.server.header_read_timeout_seconds = 30;
        config.server.idle_timeout_seconds = 1;
        config.events.keep_alive_ms = 500;
    })
    .await;
    let mut stream = TcpStream::connect(tcp_address(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains(r#"{"status":"ok"}"#) {
        let read = stream.read(&mut buf).await.unwrap();
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&buf[..read]);
    }
    // The connection is kept alive for another request, but none comes.
    let (rest, closed_after) = read_until_closed(&mut stream, Duration::from_secs(8)).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed too early: {closed_after:?}"
    );
}

#[tokio::test]
async fn a_request_whose_body_never_comes_is_answered_408() {
    let app = TestApp::spawn_with(|config| {
        config.server.request_timeout_seconds = 1;
        config.server.idle_timeout_seconds = 30;
    })
    .await;
    let request = app.tenant("acme").post("/export-center/runs").build().unwrap();
    let mut head = format!("POST {} HTTP/1.1\r\nHost: localhost\r\n", request.url().path());
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
    let mut stream = TcpStream::connect(tcp_address(&app)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut buf))
        .await
        .expect("no answer while the body is missing")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// Opens the event stream of `run_id` as `tenant`; the response once its head came.
async fn open_stream(app: &TestApp, tenant: &str, run_id: &str) -> reqwest::Response {
    app.tenant(tenant)
        .get(&format!("/export-center/runs/{run_id}/events"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_over_its_stream_limit_gets_429_while_another_tenant_connects() {
    let app = TestApp::spawn_with(|config| config.limits.sse_streams_per_tenant = 2).await;
    let profile = |tenant: &str| json!({ "profileId": format!("export-profile::{tenant}::daily") });
    // Without workers the runs stay queued, and their streams open.
    let acme_run = app.tenant("acme").create_run(profile("acme")).await.run_id;
    let globex_run = app.tenant("globex").create_run(profile("globex")).await.run_id;
    let first = open_stream(&app, "acme", &acme_run).await;
    let second = open_stream(&app, "acme", &acme_run).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);

    let refused = open_stream(&app, "acme", &acme_run).await;
    assert_eq!(refused.headers()["retry-after"], "2");
    let problem = assert_problem(refused, 429, "ERR_EXPORT_RATE_LIMIT").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("event streams"),
        "{problem}"
    );
    let other = open_stream(&app, "globex", &globex_run).await;
    assert_eq!(other.status(), StatusCode::OK, "another tenant has its own count");
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let run_id = acme
        .create_run(json!({ "profileId": acme.profile_id("daily") }))
        .await
        .run_id;
    let started = Instant::now();
    let response = acme
        .authed_for(
            Method::GET,
            &format!("/export-center/runs/{run_id}/events"),
            Duration::from_secs(2),
        )
        .header("X-StellaOps-Tenant", "acme")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream outlived its token")
        .unwrap();
    assert!(text.starts_with("retry: 2000"), "{text}");
    let ended_after = started.elapsed();
    assert!(
        ended_after >= Duration::from_millis(1500),
        "ended before its token expired: {ended_after:?}"
    );
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_the_process_exits_within_its_grace_period() {
    let data = tempfile::tempdir().unwrap();
    let serve = |data: &std::path::Path| {
        let mut serve = command(data);
        // No workers: the run stays queued and its stream open.
        serve
            .env("EXPORT_CENTER_WORKERS__CONCURRENCY", "0")
            .env("EXPORT_CENTER_SERVER__SHUTDOWN_GRACE_SECONDS", "5");
        serve
    };
    let mut server = start(serve(data.path()), &[]).await;
    let api = client(command(data.path()));
    let base = format!("{}/export-center", server.base());
    let accepted = call(
        &api,
        Method::POST,
        &format!("{base}/runs"),
        Some(json!({ "profileId": "export-profile::tenant-default::default" })),
    )
    .await;
    let events_url = format!(
        "{}{}",
        server.base(),
        accepted["links"]["events"].as_str().unwrap()
    );
    let stream = api
        .send(Method::GET, &events_url, |request| {
            request
                .header("X-StellaOps-Tenant", "tenant-default")
                .header("Accept", "text/event-stream")
        })
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);

    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(kill.success());
    tokio::time::timeout(Duration::from_secs(5), stream.text())
        .await
        .expect("the stream stays open after SIGTERM")
        .unwrap();
    let stream_ended = signalled.elapsed();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the process did not exit within its grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        stream_ended < Duration::from_secs(2),
        "streams end at once, not at the end of the grace period: {stream_ended:?}"
    );
}
