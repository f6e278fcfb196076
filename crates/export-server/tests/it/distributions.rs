//! `GET /export-center/distributions/{id}` (SPEC §9.4).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn a_published_distribution_links_the_manifest_envelope_bundle_and_every_artifact() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let done = acme.export("signed", json!({})).await;
    let dist_id = done.run_id.replace("export-run::", "export-dist::");
    let path = format!("/export-center/distributions/{dist_id}");
    // The run finished at 09:59:58; its links round up to 5-minute boundaries, so the
    // reads below, from 10:00:10 to 10:01:10, fall in one window.
    app.clock.advance(chrono::Duration::seconds(12));

    let response = acme.get(&path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-control"],
        "private, max-age=60, stale-if-error=300"
    );
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", export_core::Sha256Digest::of(&bytes)));
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["id"], dist_id);
    assert_eq!(body["runId"], done.run_id);
    assert_eq!(body["type"], "http");
    assert_eq!(body["status"], "published");
    let manifest = done.outputs.iter().find(|o| o.kind == "manifest").unwrap();
    assert_eq!(body["checksum"], manifest.sha256);
    let rels: Vec<&str> = body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert_eq!(rels, ["alternate", "bundle", "self"]);
    assert_eq!(
        body["links"][1]["sha256"],
        done.outputs.iter().find(|o| o.kind == "bundle").unwrap().sha256
    );
    assert_eq!(body["dsse"]["href"], body["links"][0]["href"]);
    let envelope = app
        .get(body["dsse"]["href"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        body["dsse"]["sha256"],
        export_core::Sha256Digest::of(&envelope).to_string()
    );
    let artifacts = body["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), done.outputs.len());
    for artifact in artifacts {
        let downloaded = app
            .get(artifact["url"].as_str().unwrap())
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            artifact["sha256"],
            export_core::Sha256Digest::of(&downloaded).to_string()
        );
    }

    // Inside one 5-minute link window the payload is byte-identical: cache it.
    app.clock.advance(chrono::Duration::seconds(60));
    let again = acme.get(&path).send().await.unwrap();
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    let cached = acme
        .get(&path)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers()["etag"].to_str().unwrap(), etag);
    app.clock.advance(chrono::Duration::minutes(10));
    let later = acme.get(&path).send().await.unwrap();
    assert_ne!(
        later.headers()["etag"].to_str().unwrap(),
        etag,
        "new links in a new window"
    );

    assert_problem(
        app.tenant("globex").get(&path).send().await.unwrap(),
        404,
        "ERR_EXPORT_NOT_FOUND",
    )
    .await;
    app.clock.advance(chrono::Duration::days(31));
    assert_problem(acme.get(&path).send().await.unwrap(), 410, "ERR_EXPORT_EXPIRED").await;
}

#[tokio::test]
async fn a_queued_run_has_a_pending_distribution_and_malformed_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let queued = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    let dist_id = queued.run_id.replace("export-run::", "export-dist::");
    let body: Value = acme
        .get(&format!("/export-center/distributions/{dist_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "pending");
    assert!(body["links"].as_array().unwrap().is_empty());
    for id in ["nope", &queued.run_id, "export-dist::acme::2025-12-06::0099"] {
        let response = acme
            .get(&format!("/export-center/distributions/{id}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "ERR_EXPORT_NOT_FOUND").await;
    }
}
