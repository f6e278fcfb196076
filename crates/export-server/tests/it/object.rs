//! `distribution.type = "object"` and an artifact store on S3, against a real
//! S3-compatible server process (`s3s-fs`).

use chrono::Utc;
use export_distribution::testing::S3Server;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, download_all, files_under, output_name, TestApp, TestClock};
use export_server::config::ObjectDistributionConfig;

/// The `host:port` of the S3 server: what the allowlist must name to reach it.
fn authority(s3: &S3Server) -> String {
    let endpoint = s3.settings().endpoint.unwrap();
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// An app whose clock is the real time shifted by `offset`: the S3 server checks
/// presigned URLs against its own clock.
async fn app_for(s3: &S3Server, offset: chrono::Duration) -> TestApp {
    let settings = s3.settings();
    let app = TestApp::spawn_at(TestClock::starting_at(Utc::now() + offset), |config| {
        config.egress_allowlist = vec![authority(s3)];
        config.distribution.object = Some(ObjectDistributionConfig {
            bucket: S3Server::BUCKET.to_owned(),
            prefix: "exports".to_owned(),
            s3: settings,
        });
    })
    .await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    app
}

async fn distribution(app: &TestApp, run_id: &str) -> (Value, String) {
    let dist_id = run_id.replace("export-run::", "export-dist::");
    let response = app
        .tenant("acme")
        .get(&format!("/export-center/distributions/{dist_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    (response.json().await.unwrap(), etag)
}

#[tokio::test]
async fn an_object_run_is_uploaded_and_its_presigned_links_serve_the_same_bytes() {
    let s3 = S3Server::start();
    let app = app_for(&s3, chrono::Duration::zero()).await;
    let done = app
        .tenant("acme")
        .export("published", json!({ "distribution": { "type": "object" } }))
        .await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);

    let (body, etag) = distribution(&app, &done.run_id).await;
    assert_eq!(body["type"], "object");
    assert_eq!(body["status"], "published");
    let tenant_prefix = format!("exports/acme/{}/", done.run_id);
    assert_eq!(body["ref"], format!("s3://{}/{tenant_prefix}", S3Server::BUCKET));

    // Every artifact, fetched with a plain HTTP client from the S3 server itself.
    let ours = download_all(&app, &done).await;
    let plain = crate::helpers::http_client();
    let artifacts = body["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), ours.len());
    for artifact in artifacts {
        let url = artifact["url"].as_str().unwrap();
        assert!(url.starts_with(s3.endpoint()), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        let response = plain.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let bytes = response.bytes().await.unwrap();
        let name = output_name(url);
        assert_eq!(bytes.as_ref(), ours[&name].as_slice(), "{name}");
        assert_eq!(
            artifact["sha256"],
            export_core::Sha256Digest::of(&bytes).to_string()
        );
    }
    let envelope = plain
        .get(body["dsse"]["href"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(envelope.status(), StatusCode::OK);

    // Presigned links are at most 7 days and never past retention; inside one
    // 5-minute window the payload is byte-identical, so the ETag holds and 304 works.
    let expires: chrono::DateTime<Utc> = body["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!(expires <= export_core::Clock::now(&app.clock) + chrono::Duration::days(7));
    assert!(
        expires
            <= done
                .expires_at
                .as_deref()
                .unwrap()
                .parse::<chrono::DateTime<Utc>>()
                .unwrap()
    );
    // The service's clock stands still in this test, so this read is in the same window.
    let (again, etag_again) = distribution(&app, &done.run_id).await;
    assert_eq!(again, body);
    assert_eq!(etag_again, etag);
    let response = app
        .tenant("acme")
        .get(&format!(
            "/export-center/distributions/{}",
            done.run_id.replace("export-run::", "export-dist::")
        ))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    // Another tenant's signed key is not this one's.
    let url = artifacts[0]["url"]
        .as_str()
        .unwrap()
        .replace("/acme/", "/globex/");
    assert_eq!(
        plain.get(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_expired_presigned_link_is_refused_by_the_s3_server() {
    let s3 = S3Server::start();
    // The service's clock runs seven hours behind: its 6-hour links have already
    // expired by the S3 server's clock.
    let app = app_for(&s3, chrono::Duration::hours(-7)).await;
    let done = app
        .tenant("acme")
        .export("published", json!({ "distribution": { "type": "object" } }))
        .await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);
    let (body, _) = distribution(&app, &done.run_id).await;
    let url = body["artifacts"][0]["url"].as_str().unwrap();
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_bucket_that_is_down_fails_the_run_with_a_retry_hint() {
    let mut s3 = S3Server::start();
    let app = app_for(&s3, chrono::Duration::zero()).await;
    s3.kill();
    let done = app
        .tenant("acme")
        .export("published", json!({ "distribution": { "type": "object" } }))
        .await;
    assert_eq!(done.status, "failed");
    assert_eq!(done.errors[0].code, "ERR_EXPORT_DISTRIBUTION_FAILED");
    assert_eq!(done.errors[0].retry_after_seconds, Some(300));
    assert!(done.outputs.is_empty());
}

#[tokio::test]
async fn object_distributions_need_a_bucket_and_an_allowed_endpoint() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    let acme = app.tenant("acme");
    let body = json!({ "profileId": acme.profile_id("published"), "distribution": { "type": "object" } });
    let response = acme.post("/export-center/runs").json(&body).send().await.unwrap();
    let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(problem["errors"][0]["field"], "distribution.type");

    let sealed = TestApp::spawn_with(|config| {
        config.sealed = true;
        config.distribution.object = Some(ObjectDistributionConfig {
            bucket: "exports".to_owned(),
            prefix: String::new(),
            s3: serde_json::from_value(json!({
                "endpoint": "https://s3.example.com",
                "access_key_id": "id",
                "secret_access_key": "secret",
            }))
            .unwrap(),
        });
    })
    .await;
    sealed.install_signing_key("acme", "signer", "ed25519");
    let acme = sealed.tenant("acme");
    let response = acme.post("/export-center/runs").json(&body).send().await.unwrap();
    let problem = assert_problem(response, 400, "ERR_EXPORT_EGRESS_BLOCKED").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("s3.example.com"),
        "{problem}"
    );
}

#[tokio::test]
async fn the_artifact_store_can_live_on_s3() {
    let s3 = S3Server::start();
    let settings = s3.settings();
    let app = TestApp::spawn_with(|config| {
        config.artifacts.url = Some(format!("s3://{}/artifacts", S3Server::BUCKET));
        config.artifacts.s3 = Some(settings);
    })
    .await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let done = app.tenant("acme").export("signed", json!({})).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);
    let files = download_all(&app, &done).await;
    for output in &done.outputs {
        let name = output_name(&output.url);
        assert_eq!(
            export_core::Sha256Digest::of(&files[&name]).to_string(),
            output.sha256
        );
    }
    assert!(!app.run_dir(&done.run_id).exists(), "nothing on the local disk");
    let stored: Vec<String> = files_under(&s3.data_dir().join(S3Server::BUCKET).join("artifacts"))
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        stored.iter().any(|p| p.ends_with("manifest.json")),
        "the outputs are objects in the bucket: {stored:?}"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
}
