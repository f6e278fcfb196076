//! What only the S3 backend can show, against a real `s3s-fs`: where objects land in the
//! bucket, multipart uploads completed only by `finish` and aborted by `abort`, the
//! settings as the configuration spells them, and `s3://` urls.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use export_artifacts::testing::{key, pseudo_random_bytes, run_id, S3Server};
use export_artifacts::{ArtifactError, ArtifactStore, S3Location, S3Settings};

const NINE_MIB: usize = 9 * 1024 * 1024;

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The multipart parts `s3s-fs` holds beside its buckets.
fn parts_on_server(server: &S3Server) -> Vec<String> {
    files_under(server.data_dir())
        .into_iter()
        .filter(|file| file.starts_with(".upload_id-"))
        .collect()
}

/// Waits until the server has stored at least one part (uploads run in the background).
async fn wait_for_a_part(server: &S3Server) {
    for _ in 0..500 {
        if !parts_on_server(server).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no multipart part reached the server");
}

#[tokio::test]
async fn s3_urls_store_under_the_bucket_and_prefix() {
    let server = S3Server::start();
    let bucket_dir = server.data_dir().join(S3Server::BUCKET);
    for (url, stored) in [
        (
            format!("s3://{}/exports/eu", S3Server::BUCKET),
            "exports/eu/runs/acme/2025-12-06/0001/manifest.json",
        ),
        (
            format!("s3://{}", S3Server::BUCKET),
            "runs/acme/2025-12-06/0001/manifest.json",
        ),
    ] {
        let store = ArtifactStore::from_url_with_s3(&url, Some(&server.settings())).unwrap();
        let key = key(&run_id("acme", 1), "manifest.json");
        store.put(&key, Bytes::from_static(b"{}")).await.unwrap();
        assert!(files_under(&bucket_dir).contains(&stored.to_owned()), "{url}");
        assert_eq!(store.read_all(&key).await.unwrap(), "{}");
    }
}

#[tokio::test]
async fn a_large_write_is_a_multipart_upload_completed_only_by_finish() {
    let server = S3Server::start();
    let store = server.artifact_store("artifacts");
    let bucket_dir = server.data_dir().join(S3Server::BUCKET);
    let key = key(&run_id("acme", 1), "bundle.tar.zst");
    let data = pseudo_random_bytes(1, NINE_MIB);
    let mut writer = store.writer(&key).await.unwrap();
    writer.write(&data).await.unwrap();

    // The first part is on the server, outside the bucket, and no object exists yet.
    wait_for_a_part(&server).await;
    assert_eq!(files_under(&bucket_dir), Vec::<String>::new());
    assert_eq!(store.size(&key).await.unwrap(), None);

    writer.finish().await.unwrap();
    assert_eq!(parts_on_server(&server), Vec::<String>::new());
    assert_eq!(
        files_under(&bucket_dir),
        ["artifacts/runs/acme/2025-12-06/0001/bundle.tar.zst"]
    );
    assert_eq!(store.read_all(&key).await.unwrap(), data);
}

#[tokio::test]
async fn abort_aborts_the_multipart_upload() {
    let server = S3Server::start();
    let store = server.artifact_store("artifacts");
    let mut writer = store
        .writer(&key(&run_id("acme", 1), "bundle.tar.zst"))
        .await
        .unwrap();
    writer.write(&pseudo_random_bytes(2, NINE_MIB)).await.unwrap();
    wait_for_a_part(&server).await;

    writer.abort().await.unwrap();
    assert_eq!(parts_on_server(&server), Vec::<String>::new());
    assert_eq!(
        files_under(&server.data_dir().join(S3Server::BUCKET)),
        Vec::<String>::new()
    );
}

/// (A missing bucket would not show it: `s3s-fs` creates the bucket on the first
/// `PutObject`, where S3 answers `NoSuchBucket`.)
#[tokio::test]
async fn wrong_credentials_are_refused() {
    let server = S3Server::start();
    let settings = S3Settings {
        secret_access_key: export_core::Secret::new("not-the-secret"),
        ..server.settings()
    };
    let location = S3Location::new(S3Server::BUCKET, "").unwrap();
    let store = ArtifactStore::s3(&settings, &location).unwrap();
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, ArtifactError::Backend(_)), "{err:?}");
}

#[test]
fn settings_read_as_the_configuration_spells_them() {
    let settings: S3Settings = toml::from_str(
        r#"
        endpoint = "https://s3.example.internal"
        access_key_id = "AKID"
        secret_access_key = "hunter2"
        "#,
    )
    .unwrap();
    assert_eq!(
        settings,
        S3Settings {
            endpoint: Some("https://s3.example.internal".to_owned()),
            region: "us-east-1".to_owned(),
            access_key_id: "AKID".to_owned(),
            secret_access_key: export_core::Secret::new("hunter2"),
            allow_http: false,
        }
    );
    settings.validate().unwrap();

    let unknown = toml::from_str::<S3Settings>(
        r#"
        access_key_id = "AKID"
        secret_access_key = "hunter2"
        bucket = "exports"
        "#,
    )
    .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown field `bucket`"),
        "{unknown}"
    );
}

#[test]
fn s3_urls_need_settings() {
    let err = ArtifactStore::from_url("s3://exports/prefix").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid artifact store url `s3://exports/prefix`: an `s3` url needs S3 settings (endpoint, region, credentials)"
    );
}

#[test]
fn invalid_settings_are_refused_before_any_request() {
    let settings = S3Settings {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        region: "us-east-1".to_owned(),
        access_key_id: "AKID".to_owned(),
        secret_access_key: export_core::Secret::new("hunter2"),
        allow_http: false,
    };
    let err = ArtifactStore::from_url_with_s3("s3://exports", Some(&settings)).unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidS3Settings { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn check_writable_fails_when_the_server_is_down() {
    let mut server = S3Server::start();
    let store = server.artifact_store("artifacts");
    store.check_writable().await.unwrap();
    server.kill();
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, ArtifactError::Backend(_)), "{err:?}");
}
