//! Every error this surface produces is an RFC 9457 problem with the contract's code.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn the_tenant_header_is_required_and_checked() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let profiles = "/export-center/profiles";
    let missing = acme.authed(Method::GET, profiles).send().await.unwrap();
    assert_problem(missing, 400, "ERR_TENANT_REQUIRED").await;
    let invalid = acme
        .authed(Method::GET, profiles)
        .header("X-StellaOps-Tenant", "Not A Tenant")
        .send()
        .await
        .unwrap();
    assert_problem(invalid, 400, "ERR_TENANT_REQUIRED").await;
    let legacy = acme
        .authed(Method::GET, profiles)
        .header("X-Stella-Tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), StatusCode::OK, "the legacy header is an alias");
    let conflicting = acme
        .authed(Method::GET, profiles)
        .header("X-StellaOps-Tenant", "acme")
        .header("X-Stella-Tenant", "globex")
        .send()
        .await
        .unwrap();
    assert_problem(conflicting, 400, "ERR_EXPORT_REQUEST_INVALID").await;
}

#[tokio::test]
async fn run_creation_is_validated_in_the_contracts_order() {
    let app = TestApp::spawn_with(|config| config.limits.max_outputs = 8).await;
    let acme = app.tenant("acme");
    let profile = acme.profile_id("daily");
    let post = |body: String, content_type: &'static str| {
        acme.post("/export-center/runs")
            .header("content-type", content_type)
            .body(body)
    };

    // 1. The size limit comes first, even before the content type.
    let huge = format!(
        "{{\"profileId\":\"{}\",\"pad\":\"{}\"}}",
        profile,
        "x".repeat(300 * 1024)
    );
    let problem = assert_problem(
        post(huge.clone(), "text/plain").send().await.unwrap(),
        413,
        "ERR_EXPORT_TOO_LARGE",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("262144"));
    // A chunked body without Content-Length is cut at the limit too.
    let stream = futures::stream::iter((0..400).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let chunked = acme
        .post("/export-center/runs")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_problem(chunked, 413, "ERR_EXPORT_TOO_LARGE").await;

    // 2. Content type, then syntax, then unknown fields.
    let body = json!({ "profileId": profile }).to_string();
    assert_problem(
        post(body.clone(), "text/plain").send().await.unwrap(),
        415,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    assert_problem(
        post("{\"profileId\":".into(), "application/json")
            .send()
            .await
            .unwrap(),
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    let unknown = json!({ "profileId": profile, "colour": "blue" }).to_string();
    let problem = assert_problem(
        post(unknown, "application/json").send().await.unwrap(),
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("colour"),
        "{problem}"
    );
    let wrong_type = json!({ "profileId": profile, "targets": "vex" }).to_string();
    let problem = assert_problem(
        post(wrong_type, "application/json").send().await.unwrap(),
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "targets");

    // 3. The profile.
    for id in [
        "export-profile::acme::nope",
        "not-an-id",
        "export-profile::globex::daily",
    ] {
        let body = json!({ "profileId": id }).to_string();
        assert_problem(
            post(body, "application/json").send().await.unwrap(),
            404,
            "ERR_EXPORT_PROFILE_NOT_FOUND",
        )
        .await;
    }

    // 4-8. Fields, each named.
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({ "targets": [] }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "targets",
        ),
        (
            json!({ "targets": ["vex", "vex"] }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "targets[1]",
        ),
        (
            json!({ "targets": ["advisory:Bad"] }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "targets[0]",
        ),
        (
            json!({ "targets": (0..51).map(|i| format!("advisory:s{i}")).collect::<Vec<_>>() }),
            413,
            "ERR_EXPORT_TOO_LARGE",
            "targets",
        ),
        (
            json!({ "formats": ["xml"] }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "formats[0]",
        ),
        (
            json!({ "distribution": { "type": "oci" } }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "distribution.type",
        ),
        (
            json!({ "distribution": { "signing": { "enabled": true } } }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "distribution.signing.enabled",
        ),
        (
            json!({ "retentionDays": 31 }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "retentionDays",
        ),
        (
            json!({ "priority": "urgent" }),
            400,
            "ERR_EXPORT_REQUEST_INVALID",
            "priority",
        ),
        (json!({}), 413, "ERR_EXPORT_TOO_LARGE", "targets"),
    ];
    for (extra, status, code, field) in cases {
        let mut body = json!({ "profileId": profile });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = acme.post("/export-center/runs").json(&body).send().await.unwrap();
        let problem = assert_problem(response, status, code).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_malformed_ids_are_problems() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    assert_problem(
        acme.get("/export-center/nothing").send().await.unwrap(),
        404,
        "ERR_EXPORT_NOT_FOUND",
    )
    .await;
    assert_problem(app.get("/").await, 404, "ERR_EXPORT_NOT_FOUND").await;
    let wrong_method = app
        .http
        .delete(app.url("/export-center/runs"))
        .header("X-StellaOps-Tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_problem(wrong_method, 405, "ERR_EXPORT_REQUEST_INVALID").await;
    for id in [
        "garbage",
        "export-run::acme::2025-13-01::0001",
        "export-run::acme::2025-12-06::1",
        "%00",
        "export-run::acme::2025-12-06::0009",
    ] {
        let response = acme
            .get(&format!("/export-center/runs/{id}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "ERR_EXPORT_NOT_FOUND").await;
    }
    let cancel = acme
        .post("/export-center/runs/export-run::acme::2025-12-06::0009/cancel")
        .send()
        .await
        .unwrap();
    assert_problem(cancel, 404, "ERR_EXPORT_NOT_FOUND").await;
}

#[tokio::test]
async fn a_server_error_carries_no_internal_detail() {
    let app = TestApp::spawn().await;
    // Break the database behind the service's back.
    let db = app.data_dir.join("export-center.db");
    let conn = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TABLE runs;")
        .status()
        .unwrap();
    assert!(conn.success());
    let response = app
        .tenant("acme")
        .get("/export-center/runs")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 500, "ERR_EXPORT_INTERNAL").await;
    let detail = problem["detail"].as_str().unwrap().to_lowercase();
    assert!(
        !detail.contains("sql") && !detail.contains("table") && !detail.contains("no such"),
        "{problem}"
    );
    assert!(problem["detail"].as_str().unwrap().contains("trace id"));
}

#[tokio::test]
async fn every_response_says_whether_the_site_is_sealed() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/export-center/profiles", "/nope"] {
        let response = app.get(path).await;
        assert_eq!(response.headers()["x-sealed-mode"], "false", "{path}");
    }
}

/// Found by schemathesis: a query string axum cannot read (a repeated parameter) and a
/// path segment that is not UTF-8 were answered in axum's plain text, not as problems.
#[tokio::test]
async fn unreadable_query_strings_and_paths_are_problems_too() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    for path in [
        "/export-center/runs?limit=1&limit=2",
        "/export-center/runs/export-run::acme::2025-12-06::0001/events?lastEventId=1&lastEventId=2",
    ] {
        let response = acme.get(path).send().await.unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
        assert_eq!(problem["errors"][0]["field"], "query", "{path}: {problem}");
    }
    let response = acme.get("/export-center/runs/%FF").send().await.unwrap();
    assert_problem(response, 404, "ERR_EXPORT_NOT_FOUND").await;

    // A malformed `lastEventId` is refused even beside a `Last-Event-ID` header.
    let accepted = acme
        .create_run(json!({ "profileId": acme.profile_id("daily") }))
        .await;
    let run_id = accepted.run_id;
    let response = acme
        .get(&format!("/export-center/runs/{run_id}/events?lastEventId=1.5"))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(problem["errors"][0]["field"], "Last-Event-ID", "{problem}");
}
