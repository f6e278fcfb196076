//! Run control: cancelling a running run and the job timeout, each ending the run
//! promptly, deleting its partial outputs, and closing its event stream.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{shared_data, TestApp};

/// Enough evidence that a run takes a few seconds.
async fn large_tenant(app: &TestApp, copies: usize) {
    for copy in 0..copies {
        let report = app
            .ingest("acme", &format!("osv-{copy}"), &[shared_data().join("osv-go")])
            .await;
        assert_eq!(report.inserted, 4291);
    }
}

async fn last_event(app: &TestApp, run_id: &str) -> (String, serde_json::Value) {
    let text = app
        .tenant("acme")
        .get(&format!("/export-center/runs/{run_id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let block = text
        .split("\n\n")
        .filter(|b| b.contains("event:"))
        .last()
        .unwrap()
        .to_owned();
    let event = block
        .lines()
        .find_map(|l| l.strip_prefix("event: "))
        .unwrap()
        .to_owned();
    let data = serde_json::from_str(block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    (event, data)
}

#[tokio::test]
async fn cancelling_a_running_run_stops_it_within_two_seconds_and_deletes_its_outputs() {
    let app = TestApp::spawn().await;
    large_tenant(&app, 8).await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("daily") }))
        .await;
    let runner = app.app.runner.clone();
    let worker = tokio::spawn(async move { runner.run_pending().await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = acme.run(&queued.run_id).await;
        if status.status == "running" && status.progress.items_completed > 0 {
            break;
        }
        assert_ne!(
            status.status, "succeeded",
            "the run ended before it could be cancelled"
        );
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let response = acme
        .post(&format!("/export-center/runs/{}/cancel", queued.run_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    loop {
        let status = acme.run(&queued.run_id).await;
        if status.status == "cancelled" {
            assert!(status.outputs.is_empty());
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "still {} after 2 s",
            status.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.await.unwrap();
    assert!(
        !app.run_dir(&queued.run_id).exists(),
        "partial outputs are deleted"
    );
    assert_eq!(last_event(&app, &queued.run_id).await.0, "cancelled");
}

#[tokio::test]
async fn a_run_over_the_job_timeout_fails_and_leaves_nothing() {
    let app = TestApp::spawn_with(|config| config.limits.job_timeout_seconds = 0.05).await;
    large_tenant(&app, 1).await;
    let acme = app.tenant("acme");
    let started = Instant::now();
    let done = acme.export("daily", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(done.status, "failed");
    assert_eq!(done.errors[0].code, "ERR_EXPORT_TIMEOUT");
    assert!(done.outputs.is_empty());
    assert!(!app.run_dir(&done.run_id).exists(), "partial outputs are deleted");
    let (event, data) = last_event(&app, &done.run_id).await;
    assert_eq!(event, "failed");
    assert_eq!(data["code"], "ERR_EXPORT_TIMEOUT");
}
