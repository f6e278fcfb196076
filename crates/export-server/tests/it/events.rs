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
async fn a_terminal_event_stored_after_the_runs_end_still_reaches_the_stream() {
    // The worker records a run's end, then appends its terminal event. A stream opened
    // in between must wait for the event rather than end without it.
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let tenant = export_core::TenantId::parse("acme").unwrap();
    let run_id = export_core::RunId::parse(&queued.run_id).unwrap();
    // Another process, as a worker would be.
    let store = export_store_sqlite::SqliteStore::open(&app.data_dir.join("export-center.db"))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    export_store::Store::finish_run(&store, &tenant, &run_id, export_store::RunOutcome::Cancelled, now)
        .await
        .unwrap();
    let listener = follow(&app, &queued.run_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = json!({ "runId": queued.run_id, "status": "cancelled" });
    export_store::Store::append_event(&store, &tenant, &run_id, "cancelled", &data, now)
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .expect("the stream ended")
        .unwrap();
    let events: Vec<Message> = parse(&text).into_iter().filter(|m| m.id.is_some()).collect();
    assert_eq!(names(&events), ["cancelled"]);

    // A run whose terminal event never comes (its worker died in between) ends anyway.
    let other = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let other_id = export_core::RunId::parse(&other.run_id).unwrap();
    export_store::Store::finish_run(
        &store,
        &tenant,
        &other_id,
        export_store::RunOutcome::Cancelled,
        now,
    )
    .await
    .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), follow(&app, &other.run_id))
        .await
        .expect("the stream of an ended run without a terminal event ends")
        .unwrap();
    assert!(parse(&text).iter().all(|m| m.id.is_none()), "{text}");
}
