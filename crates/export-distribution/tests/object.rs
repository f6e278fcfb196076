//! Object-storage distribution against a real S3-compatible server (`s3s-fs`): publish a
//! run's outputs, then fetch them through presigned URLs with a plain HTTP client, as a
//! client of the distribution endpoint would.

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use export_artifacts::testing::{key, pseudo_random_bytes, run_id};
use export_artifacts::ArtifactStore;
use export_core::{EgressPolicy, EgressRefusal, RunId};
use export_distribution::testing::{object_publisher, S3Server};
use export_distribution::{presigned_link_expiry, ObjectError, ObjectPublisher};
use export_egress::EgressProxy;
use reqwest::StatusCode;

/// A run's outputs, from empty to a bundle large enough for a multipart upload.
fn outputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "manifest.json",
            b"{\"schema\":\"export-center/manifest/v1\"}".to_vec(),
        ),
        ("checksums.txt", Vec::new()),
        ("data/advisory-osv.ndjson", pseudo_random_bytes(1, 300_000)),
        ("bundle.tar.zst", pseudo_random_bytes(2, 17 * 1024 * 1024 + 5)),
    ]
}

/// An artifact store on disk holding `outputs` for `run`, as the runner leaves it.
async fn stored_run(run: &RunId, outputs: &[(&str, Vec<u8>)]) -> (ArtifactStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::local(&dir.path().join("artifacts")).unwrap();
    for (path, bytes) in outputs {
        artifacts
            .put(&key(run, path), Bytes::from(bytes.clone()))
            .await
            .unwrap();
    }
    (artifacts, dir)
}

async fn published(server: &S3Server, run: &RunId) -> ObjectPublisher {
    let outputs = outputs();
    let (artifacts, _dir) = stored_run(run, &outputs).await;
    let publisher = object_publisher(server, "exports/daily");
    let paths: Vec<&str> = outputs.iter().map(|(path, _)| *path).collect();
    publisher.publish_run(&artifacts, run, &paths).await.unwrap();
    publisher
}

async fn get(url: &str) -> (StatusCode, Bytes) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap())
}

/// `url` with the value of query parameter `name` replaced by what `change` makes of it.
fn with_param(url: &str, name: &str, change: impl Fn(&str) -> String) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name => format!("{key}={}", change(value)),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    let (_, query) = url.split_once('?').unwrap();
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[tokio::test]
async fn published_outputs_download_through_presigned_urls() {
    let server = S3Server::start();
    let run = run_id("acme", 3);
    let outputs = outputs();
    let (artifacts, _dir) = stored_run(&run, &outputs).await;
    let publisher = object_publisher(&server, "exports/daily");
    let paths: Vec<&str> = outputs.iter().map(|(path, _)| *path).collect();
    let total: usize = outputs.iter().map(|(_, bytes)| bytes.len()).sum();
    assert_eq!(
        publisher.publish_run(&artifacts, &run, &paths).await.unwrap(),
        total as u64
    );
    // Publishing again (a retried step) replaces the objects with the same bytes.
    publisher.publish_run(&artifacts, &run, &paths).await.unwrap();

    let now = Utc::now();
    for (path, bytes) in &outputs {
        let stored = server
            .data_dir()
            .join(S3Server::BUCKET)
            .join(format!("exports/daily/acme/{run}/{path}"));
        assert_eq!(std::fs::read(&stored).unwrap(), *bytes, "{}", stored.display());

        let url = publisher.presign_get(&run, path, now, now + TimeDelta::hours(6));
        assert!(
            url.starts_with(&format!(
                "{}/{}/exports/daily/acme/export-run%3A%3Aacme%3A%3A2025-12-06%3A%3A0003/{path}?",
                server.endpoint(),
                S3Server::BUCKET
            )),
            "{url}"
        );
        let (status, body) = get(&url).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(body == bytes[..], "{path}: downloaded bytes differ");
    }
    assert_eq!(
        publisher.object_key(&run, "manifest.json"),
        format!("exports/daily/acme/{run}/manifest.json")
    );
}

#[tokio::test]
async fn publishing_a_missing_output_fails() {
    let server = S3Server::start();
    let run = run_id("acme", 1);
    let (artifacts, _dir) = stored_run(&run, &[("manifest.json", b"{}".to_vec())]).await;
    let publisher = object_publisher(&server, "");
    let err = publisher
        .publish_run(&artifacts, &run, &["manifest.json", "missing.json"])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ObjectError::Artifact(export_artifacts::ArtifactError::NotFound { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn presigned_urls_are_identical_within_a_link_window() {
    // Signing needs no server: the settings are enough.
    let settings = export_artifacts::S3Settings {
        endpoint: Some("https://s3.example.internal".to_owned()),
        region: "eu-west-1".to_owned(),
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: export_core::Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        allow_http: false,
    };
    let publisher = ObjectPublisher::new(&settings, "exports", "daily").unwrap();
    // Another replica, built from the same settings, signs the same bytes.
    let replica = ObjectPublisher::new(&settings, "exports", "daily").unwrap();
    let run = run_id("acme", 3);
    let expires_at = at("2025-12-06T16:10:00Z");

    let first = publisher.presign_get(&run, "manifest.json", at("2025-12-06T10:05:00Z"), expires_at);
    for now in [
        "2025-12-06T10:05:01Z",
        "2025-12-06T10:07:30Z",
        "2025-12-06T10:09:59Z",
    ] {
        assert_eq!(
            publisher.presign_get(&run, "manifest.json", at(now), expires_at),
            first,
            "{now}"
        );
        assert_eq!(
            replica.presign_get(&run, "manifest.json", at(now), expires_at),
            first
        );
    }
    assert_eq!(param(&first, "X-Amz-Date"), "20251206T100500Z");
    assert_eq!(param(&first, "X-Amz-Expires"), (6 * 3600 + 5 * 60).to_string());

    let next_window = publisher.presign_get(&run, "manifest.json", at("2025-12-06T10:10:00Z"), expires_at);
    assert_ne!(next_window, first);
    assert_eq!(param(&next_window, "X-Amz-Date"), "20251206T101000Z");
    assert_eq!(param(&next_window, "X-Amz-Expires"), (6 * 3600).to_string());

    // The link names its key, and nothing else.
    assert!(first.starts_with(
        "https://s3.example.internal/exports/daily/acme/export-run%3A%3Aacme%3A%3A2025-12-06%3A%3A0003/manifest.json?"
    ));
    assert!(!first.contains("wJalrXUtnFEMI"), "{first}");
}

#[tokio::test]
async fn expired_presigned_urls_are_refused_by_the_server() {
    let server = S3Server::start();
    let run = run_id("acme", 3);
    let publisher = published(&server, &run).await;
    // Signed an hour ago for ten minutes: expired 50 minutes ago.
    let signed = Utc::now() - TimeDelta::hours(1);
    let url = publisher.presign_get(&run, "manifest.json", signed, signed + TimeDelta::minutes(10));
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("AccessDenied") && body.contains("expired"),
        "{body}"
    );

    // The same link with a lifetime that covers now works: it is the expiry that failed.
    let fresh = publisher.presign_get(&run, "manifest.json", signed, signed + TimeDelta::hours(2));
    assert_eq!(get(&fresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn presigned_urls_reach_only_their_own_object() {
    let server = S3Server::start();
    let acme = run_id("acme", 3);
    let globex = run_id("globex", 3);
    let publisher = published(&server, &acme).await;
    published(&server, &globex).await;
    let now = Utc::now();
    let expires_at = now + TimeDelta::hours(1);
    let url = publisher.presign_get(&acme, "manifest.json", now, expires_at);
    assert_eq!(get(&url).await.0, StatusCode::OK);

    // The other tenant's object exists, and acme's signature does not open it.
    let globex_url = publisher.presign_get(&globex, "manifest.json", now, expires_at);
    assert_eq!(get(&globex_url).await.0, StatusCode::OK);
    let (base, query) = url.split_once('?').unwrap();
    let other_tenant = format!("{}?{query}", base.replace("acme", "globex"));
    assert!(
        other_tenant.contains("/globex/export-run%3A%3Aglobex%3A%3A"),
        "{other_tenant}"
    );
    let other_output = format!("{}?{query}", base.replace("manifest.json", "checksums.txt"));

    let tampered_signature = with_param(&url, "X-Amz-Signature", |signature| {
        let flipped = if signature.ends_with('0') { '1' } else { '0' };
        format!("{}{flipped}", &signature[..signature.len() - 1])
    });
    let longer_life = with_param(&url, "X-Amz-Expires", |_| "604800".to_owned());
    for (what, tampered) in [
        ("another tenant's key", other_tenant),
        ("another output", other_output),
        ("a tampered signature", tampered_signature),
        ("a longer lifetime", longer_life),
    ] {
        let (status, body) = get(&tampered).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("SignatureDoesNotMatch"), "{what}: {body}");
    }
}

#[tokio::test]
async fn lifetimes_over_seven_days_are_clamped() {
    let server = S3Server::start();
    let run = run_id("acme", 3);
    let publisher = published(&server, &run).await;
    let now = Utc::now();
    let url = publisher.presign_get(&run, "manifest.json", now, now + TimeDelta::days(30));
    assert_eq!(param(&url, "X-Amz-Expires"), "604800");
    let expiry = presigned_link_expiry(now, now + TimeDelta::days(30));
    assert!(expiry <= now + TimeDelta::days(7) && expiry > now + TimeDelta::days(7) - TimeDelta::minutes(5));
    assert_eq!(get(&url).await.0, StatusCode::OK);
}

#[tokio::test]
async fn check_needs_the_bucket_and_the_credentials() {
    let server = S3Server::start();
    object_publisher(&server, "exports").check().await.unwrap();

    let missing = ObjectPublisher::new(&server.settings(), "no-such-bucket", "").unwrap();
    let err = missing.check().await.unwrap_err();
    assert!(matches!(err, ObjectError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "object storage bucket `no-such-bucket` is not reachable"
    );

    let settings = export_artifacts::S3Settings {
        secret_access_key: export_core::Secret::new("not-the-secret"),
        ..server.settings()
    };
    let wrong_secret = ObjectPublisher::new(&settings, S3Server::BUCKET, "").unwrap();
    assert!(wrong_secret.check().await.is_err());
}

#[tokio::test]
async fn check_fails_when_the_server_is_down() {
    let mut server = S3Server::start();
    let publisher = object_publisher(&server, "exports");
    publisher.check().await.unwrap();
    server.kill();
    let err = publisher.check().await.unwrap_err();
    assert!(matches!(err, ObjectError::Unreachable { .. }), "{err:?}");
}

/// The `host:port` of the S3 server's endpoint.
fn authority(server: &S3Server) -> String {
    let endpoint = server.settings().endpoint.unwrap();
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
async fn publishing_through_the_egress_proxy_reaches_an_allowlisted_endpoint_only() {
    let server = S3Server::start();
    let run = run_id("acme", 7);
    let outputs = outputs();
    let (artifacts, _dir) = stored_run(&run, &outputs).await;
    let paths: Vec<&str> = outputs.iter().map(|(path, _)| *path).collect();

    let allowed = EgressProxy::start(EgressPolicy {
        sealed: false,
        allow: vec![authority(&server)],
    })
    .await
    .unwrap();
    let publisher =
        ObjectPublisher::new_through(&server.settings(), S3Server::BUCKET, "daily", &allowed).unwrap();
    let result = publisher.publish_run(&artifacts, &run, &paths).await;
    if let Err(err) = &result {
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            chain = format!("{chain}: {cause}");
            source = cause.source();
        }
        panic!("{chain}");
    }
    publisher.check().await.unwrap();

    let refused = EgressProxy::start(EgressPolicy::default()).await.unwrap();
    let publisher =
        ObjectPublisher::new_through(&server.settings(), S3Server::BUCKET, "daily", &refused).unwrap();
    let err = publisher.publish_run(&artifacts, &run, &paths).await.unwrap_err();
    assert!(
        matches!(err, ObjectError::EgressBlocked(EgressRefusal::Internal { .. })),
        "{err}"
    );
}
