//! Signed-URL downloads: headers, ranges, conditional requests, expiry, and every
//! attempt to reach a file the link was not signed for.

use base64::Engine;
use export_core::Sha256Digest;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

async fn finished_run(app: &TestApp) -> export_api_types::RunStatusResponse {
    app.ingest_fixtures("acme").await;
    let done = app.tenant("acme").export("daily", json!({})).await;
    assert_eq!(done.status, "succeeded");
    done
}

fn output<'a>(
    status: &'a export_api_types::RunStatusResponse,
    path: &str,
) -> &'a export_api_types::OutputResponse {
    status
        .outputs
        .iter()
        .find(|o| o.url.split('?').next().unwrap().ends_with(&format!("/{path}")))
        .unwrap()
}

#[tokio::test]
async fn a_download_carries_integrity_and_caching_headers() {
    let app = TestApp::spawn().await;
    let done = finished_run(&app).await;
    let advisory = output(&done, "advisory.ndjson");
    assert!(
        advisory.url.starts_with(&app.base),
        "links are absolute: {}",
        advisory.url
    );
    assert!(
        advisory.url.contains("expires=")
            && advisory.url.contains("kid=local")
            && advisory.url.contains("sig=")
    );
    // 09:59:58 + 6 h, rounded up to the next 5 minutes.
    assert_eq!(advisory.expires_at, "2025-12-06T16:00:00Z");

    let response = app.get(&advisory.url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let digest = Sha256Digest::of(&bytes);
    assert_eq!(advisory.sha256, digest.to_string());
    assert_eq!(advisory.bytes, bytes.len() as u64);
    assert_eq!(headers["etag"], format!("\"{digest}\""));
    assert_eq!(headers["content-length"], bytes.len().to_string());
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["x-content-sha256"], digest.hex());
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest.0);
    assert_eq!(headers["repr-digest"], format!("sha-256=:{b64}:"));
    assert_eq!(
        headers["cache-control"],
        format!("private, immutable, max-age={}", 6 * 3600 + 2)
    );
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"advisory.ndjson\""
    );

    let head = app.http.head(&advisory.url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], bytes.len().to_string());
    assert_eq!(head.headers()["etag"], format!("\"{digest}\""));

    let cached = app
        .http
        .get(&advisory.url)
        .header("If-None-Match", format!("\"{digest}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert!(cached.bytes().await.unwrap().is_empty());

    let range = app
        .http
        .get(&advisory.url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        range.headers()["content-range"],
        format!("bytes 10-19/{}", bytes.len())
    );
    assert_eq!(range.bytes().await.unwrap(), bytes.slice(10..20));
    let tail = app
        .http
        .get(&advisory.url)
        .header("Range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap(), bytes.slice(bytes.len() - 5..));
    let beyond = app
        .http
        .get(&advisory.url)
        .header("Range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", bytes.len())
    );
}

/// Positions as large as a client likes (issue 12, point 7): every answer is a range
/// inside the file, a `416`, or the whole file, on GET and on HEAD alike; never a `500`
/// and never a `Content-Length` past the file.
#[tokio::test]
async fn huge_or_odd_ranges_never_overflow() {
    let app = TestApp::spawn().await;
    let done = finished_run(&app).await;
    let advisory = output(&done, "advisory.ndjson");
    let bytes = app.get(&advisory.url).await.bytes().await.unwrap();
    let len = bytes.len() as u64;
    let max = u64::MAX;
    let partial = |start: u64, end: u64| Some((start, end));
    let cases = [
        (
            format!("bytes=5-{max}"),
            StatusCode::PARTIAL_CONTENT,
            partial(5, len),
        ),
        (
            format!("bytes=5-{max}0"),
            StatusCode::PARTIAL_CONTENT,
            partial(5, len),
        ),
        (format!("bytes={max}-"), StatusCode::RANGE_NOT_SATISFIABLE, None),
        (
            format!("bytes={max}-{max}"),
            StatusCode::RANGE_NOT_SATISFIABLE,
            None,
        ),
        (format!("bytes=1{max}-"), StatusCode::RANGE_NOT_SATISFIABLE, None),
        (
            format!("bytes=-{max}"),
            StatusCode::PARTIAL_CONTENT,
            partial(0, len),
        ),
        (
            format!("bytes=-{}", max - 1),
            StatusCode::PARTIAL_CONTENT,
            partial(0, len),
        ),
        (
            format!("bytes={}-{max}", len - 1),
            StatusCode::PARTIAL_CONTENT,
            partial(len - 1, len),
        ),
        ("bytes=0-0,5-".to_owned(), StatusCode::OK, None),
        ("bytes=0-0".to_owned(), StatusCode::PARTIAL_CONTENT, partial(0, 1)),
        (format!("bytes={max}-5"), StatusCode::OK, None),
        ("bytes=-0".to_owned(), StatusCode::RANGE_NOT_SATISFIABLE, None),
        ("bytes=+5-9".to_owned(), StatusCode::OK, None),
    ];
    for (range, status, selected) in cases {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let response = app
                .http
                .request(method.clone(), &advisory.url)
                .header("Range", &range)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{method} {range}");
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap();
            let (content_range, expected_body) = match (status, selected) {
                (StatusCode::PARTIAL_CONTENT, Some((start, end))) => (
                    Some(format!("bytes {start}-{}/{len}", end - 1)),
                    bytes.slice(start as usize..end as usize),
                ),
                (StatusCode::RANGE_NOT_SATISFIABLE, _) => (Some(format!("bytes */{len}")), body.clone()),
                _ => (None, bytes.clone()),
            };
            assert_eq!(
                headers
                    .get("content-range")
                    .map(|value| value.to_str().unwrap().to_owned()),
                content_range,
                "{method} {range}"
            );
            if status == StatusCode::RANGE_NOT_SATISFIABLE {
                continue;
            }
            assert_eq!(
                headers["content-length"],
                expected_body.len().to_string(),
                "{method} {range}"
            );
            if method == reqwest::Method::GET {
                assert_eq!(body, expected_body, "{method} {range}");
            }
        }
    }
}

#[tokio::test]
async fn an_expired_link_is_gone_and_a_new_status_read_signs_a_fresh_one() {
    let app = TestApp::spawn().await;
    let done = finished_run(&app).await;
    let url = output(&done, "manifest.json").url.clone();
    app.clock.advance(chrono::Duration::hours(7));
    assert_problem(app.get(&url).await, 410, "ERR_EXPORT_EXPIRED").await;
    let fresh = app.tenant("acme").run(&done.run_id).await;
    assert_eq!(
        app.get(&output(&fresh, "manifest.json").url).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn links_never_outlive_the_runs_retention() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let done = app
        .tenant("acme")
        .export("daily", json!({ "retentionDays": 1 }))
        .await;
    // Read the status 23 h 59 min later: the link is capped at the run's expiry.
    app.clock.advance(chrono::Duration::minutes(23 * 60 + 59));
    let status = app.tenant("acme").run(&done.run_id).await;
    let link = output(&status, "manifest.json");
    assert_eq!(link.expires_at, status.expires_at.clone().unwrap());
    app.clock.advance(chrono::Duration::minutes(2));
    assert_problem(app.get(&link.url).await, 410, "ERR_EXPORT_EXPIRED").await;
}

#[tokio::test]
async fn a_tampered_link_is_refused() {
    let app = TestApp::spawn().await;
    let done = finished_run(&app).await;
    let url = output(&done, "advisory.json").url.clone();
    let (path, query) = url.split_once('?').unwrap();
    let expires = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let cases = [
        url.replace("advisory.json", "vex.json"),
        url.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 300),
        ),
        url.replace("kid=local", "kid=other"),
        format!("{path}?expires={expires}&kid=local&sig=AAAA"),
        path.to_owned(),
    ];
    for tampered in cases {
        assert_problem(app.get(&tampered).await, 403, "ERR_EXPORT_SIGNATURE_INVALID").await;
    }
}

#[tokio::test]
async fn a_link_for_one_run_never_reaches_another_runs_or_tenants_files() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    app.ingest_fixtures("globex").await;
    let acme_run = app.tenant("acme").export("daily", json!({})).await;
    let globex_run = app.tenant("globex").export("daily", json!({})).await;
    let globex_url = output(&globex_run, "advisory.json").url.clone();
    // globex edits its own signed link to point at acme's run.
    let edited = globex_url.replace(&globex_run.run_id, &acme_run.run_id);
    assert_ne!(edited, globex_url);
    assert_problem(app.get(&edited).await, 403, "ERR_EXPORT_SIGNATURE_INVALID").await;

    // Path tricks are refused before the signature is even looked at.
    let (path, query) = globex_url.split_once('?').unwrap();
    let base = path.rsplit_once('/').unwrap().0;
    for trick in [
        format!("{base}/../{}/advisory.json?{query}", acme_run.run_id),
        format!("{base}/%2e%2e/advisory.json?{query}"),
        format!("{base}%2Fadvisory.json?{query}"),
        format!("{base}/advisory.json%00?{query}"),
        format!("{base}/.hidden?{query}"),
        format!("{base}//advisory.json?{query}"),
    ] {
        let response = app.http.get(&trick).send().await.unwrap();
        assert!(
            matches!(response.status().as_u16(), 403 | 404),
            "{trick} answered {}",
            response.status()
        );
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
}
