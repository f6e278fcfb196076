//! Service endpoints: health, readiness, metrics and the generated OpenAPI document;
//! `/metrics` and readiness details on the operator listener only (SPEC §17).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.admin_get("/healthz").await.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({ "status": "ready" }));
    let ready = app.admin_get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["sealed"], false);
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "database",
            "artifact_store",
            "signing_keys",
            "jwks",
            "url_signing_keys"
        ]
    );
    assert!(
        body["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{body}"
    );
}

#[tokio::test]
async fn readiness_fails_while_the_artifact_store_is_unwritable() {
    let app = TestApp::spawn_with(|config| config.server.readiness_cache_seconds = 0).await;
    app.install_signing_key("acme", "signer", "ed25519");
    let artifacts = app.data_dir.join("artifacts");
    break_directory(&artifacts);
    let ready = app.admin_get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unready");
    assert_eq!(body["checks"][1]["ok"], false);
    let public = app.get("/readyz").await;
    assert_eq!(public.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        public.json::<Value>().await.unwrap(),
        json!({ "status": "unready" })
    );
    repair_directory(&artifacts);
    assert_eq!(app.admin_get("/readyz").await.status(), StatusCode::OK);
}

/// A file where the directory should be: not writable, even for root.
fn break_directory(dir: &Path) {
    std::fs::remove_dir_all(dir).ok();
    std::fs::write(dir, b"not a directory").unwrap();
}

fn repair_directory(dir: &Path) {
    std::fs::remove_file(dir).unwrap();
    std::fs::create_dir(dir).unwrap();
}

#[tokio::test]
async fn probes_within_the_cache_period_reuse_one_check_and_write_nothing() {
    let app = TestApp::spawn_with(|config| config.server.readiness_cache_seconds = 2).await;
    app.install_signing_key("acme", "signer", "ed25519");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let checked = std::time::Instant::now();
    // From now on every write to the artifact store fails: a probe that checked again
    // would answer 503.
    let artifacts = app.data_dir.join("artifacts");
    break_directory(&artifacts);
    let app = &app;
    let probes = (0..20).map(|idx| async move {
        let response = if idx % 2 == 0 {
            app.get("/readyz").await
        } else {
            app.admin_get("/readyz").await
        };
        response.status()
    });
    let statuses = futures::future::join_all(probes).await;
    assert!(
        checked.elapsed() < Duration::from_secs(2),
        "the probes took longer than the cache period"
    );
    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "20 probes in the cache period reuse the first check: {statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(checked.elapsed())).await;
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "after the cache period the store is checked again"
    );
    repair_directory(&artifacts);
}

#[tokio::test]
async fn metrics_and_readiness_details_are_on_the_operator_listener_only() {
    let app = TestApp::spawn_with(|config| config.server.readiness_cache_seconds = 0).await;
    app.ingest_fixtures("acme").await;
    app.tenant("acme").export("daily", json!({})).await;
    // No signing key yet: the readiness details name the profile that needs one.
    let details = app.admin_get("/readyz").await;
    assert_eq!(details.status(), StatusCode::SERVICE_UNAVAILABLE);
    let details = details.text().await.unwrap();
    assert!(details.contains("export-profile::acme::signed"), "{details}");
    let metrics = app.admin_get("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("export-profile::acme::daily"), "{metrics}");

    let public = app.get("/readyz").await;
    assert_eq!(public.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = public.json().await.unwrap();
    assert_eq!(body, json!({ "status": "unready" }), "the status alone");
    for path in ["/metrics", "/readyz/details"] {
        assert_problem(app.get(path).await, 404, "ERR_EXPORT_NOT_FOUND").await;
    }
    assert_problem(
        app.admin_get("/export-center/profiles").await,
        404,
        "ERR_EXPORT_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn metrics_count_runs_items_and_requests() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    app.tenant("acme").export("daily", json!({})).await;
    app.tenant("acme")
        .create_run(json!({ "profileId": "export-profile::acme::tiny" }))
        .await;
    let text = app.admin_get("/metrics").await.text().await.unwrap();
    for needle in [
        "export_runs_total{status=\"succeeded\",profile=\"export-profile::acme::daily\"}",
        "export_items_total",
        "export_bytes_total",
        "export_run_duration_seconds",
        "export_queue_depth",
        "http_requests_total{method=\"POST\",route=\"/export-center/runs\",status=\"202\"}",
        "http_request_duration_seconds",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

/// Durations are histograms with buckets (a summary's quantiles cannot be aggregated
/// across replicas), every metric has its help text, and the process's own figures are
/// there for the operator's dashboards.
#[tokio::test]
async fn metrics_have_buckets_help_texts_and_process_figures() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    app.tenant("acme").export("daily", json!({})).await;
    let text = app.admin_get("/metrics").await.text().await.unwrap();
    for needle in [
        "# TYPE http_request_duration_seconds histogram",
        "http_request_duration_seconds_bucket{",
        "le=\"0.005\"",
        "# TYPE export_run_duration_seconds histogram",
        "export_run_duration_seconds_bucket{",
        "# HELP http_requests_total ",
        "# HELP export_runs_total ",
        "# HELP export_queue_depth ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    assert!(
        !text.contains("quantile="),
        "durations are no longer summaries:\n{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_code() {
    let app = TestApp::spawn().await;
    let response = app.get("/export-center/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/export-center/profiles",
        "/export-center/runs",
        "/export-center/runs/{runId}",
        "/export-center/runs/{runId}/cancel",
        "/export-center/artifacts/{runId}/{path}",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(
        doc["paths"].get("/metrics").is_none(),
        "the document describes the public listener"
    );
    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn readiness_fails_while_a_signing_key_or_the_jwks_file_is_missing() {
    let app = TestApp::spawn_with(|config| config.server.readiness_cache_seconds = 0).await;
    let ready = |app: &TestApp| {
        let url = format!("{}/readyz", app.admin_base);
        let http = app.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ready(&app).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the signed profiles' key is not installed yet"
    );
    assert_eq!(body["checks"][2]["name"], "signing_keys");
    assert!(body["checks"][2]["detail"]
        .as_str()
        .unwrap()
        .contains("export-profile::acme::signed"));
    app.install_signing_key("acme", "signer", "ed25519");
    assert_eq!(ready(&app).await.0, StatusCode::OK);

    let jwks = app.data_dir.join("jwks.json");
    let saved = std::fs::read(&jwks).unwrap();
    std::fs::remove_file(&jwks).unwrap();
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"][3]["ok"], false);
    std::fs::write(&jwks, saved).unwrap();
    assert_eq!(ready(&app).await.0, StatusCode::OK);
}
