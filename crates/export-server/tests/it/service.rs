//! Operator endpoints: health, readiness, metrics and the generated OpenAPI document.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
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
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    let artifacts = app.data_dir.join("artifacts");
    std::fs::remove_dir_all(&artifacts).ok();
    // A file where the directory should be: not writable, even for root.
    std::fs::write(&artifacts, b"not a directory").unwrap();
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unready");
    assert_eq!(body["checks"][1]["ok"], false);
    std::fs::remove_file(&artifacts).unwrap();
    std::fs::create_dir(&artifacts).unwrap();
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_runs_items_and_requests() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    app.tenant("acme").export("daily", json!({})).await;
    app.tenant("acme")
        .create_run(json!({ "profileId": "export-profile::acme::tiny" }))
        .await;
    let text = app.get("/metrics").await.text().await.unwrap();
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
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn readiness_fails_while_a_signing_key_or_the_jwks_file_is_missing() {
    let app = TestApp::spawn().await;
    let ready = |app: &TestApp| {
        let url = app.url("/readyz");
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
