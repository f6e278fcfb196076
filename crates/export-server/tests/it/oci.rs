//! `distribution.type = "oci"` against a real registry (Debian's docker-registry, which
//! has no Referrers API, so the DSSE referrer goes through the tag fallback), and the
//! sealed-mode egress allowlist.

use std::process::Command;

use export_core::Sha256Digest;
use export_oci::testing::RegistryServer;
use export_oci::{OciPublisher, DSSE_ARTIFACT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, download_all, TestApp};

/// An app that pushes to `registry`, the one loopback address its allowlist names.
async fn app_for(registry: &RegistryServer) -> (TestApp, String) {
    let settings = registry.settings();
    let app = TestApp::spawn_with(|config| {
        config.distribution.oci = settings;
        config.egress_allowlist = vec![registry.address.clone()];
    })
    .await;
    let public = app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    (app, public)
}

#[tokio::test]
async fn an_oci_run_is_pushed_and_pulls_back_into_a_directory_that_verifies() {
    let registry = RegistryServer::start();
    let (app, public) = app_for(&registry).await;
    let acme = app.tenant("acme");
    let reference = format!("{}/acme/daily", registry.address);
    let done = acme
        .export(
            "published",
            json!({ "distribution": { "type": "oci", "ref": reference } }),
        )
        .await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);

    // The distribution names the pushed digest.
    let dist_id = done.run_id.replace("export-run::", "export-dist::");
    let response = acme
        .get(&format!("/export-center/distributions/{dist_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let distribution: Value = response.json().await.unwrap();
    assert_eq!(distribution["type"], "oci");
    assert_eq!(distribution["status"], "published");
    let pushed = distribution["ref"].as_str().unwrap().to_owned();
    assert!(pushed.starts_with(&format!("{reference}@sha256:")), "{pushed}");

    // Pulled back, every file is the run's own, byte for byte, and verifies offline.
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pulled = publisher.pull(&pushed, dir.path()).await.unwrap();
    let mut downloaded = download_all(&app, &done).await;
    let dsse_url = done.outputs.iter().find_map(|o| o.dsse_url.clone()).unwrap();
    downloaded.insert(
        "manifest.dsse.json".into(),
        app.get(&dsse_url).await.bytes().await.unwrap().to_vec(),
    );
    let names: Vec<&str> = pulled.iter().map(|f| f.path.as_str()).collect();
    let expected: Vec<&str> = downloaded.keys().map(String::as_str).collect();
    assert_eq!(names, expected);
    for (name, bytes) in &downloaded {
        assert_eq!(&std::fs::read(dir.path().join(name)).unwrap(), bytes, "{name}");
    }
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("acme.pub.pem");
    std::fs::write(&key_path, &public).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_export-center"))
        .arg("verify")
        .arg(dir.path())
        .arg("--key")
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "export-center verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The DSSE envelope hangs off the artifact as a referrer (tag fallback here).
    let digest = pushed.split('@').nth(1).unwrap();
    let referrers = publisher
        .referrers(&registry.address, "acme/daily", digest)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].artifact_type.as_deref(), Some(DSSE_ARTIFACT_TYPE));

    // The default tag is the run's sequence number.
    let seq = done.run_id.rsplit("::").next().unwrap();
    let tagged = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}:{seq}"))
        .output()
        .expect("skopeo is installed");
    assert!(
        tagged.status.success(),
        "{}",
        String::from_utf8_lossy(&tagged.stderr)
    );
    assert_eq!(Sha256Digest::of(&tagged.stdout).to_string(), digest);
}

#[tokio::test]
async fn a_registry_that_refuses_the_push_fails_the_run_and_keeps_nothing() {
    let registry = RegistryServer::start_read_only();
    let (app, _) = app_for(&registry).await;
    let acme = app.tenant("acme");
    let done = acme
        .export(
            "published",
            json!({ "distribution": { "type": "oci", "ref": format!("{}/acme/daily", registry.address) } }),
        )
        .await;
    assert_eq!(done.status, "failed");
    assert_eq!(done.errors[0].code, "ERR_EXPORT_DISTRIBUTION_FAILED");
    assert!(
        done.errors[0].message.contains(&registry.address),
        "{}",
        done.errors[0].message
    );
    assert_eq!(done.errors[0].retry_after_seconds, Some(300));
    assert!(done.outputs.is_empty());
    assert!(
        !app.run_dir(&done.run_id).exists()
            || std::fs::read_dir(app.run_dir(&done.run_id))
                .unwrap()
                .next()
                .is_none(),
        "the partial outputs are deleted"
    );

    // The stream ends with a `failed` event that says when to retry.
    let events = acme
        .get(&format!("/export-center/runs/{}/events", done.run_id))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed = events
        .split("\n\n")
        .find(|frame| frame.contains("event: failed"))
        .expect("a failed event");
    let data: Value =
        serde_json::from_str(failed.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["code"], "ERR_EXPORT_DISTRIBUTION_FAILED");
    assert_eq!(data["retryAfterSeconds"], 300);
}

#[tokio::test]
async fn a_sealed_site_refuses_distributions_outside_its_allowlist() {
    let app = TestApp::spawn_with(|config| {
        config.sealed = true;
        config.egress_allowlist = vec![
            "registry.internal".to_owned(),
            "mirror.internal:5000".to_owned(),
            "127.0.0.1:5000".to_owned(),
        ];
    })
    .await;
    app.install_signing_key("acme", "signer", "ed25519");
    let acme = app.tenant("acme");
    let profile = acme.profile_id("published");
    let create = |reference: &str| {
        acme.post("/export-center/runs").json(&json!({
            "profileId": profile,
            "distribution": { "type": "oci", "ref": reference },
        }))
    };
    for blocked in [
        "registry.example.com/acme/exports",
        "mirror.internal:5001/acme/exports",
        "10.1.2.3:5000/acme/exports",
        "127.0.0.1:5001/acme/exports",
        "localhost:5000/acme/exports",
    ] {
        let response = create(blocked).send().await.unwrap();
        assert_eq!(response.headers()["x-sealed-mode"], "true");
        let problem = assert_problem(response, 400, "ERR_EXPORT_EGRESS_BLOCKED").await;
        assert_eq!(problem["errors"][0]["field"], "distribution.ref", "{problem}");
    }
    for allowed in [
        "registry.internal/acme/exports",
        "registry.internal:443/acme/exports",
        "mirror.internal:5000/acme/exports",
        "127.0.0.1:5000/acme/exports",
    ] {
        let response = create(allowed).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{allowed}: {}",
            response.text().await.unwrap()
        );
    }
    // `http` distributions are served by the site itself.
    let response = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": profile, "distribution": { "type": "http" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_open_site_pushes_anywhere_but_checks_the_reference() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    let acme = app.tenant("acme");
    let profile = acme.profile_id("published");
    let response = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": profile, "distribution": { "type": "oci", "ref": "exports/daily" } }))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(problem["errors"][0]["field"], "distribution.ref");
    assert!(
        problem["detail"].as_str().unwrap().contains("registry host"),
        "{problem}"
    );
}
