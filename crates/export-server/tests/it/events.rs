//! Server-Sent Events as a real client sees them (SPEC §7).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

/// One parsed SSE message.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: Option<i64>,
    event: Option<String>,
    data: Option<Value>,
    retry: Option<u64>,
    comments: Vec<String>,
}

fn parse(text: &str) -> Vec<Message> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut message = Message {
                id: None,
                event: None,
                data: None,
                retry: None,
                comments: Vec::new(),
            };
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix(':') {
                    message.comments.push(comment.trim().to_owned());
                } else if let Some((field, value)) = line.split_once(':') {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => message.id = Some(value.parse().unwrap()),
                        "event" => message.event = Some(value.to_owned()),
                        "data" => message.data = Some(serde_json::from_str(value).unwrap()),
                        "retry" => message.retry = Some(value.parse().unwrap()),
                        other => panic!("unexpected field {other}"),
                    }
                }
            }
            message
        })
        .collect()
}

/// The events (messages with an id) of a whole stream read to its end.
async fn read_stream(
    app: &TestApp,
    run_id: &str,
    last_event_id: Option<i64>,
) -> (Vec<Message>, Vec<Message>) {
    let acme = app.tenant("acme");
    let mut request = acme
        .get(&format!("/export-center/runs/{run_id}/events"))
        .header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream ended")
        .unwrap();
    let messages = parse(&text);
    let events = messages.iter().filter(|m| m.id.is_some()).cloned().collect();
    (messages, events)
}

fn names(events: &[Message]) -> Vec<String> {
    events.iter().map(|e| e.event.clone().unwrap()).collect()
}

#[tokio::test]
async fn a_finished_run_replays_its_whole_stream_and_every_resume_point_gives_each_event_once() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let done = app.tenant("acme").export("signed", json!({})).await;
    assert_eq!(done.status, "succeeded");

    let (messages, events) = read_stream(&app, &done.run_id, None).await;
    assert_eq!(
        messages[0].retry,
        Some(2000),
        "the first message sets the retry delay"
    );
    let ids: Vec<i64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "ids count 1, 2, 3 …"
    );
    let kinds = names(&events);
    assert_eq!(kinds.first().map(String::as_str), Some("started"));
    assert_eq!(kinds.last().map(String::as_str), Some("completed"));
    assert!(kinds.iter().any(|k| k == "progress"));
    let progress = events
        .iter()
        .rev()
        .find(|e| e.event.as_deref() == Some("progress"))
        .unwrap();
    let progress_data = progress.data.as_ref().unwrap();
    assert_eq!(progress_data["itemsCompleted"], progress_data["itemsTotal"]);
    assert!(
        progress_data["percent"].as_u64().unwrap() < 100,
        "100% only once succeeded"
    );

    let ready: Vec<&Value> = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("artifact_ready"))
        .map(|e| e.data.as_ref().unwrap())
        .collect();
    assert_eq!(ready.len(), done.outputs.len(), "one artifact_ready per output");
    for data in &ready {
        assert_eq!(data["runId"], done.run_id);
        let url = data["url"].as_str().unwrap();
        let bytes = app.get(url).await.bytes().await.unwrap();
        assert_eq!(
            export_core::Sha256Digest::of(&bytes).to_string(),
            data["sha256"].as_str().unwrap()
        );
        assert!(data.get("path").is_none(), "paths become signed URLs");
    }
    let completed = events.last().unwrap().data.as_ref().unwrap();
    assert_eq!(completed["status"], "succeeded");
    assert_eq!(
        app.get(completed["manifestUrl"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(completed["manifestDsseUrl"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    for resume in 0..=events.len() as i64 {
        let (_, rest) = read_stream(&app, &done.run_id, Some(resume)).await;
        let rest_ids: Vec<i64> = rest.iter().map(|e| e.id.unwrap()).collect();
        assert_eq!(
            rest_ids,
            ((resume + 1)..=events.len() as i64).collect::<Vec<_>>(),
            "resume after {resume}"
        );
    }
    // Browsers pass the id as a query parameter.
    let acme = app.tenant("acme");
    let text = acme
        .get(&format!(
            "/export-center/runs/{}/events?lastEventId={}",
            done.run_id,
            events.len() - 1
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        names(
            &parse(&text)
                .into_iter()
                .filter(|m| m.id.is_some())
                .collect::<Vec<_>>()
        ),
        ["completed"]
    );
}

#[tokio::test]
async fn a_live_stream_follows_the_run_to_its_end() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("daily") }))
        .await;
    let response = acme
        .get(&format!("/export-center/runs/{}/events", queued.run_id))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(async move { response.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.run_pending().await;
    let text = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the stream ended")
        .unwrap();
    let events: Vec<Message> = parse(&text).into_iter().filter(|m| m.id.is_some()).collect();
    assert_eq!(names(&events).first().map(String::as_str), Some("started"));
    assert_eq!(names(&events).last().map(String::as_str), Some("completed"));
}

#[tokio::test]
async fn failed_and_cancelled_runs_end_their_streams_with_the_reason() {
    let app = TestApp::spawn_with(|config| config.limits.max_bundle_bytes = 4096).await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let failed = acme.export("daily", json!({})).await;
    assert_eq!(failed.status, "failed");
    let (_, events) = read_stream(&app, &failed.run_id, None).await;
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("failed"));
    let data = last.data.as_ref().unwrap();
    assert_eq!(data["status"], "failed");
    assert_eq!(data["code"], "ERR_EXPORT_TOO_LARGE");
    assert!(data["message"].as_str().unwrap().contains("4096"));

    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    acme.post(&format!("/export-center/runs/{}/cancel", queued.run_id))
        .send()
        .await
        .unwrap();
    let (_, events) = read_stream(&app, &queued.run_id, None).await;
    assert_eq!(names(&events), ["cancelled"]);
    assert_eq!(events[0].data.as_ref().unwrap()["status"], "cancelled");
}

#[tokio::test]
async fn an_idle_stream_sends_keep_alives_and_is_closed() {
    let app = TestApp::spawn_with(|config| {
        config.events.keep_alive_ms = 100;
        config.events.idle_timeout_ms = 700;
    })
    .await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let started = std::time::Instant::now();
    let (messages, events) = read_stream(&app, &queued.run_id, None).await;
    assert!(events.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed only after the idle timeout"
    );
    let keep_alives = messages
        .iter()
        .flat_map(|m| m.comments.iter())
        .filter(|c| *c == "keep-alive")
        .count();
    assert!(keep_alives >= 3, "{messages:?}");
}

#[tokio::test]
async fn streams_need_event_stream_and_stay_within_the_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let path = format!("/export-center/runs/{}/events", queued.run_id);
    let json_only = acme
        .get(&path)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_problem(json_only, 406, "ERR_EXPORT_REQUEST_INVALID").await;
    let globex = app
        .tenant("globex")
        .get(&path)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_problem(globex, 404, "ERR_EXPORT_NOT_FOUND").await;
    let bad_id = acme.get(&path).header("Last-Event-ID", "x").send().await.unwrap();
    assert_problem(bad_id, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    // Ids are those of stored events, and a queued run has none: taken as a starting
    // point, `1` would hold back the run's live events from every other listener.
    let ahead = acme
        .get(&path)
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(ahead, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert!(problem.to_string().contains("Last-Event-ID"), "{problem}");
}

/// Opens the run's stream as acme; the whole text once it ends.
fn follow(app: &TestApp, run_id: &str) -> tokio::task::JoinHandle<String> {
    let request = app
        .tenant("acme")
        .get(&format!("/export-center/runs/{run_id}/events"))
        .header("Accept", "text/event-stream");
    tokio::spawn(async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    })
}

#[tokio::test]
async fn live_listeners_share_each_rendered_event_and_its_signed_links_work() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("signed") }))
        .await;
    let listeners: Vec<_> = (0..3).map(|_| follow(&app, &queued.run_id)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.run_pending().await;
    let mut streams = Vec::new();
    for listener in listeners {
        let text = tokio::time::timeout(Duration::from_secs(20), listener)
            .await
            .expect("the stream ended")
            .unwrap();
        let events: Vec<Message> = parse(&text).into_iter().filter(|m| m.id.is_some()).collect();
        streams.push(events);
    }
    assert!(
        streams.iter().all(|events| *events == streams[0]),
        "every live listener gets the same messages"
    );
    let events = &streams[0];
    assert_eq!(names(events).first().map(String::as_str), Some("started"));
    assert_eq!(names(events).last().map(String::as_str), Some("completed"));
    let done = acme.run(&queued.run_id).await;
    let ready: Vec<&Value> = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("artifact_ready"))
        .map(|e| e.data.as_ref().unwrap())
        .collect();
    assert_eq!(ready.len(), done.outputs.len(), "one artifact_ready per output");
    for data in ready {
        let response = app.get(data["url"].as_str().unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK, "{data}");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(
            export_core::Sha256Digest::of(&bytes).to_string(),
            data["sha256"].as_str().unwrap()
        );
    }
    let completed = events.last().unwrap().data.as_ref().unwrap();
    for link in ["manifestUrl", "manifestDsseUrl"] {
        let url = completed[link].as_str().unwrap();
        assert_eq!(app.get(url).await.status(), StatusCode::OK, "{link}");
    }
}

#[tokio::test]
async fn events_stored_by_another_process_reach_live_listeners_without_waiting_for_the_poll() {
    // Nothing in this process announces the events below, and the run's stream would
    // read the store only hourly: the process-wide watcher has to notice them.
    let app = TestApp::spawn_with(|config| config.events.poll_interval_ms = 3_600_000).await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let listener = follow(&app, &queued.run_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tenant = export_core::TenantId::parse("acme").unwrap();
    let run_id = export_core::RunId::parse(&queued.run_id).unwrap();
    let store = export_store_sqlite::SqliteStore::open(&app.data_dir.join("export-center.db"))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    for (name, data) in [
        ("started", json!({ "runId": queued.run_id, "status": "running" })),
        (
            "cancelled",
            json!({ "runId": queued.run_id, "status": "cancelled" }),
        ),
    ] {
        export_store::Store::append_event(&store, &tenant, &run_id, name, &data, now)
            .await
            .unwrap();
    }
    let text = tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .expect("the events arrived and ended the stream")
        .unwrap();
    let events: Vec<Message> = parse(&text).into_iter().filter(|m| m.id.is_some()).collect();
    assert_eq!(names(&events), ["started", "cancelled"]);
}

#[tokio::test]
async fn a_run_ended_by_another_process_ends_the_streams_that_follow_it() {
    // A worker in another process records the run's end and its terminal event in one
    // write; a stream opened at any moment around it gets the event and ends.
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let tenant = export_core::TenantId::parse("acme").unwrap();
    let store = export_store_sqlite::SqliteStore::open(&app.data_dir.join("export-center.db"))
        .await
        .unwrap();
    let cancelled_elsewhere = |run_id: String| {
        let (tenant, store) = (tenant.clone(), &store);
        async move {
            let run_id = export_core::RunId::parse(&run_id).unwrap();
            let event = export_store::TerminalEvent::cancelled(&run_id);
            export_store::Store::finish_run(
                store,
                &tenant,
                &run_id,
                export_store::RunOutcome::Cancelled,
                &event,
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        }
    };
    let before = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let listener = follow(&app, &before.run_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancelled_elsewhere(before.run_id.clone()).await;
    let after = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    cancelled_elsewhere(after.run_id.clone()).await;
    for (run_id, text) in [
        (&before.run_id, listener.await.unwrap()),
        (&after.run_id, follow(&app, &after.run_id).await.unwrap()),
    ] {
        let events: Vec<Message> = parse(&text).into_iter().filter(|m| m.id.is_some()).collect();
        assert_eq!(names(&events), ["cancelled"], "{run_id}");
    }
}

#[tokio::test]
async fn the_stream_of_a_run_ended_without_a_terminal_event_ends_after_the_replay() {
    // Earlier versions stored a run's end and its terminal event apart, so a worker that
    // died in between left an ended run without one: its stream must not wait for it.
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let database = app.data_dir.join("export-center.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&database)
        .arg("UPDATE runs SET status = 'cancelled'")
        .status()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(status.success());
    let text = tokio::time::timeout(Duration::from_secs(2), follow(&app, &queued.run_id))
        .await
        .expect("the stream ends at once")
        .unwrap();
    assert!(parse(&text).iter().all(|m| m.id.is_none()), "{text}");
}

/// The raw bytes of one HTTP/1.1 request on a fresh TCP connection, read until the
/// server closes it; `None` if it is still open after `wait`.
async fn raw_exchange(app: &TestApp, request: reqwest::Request, wait: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let url = request.url();
    let mut head = format!(
        "{} {}?{} HTTP/1.1\r\nhost: {}\r\n",
        request.method(),
        url.path(),
        url.query().unwrap_or(""),
        app.base.trim_start_matches("http://")
    );
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    read.ok().map(|read| {
        read.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[tokio::test]
async fn the_end_of_a_stream_closes_its_connection() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let done = acme.export("tiny", json!({})).await;
    let stream = acme
        .get(&format!("/export-center/runs/{}/events", done.run_id))
        .header("Accept", "text/event-stream")
        .build()
        .unwrap();
    let answer = raw_exchange(&app, stream, Duration::from_secs(10))
        .await
        .expect("the server closes the connection after the stream's last event");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert!(body.contains("event: completed"), "{body}");
    assert!(
        body.ends_with("0\r\n\r\n"),
        "the chunked body is complete: {body:?}"
    );

    // Other answers keep their connection for the next request.
    let status = acme
        .get(&format!("/export-center/runs/{}", done.run_id))
        .build()
        .unwrap();
    let kept = raw_exchange(&app, status, Duration::from_millis(500)).await;
    assert_eq!(kept, None, "a status answer keeps the connection open");
}
