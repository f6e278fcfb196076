//! The runs API end to end: creation, status, outputs, listing, idempotency, cancel.

use std::collections::BTreeSet;

use export_core::{Sha256Digest, TenantId};
use export_store::{IdempotencyClaim, RunQuery};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, download_all, fixtures, TestApp};

#[tokio::test]
async fn a_run_goes_from_queued_to_succeeded_with_every_output() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");

    let response = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("daily"), "priority": "high" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["runId"], "export-run::acme::2025-12-06::0001");
    assert_eq!(body["status"], "queued");
    assert_eq!(location, "/export-center/runs/export-run::acme::2025-12-06::0001");
    assert_eq!(body["links"]["status"], location);
    assert_eq!(body["links"]["events"], format!("{location}/events"));
    assert_eq!(body["retryAfter"], retry_after);
    assert!(body["estimateSeconds"].as_u64().unwrap() >= 1);

    let queued = acme.run("export-run::acme::2025-12-06::0001").await;
    assert_eq!(queued.status, "queued");
    assert_eq!(queued.queue_position, Some(1), "next in the tenant's queue");
    assert_eq!(queued.priority, "high");
    assert_eq!(queued.created_at, "2025-12-06T09:59:58Z");
    assert!(queued.outputs.is_empty());
    assert_eq!(queued.progress.percent, 0);
    let total = queued.progress.items_total;
    assert_eq!(
        total,
        (25 + 3) + (3 + 3 + 2) + 3,
        "advisories, vex and policies of the fixtures"
    );

    assert_eq!(app.run_pending().await, 1);
    let done = acme.run("export-run::acme::2025-12-06::0001").await;
    assert_eq!(done.status, "succeeded", "{:?}", done.errors);
    assert_eq!(done.progress.percent, 100);
    assert_eq!(done.queue_position, None);
    assert_eq!(done.progress.items_completed, total);
    assert_eq!(
        done.expires_at.as_deref(),
        Some("2025-12-13T09:59:58Z"),
        "7 days of retention"
    );
    assert!(done.warnings.is_empty());
    let listed: Vec<(String, String, String)> = done
        .outputs
        .iter()
        .map(|o| (o.kind.clone(), o.id.clone(), o.format.clone()))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("advisory", "advisory", "json"),
        ("advisory", "advisory", "ndjson"),
        ("bundle", "bundle", "tar.zst"),
        ("checksums", "checksums", "txt"),
        ("manifest", "manifest", "json"),
        ("policy", "policy", "json"),
        ("policy", "policy", "ndjson"),
        ("vex", "vex", "json"),
        ("vex", "vex", "ndjson"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(listed, expected);

    let files = download_all(&app, &done).await;
    let ndjson = String::from_utf8(files["advisory.ndjson"].clone()).unwrap();
    let records: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 25 + 3);
    assert!(ndjson.ends_with('\n'));
    let keys: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["source"].as_str().unwrap().into(),
                r["digest"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "records are sorted by (id, source, digest)");
    let record = &records[0];
    assert_eq!(record["kind"], "advisory");
    let document_bytes = export_core::canonical_json(&record["document"]);
    assert_eq!(
        record["digest"],
        Sha256Digest::of(&document_bytes).to_string(),
        "digest of the stored document"
    );

    let json_file: Value = serde_json::from_slice(&files["advisory.json"]).unwrap();
    assert_eq!(json_file["kind"], "advisory");
    assert_eq!(json_file["target"], "advisory");
    assert_eq!(json_file["items"].as_array().unwrap(), &records);

    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["schema"], "export-center/manifest/v1");
    assert_eq!(manifest["tenant"], "acme");
    assert_eq!(manifest["profile"]["id"], "export-profile::acme::daily");
    assert_eq!(manifest["snapshot"]["items"], total);
    assert_eq!(manifest["items"].as_array().unwrap().len(), 6);
    let checksums = String::from_utf8(files["checksums.txt"].clone()).unwrap();
    assert_eq!(checksums.lines().count(), 7, "six data files and the manifest");
    for line in checksums.lines() {
        let (hex, path) = line.split_once("  ").unwrap();
        assert_eq!(Sha256Digest::of(&files[path]).hex(), hex, "{path}");
    }
}

#[tokio::test]
async fn a_target_without_items_gives_an_empty_file_and_a_warning() {
    let app = TestApp::spawn().await;
    app.ingest("acme", "osv-go", &[fixtures().join("osv-go")]).await;
    let acme = app.tenant("acme");
    let done = acme
        .export(
            "daily",
            json!({ "targets": ["advisory", "policy"], "formats": ["json", "ndjson"] }),
        )
        .await;
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.warnings.len(), 1);
    assert_eq!(done.warnings[0].code, "EMPTY_TARGET");
    assert_eq!(done.warnings[0].target.as_deref(), Some("policy"));
    let files = download_all(&app, &done).await;
    assert_eq!(files["policy.ndjson"], b"");
    assert_eq!(
        files["policy.json"],
        br#"{"items":[],"kind":"policy","target":"policy"}"#
    );
}

#[tokio::test]
async fn a_source_target_exports_only_that_source() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let done = acme.export("osv-only", json!({})).await;
    assert_eq!(done.status, "succeeded");
    let files = download_all(&app, &done).await;
    let text = String::from_utf8(files["advisory-osv-go.ndjson"].clone()).unwrap();
    assert_eq!(text.lines().count(), 25);
    assert!(text.lines().all(|line| line.contains(r#""source":"osv-go""#)));
    assert!(
        !files.contains_key("advisory-osv-go.json"),
        "the profile only allows ndjson"
    );
}

#[tokio::test]
async fn a_run_reads_the_snapshot_taken_when_it_was_created() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let doc = |summary: &str| json!({"schema_version": "1.3.1", "id": "GO-2099-0001", "modified": "2099-01-01T00:00:00Z", "summary": summary});
    std::fs::write(dir.path().join("a.json"), doc("first").to_string()).unwrap();
    app.ingest("acme", "osv-go", &[dir.path().to_owned()]).await;
    let acme = app.tenant("acme");
    let accepted = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny"), "formats": ["ndjson"] }))
        .await;

    // Changed after the run was planned: the run must not see it, a new run must.
    std::fs::write(dir.path().join("a.json"), doc("second").to_string()).unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        json!({"schema_version": "1.3.1", "id": "GO-2099-0002", "modified": "2099-01-01T00:00:00Z", "details": "x"}).to_string(),
    )
    .unwrap();
    let report = app.ingest("acme", "osv-go", &[dir.path().to_owned()]).await;
    assert_eq!((report.inserted, report.replaced, report.unchanged), (1, 1, 0));

    app.run_pending().await;
    let first = acme.run(&accepted.run_id).await;
    let text = String::from_utf8(download_all(&app, &first).await["advisory.ndjson"].clone()).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("\"first\""));

    let second = acme.export("tiny", json!({ "formats": ["ndjson"] })).await;
    let text = String::from_utf8(download_all(&app, &second).await["advisory.ndjson"].clone()).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.contains("\"second\"") && !text.contains("\"first\""));
}

#[tokio::test]
async fn listing_is_newest_first_with_filters_and_cursor_pagination() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    for idx in 0..5 {
        let profile = if idx % 2 == 0 { "daily" } else { "tiny" };
        acme.create_run(json!({ "profileId": acme.profile_id(profile) }))
            .await;
    }
    app.tenant("globex")
        .create_run(json!({ "profileId": "export-profile::globex::daily" }))
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = "/export-center/runs?limit=2".to_owned();
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = acme.get(&url).send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["runId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=5)
        .rev()
        .map(|seq| format!("export-run::acme::2025-12-06::{seq:04}"))
        .collect();
    assert_eq!(seen, expected);

    let tiny: Value = acme
        .get(&format!(
            "/export-center/runs?profileId={}",
            acme.profile_id("tiny")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tiny["items"].as_array().unwrap().len(), 2);
    let succeeded: Value = acme
        .get("/export-center/runs?status=succeeded")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(succeeded["items"].as_array().unwrap().is_empty());

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("status=done", "status"),
        ("cursor=zzz", "cursor"),
    ] {
        let response = acme
            .get(&format!("/export-center/runs?{query}"))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn run_ids_count_per_tenant_and_restart_each_day() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let globex = app.tenant("globex");
    assert_eq!(
        acme.create_run(json!({ "profileId": acme.profile_id("tiny") }))
            .await
            .run_id,
        "export-run::acme::2025-12-06::0001"
    );
    assert_eq!(
        globex
            .create_run(json!({ "profileId": globex.profile_id("daily") }))
            .await
            .run_id,
        "export-run::globex::2025-12-06::0001"
    );
    assert_eq!(
        acme.create_run(json!({ "profileId": acme.profile_id("tiny") }))
            .await
            .run_id,
        "export-run::acme::2025-12-06::0002"
    );
    app.clock.advance(chrono::Duration::days(1));
    assert_eq!(
        acme.create_run(json!({ "profileId": acme.profile_id("tiny") }))
            .await
            .run_id,
        "export-run::acme::2025-12-07::0001"
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_never_makes_a_second_run() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let body = json!({ "profileId": acme.profile_id("daily"), "targets": ["vex", "advisory"] });
    let first = acme
        .post("/export-center/runs")
        .header("Idempotency-Key", "k-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await.unwrap();

    // The same body with other key order and whitespace is the same request.
    let same = r#"{ "targets": ["vex", "advisory"],   "profileId": "export-profile::acme::daily" }"#;
    let replay = acme
        .post("/export-center/runs")
        .header("Idempotency-Key", "k-1")
        .header("content-type", "application/json")
        .body(same)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), first_body);

    let mismatch = acme
        .post("/export-center/runs")
        .header("Idempotency-Key", "k-1")
        .json(&json!({ "profileId": acme.profile_id("daily") }))
        .send()
        .await
        .unwrap();
    assert_problem(mismatch, 422, "ERR_EXPORT_IDEMPOTENCY_MISMATCH").await;

    // Another tenant may use the same key for its own request.
    let globex = app.tenant("globex");
    let other = globex
        .post("/export-center/runs")
        .header("Idempotency-Key", "k-1")
        .json(&json!({ "profileId": globex.profile_id("daily") }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert!(other.headers().get("idempotent-replayed").is_none());

    let runs = app
        .app
        .state
        .store
        .list_runs(
            &TenantId::parse("acme").unwrap(),
            &RunQuery {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 1, "the key yielded exactly one run");
}

/// Another replica has claimed the key and not yet created its run: a retry is told
/// so (409, with when to retry) until the claim's lease lapses, and then takes the key
/// over and creates the run, once.
#[tokio::test]
async fn a_request_in_flight_under_the_same_key_is_a_conflict_until_its_lease_lapses() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let body = json!({ "profileId": acme.profile_id("daily") });
    let fingerprint = Sha256Digest::of(&export_core::canonical_json(&body));
    let claim = IdempotencyClaim {
        subject: "test-user".into(),
        method: "POST".into(),
        path: "/export-center/runs".into(),
        key: "in-flight".into(),
        fingerprint,
    };
    let tenant = TenantId::parse("acme").unwrap();
    let lease = std::time::Duration::from_secs(app.app.state.config.limits.idempotency_lease_seconds);
    app.app
        .state
        .store
        .begin_idempotency(&tenant, &claim, export_core::Clock::now(&app.clock), lease)
        .await
        .unwrap();
    let retry = || {
        acme.post("/export-center/runs")
            .header("Idempotency-Key", "in-flight")
            .json(&body)
            .send()
    };
    let problem = assert_problem(retry().await.unwrap(), 409, "ERR_EXPORT_CONFLICT").await;
    assert_eq!(problem["retryAfterSeconds"], 11, "{problem}");

    // The claiming replica died: after the lease the retry takes the key over.
    app.clock.advance(chrono::Duration::seconds(10));
    let taken_over = retry().await.unwrap();
    assert_eq!(taken_over.status(), StatusCode::ACCEPTED);
    assert!(taken_over.headers().get("idempotent-replayed").is_none());
    let replayed = retry().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let runs = app
        .app
        .state
        .store
        .list_runs(
            &tenant,
            &RunQuery {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(runs.runs.len(), 1, "the key yielded exactly one run");
}

#[tokio::test]
async fn a_failed_validation_does_not_burn_the_idempotency_key() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let bad = acme
        .post("/export-center/runs")
        .header("Idempotency-Key", "retry-me")
        .json(&json!({ "profileId": acme.profile_id("daily"), "formats": ["xml"] }))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    let fixed = acme
        .post("/export-center/runs")
        .header("Idempotency-Key", "retry-me")
        .json(&json!({ "profileId": acme.profile_id("daily"), "formats": ["json"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status(), StatusCode::ACCEPTED);

    for key in ["", &"k".repeat(256), "tab\there"] {
        let response = acme
            .post("/export-center/runs")
            .header("Idempotency-Key", key)
            .json(&json!({ "profileId": acme.profile_id("daily") }))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    }
}

#[tokio::test]
async fn cancelling_a_queued_run_cancels_it_and_a_second_cancel_conflicts() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let accepted = acme
        .create_run(json!({ "profileId": acme.profile_id("daily") }))
        .await;
    let url = format!("/export-center/runs/{}/cancel", accepted.run_id);
    let response = acme.post(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(app.run_pending().await, 0, "a cancelled run is never executed");
    assert_problem(acme.post(&url).send().await.unwrap(), 409, "ERR_EXPORT_CONFLICT").await;

    let finished = acme.export("tiny", json!({})).await;
    let url = format!("/export-center/runs/{}/cancel", finished.run_id);
    assert_problem(acme.post(&url).send().await.unwrap(), 409, "ERR_EXPORT_CONFLICT").await;
}

#[tokio::test]
async fn one_tenant_never_sees_another_tenants_runs() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let done = acme.export("daily", json!({})).await;
    let globex = app.tenant("globex");
    for path in [format!("/export-center/runs/{}", done.run_id)] {
        assert_problem(
            globex.get(&path).send().await.unwrap(),
            404,
            "ERR_EXPORT_NOT_FOUND",
        )
        .await;
    }
    let cancel = globex
        .post(&format!("/export-center/runs/{}/cancel", done.run_id))
        .send()
        .await
        .unwrap();
    assert_problem(cancel, 404, "ERR_EXPORT_NOT_FOUND").await;
    let list: Value = globex
        .get("/export-center/runs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
    let profiles: Value = globex
        .get("/export-center/profiles")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: BTreeSet<&str> = profiles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["export-profile::globex::daily", "export-profile::globex::mirror"])
    );
    // Another tenant's profile cannot be used either.
    let response = globex
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("daily") }))
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "ERR_EXPORT_PROFILE_NOT_FOUND").await;
}

#[tokio::test]
async fn a_project_header_narrows_what_a_caller_sees() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let in_red = acme
        .post("/export-center/runs")
        .header("X-StellaOps-Project", "red")
        .json(&json!({ "profileId": acme.profile_id("tiny") }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let run_id = in_red["runId"].as_str().unwrap();
    let as_blue = acme
        .get(&format!("/export-center/runs/{run_id}"))
        .header("X-StellaOps-Project", "blue")
        .send()
        .await
        .unwrap();
    assert_problem(as_blue, 404, "ERR_EXPORT_NOT_FOUND").await;
    let as_red: Value = acme
        .get(&format!("/export-center/runs/{run_id}"))
        .header("X-StellaOps-Project", "red")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_red["project"], "red");
    let blue_list: Value = acme
        .get("/export-center/runs")
        .header("X-StellaOps-Project", "blue")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(blue_list["items"].as_array().unwrap().is_empty());
    let all: Value = acme
        .get("/export-center/runs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        1,
        "without the header the whole tenant is visible"
    );
}

#[tokio::test]
async fn profiles_are_listed_sorted_with_their_revision() {
    let app = TestApp::spawn().await;
    let profiles: Value = app
        .tenant("acme")
        .get("/export-center/profiles")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = profiles["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "export-profile::acme::daily",
            "export-profile::acme::mirror",
            "export-profile::acme::osv-only",
            "export-profile::acme::published",
            "export-profile::acme::sealed-off",
            "export-profile::acme::signed",
            "export-profile::acme::signed-gz",
            "export-profile::acme::signed-zip",
            "export-profile::acme::tiny",
        ]
    );
    assert!(items[0]["revision"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(items[2]["formats"], json!(["ndjson"]));
    assert_eq!(items[1]["mirror"], json!({ "mode": "delta", "validDays": 10 }));
    assert_eq!(items[0]["retention"], json!({ "defaultDays": 7, "maxDays": 30 }));
}

#[tokio::test]
async fn a_finished_runs_status_read_again_is_still_refused_outside_its_tenant_project_and_scope() {
    // The status of an ended run is kept in memory after the first read; every later
    // read must pass the same checks as a read from the store.
    use export_core::Clock;
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let created: Value = acme
        .post("/export-center/runs")
        .header("X-StellaOps-Project", "red")
        .json(&json!({ "profileId": acme.profile_id("tiny") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = created["runId"].as_str().unwrap();
    app.run_pending().await;
    let path = format!("/export-center/runs/{run_id}");
    let read_as = |project: Option<&'static str>| {
        let mut request = acme.get(&path);
        if let Some(project) = project {
            request = request.header("X-StellaOps-Project", project);
        }
        request.send()
    };
    let first = read_as(Some("red")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "succeeded");

    for _ in 0..2 {
        assert_problem(read_as(Some("blue")).await.unwrap(), 404, "ERR_EXPORT_NOT_FOUND").await;
        let globex = app.tenant("globex").get(&path).send().await.unwrap();
        assert_problem(globex, 404, "ERR_EXPORT_NOT_FOUND").await;
        // A token of acme without `export:read`.
        let key = export_auth::client::DpopKey::generate(export_auth::Alg::EdDSA);
        let token = acme.token(&key, &["export:write"]);
        let url = app.url(&path);
        let proof = key.proof_at("GET", &url, Some(&token), None, app.clock.now());
        let no_scope = app
            .http
            .get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .header("X-StellaOps-Tenant", "acme")
            .send()
            .await
            .unwrap();
        assert_problem(no_scope, 403, "ERR_SCOPE_MISMATCH").await;
        let again: Value = read_as(Some("red")).await.unwrap().json().await.unwrap();
        assert_eq!(again, first, "the same document while the link window holds");
        let whole_tenant: Value = read_as(None).await.unwrap().json().await.unwrap();
        assert_eq!(whole_tenant, first);
    }
}

#[tokio::test]
async fn a_finished_runs_status_read_again_follows_it_into_expiry() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let done = acme.export("tiny", json!({ "retentionDays": 1 })).await;
    assert_eq!(done.status, "succeeded");
    let again = acme.run(&done.run_id).await;
    assert_eq!(again.outputs, done.outputs, "read twice in one link window");
    let url = done.outputs[0].url.clone();

    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(app.app.runner.expire_due().await.unwrap(), 1);
    let expired = acme.run(&done.run_id).await;
    assert_eq!(expired.status, "expired", "never the remembered `succeeded`");
    assert!(expired.outputs.is_empty());
    assert_problem(app.get(&url).await, 410, "ERR_EXPORT_EXPIRED").await;
    assert_eq!(acme.run(&done.run_id).await.status, "expired");
}
