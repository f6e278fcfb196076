//! Files at rest (issue 12, point 9): whatever the umask, everything the service keeps is
//! owner-only, and a URL-signing key that cannot be read stops the start instead of being
//! replaced.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use export_server::{App, Config};
use reqwest::Method;
use serde_json::json;

use crate::helpers::fixtures;
use crate::processes::{call, client, command, start, wait_for};

/// `command`, run by `sh` after `umask 000`: only the service itself can then make its
/// files owner-only.
fn under_umask_000(command: Command) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(r#"umask 000 && exec "$0" "$@""#)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(name, value),
            None => shell.env_remove(name),
        };
    }
    shell
}

#[tokio::test]
async fn everything_the_service_keeps_is_owner_only_under_umask_000() {
    let temp = tempfile::tempdir().unwrap();
    // Missing: the service creates it.
    let data = temp.path().join("data");
    let ingested = under_umask_000(command(&data))
        .args(["ingest", "--tenant", "tenant-default", "--source", "osv-go"])
        .arg(fixtures().join("osv-go"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ingested.success());
    let server = start(under_umask_000(command(&data)), &[]).await;
    let api = client(under_umask_000(command(&data)));
    let accepted = call(
        &api,
        Method::POST,
        &format!("{}/export-center/runs", server.base()),
        Some(json!({ "profileId": "export-profile::tenant-default::default" })),
    )
    .await;
    let status_url = format!(
        "{}{}",
        server.base(),
        accepted["links"]["status"].as_str().unwrap()
    );
    let done = wait_for(&api, &status_url, |s| {
        s["status"] != "queued" && s["status"] != "running"
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // Walked while the server runs, so that the database's `-wal` and `-shm` are there.
    let mut too_open = Vec::new();
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&data) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let relative = entry.path().strip_prefix(&data).unwrap().display().to_string();
        let wanted = if entry.file_type().is_dir() { 0o700 } else { 0o600 };
        if mode != wanted {
            too_open.push(format!("{relative} is {mode:o}"));
        }
        if entry.file_type().is_file() {
            files.push(relative);
        }
    }
    for expected in [
        "export-center.db",
        "export-center.db-wal",
        "export-center.db-shm",
        "url-signing.key",
        "dev-issuer.pem",
    ] {
        assert!(
            files.iter().any(|file| file == expected),
            "{expected} in {files:?}"
        );
    }
    assert!(
        files.iter().any(|file| file.starts_with("artifacts/runs/")),
        "{files:?}"
    );
    assert!(too_open.is_empty(), "not owner-only: {too_open:?}");
}

/// What is at `<data>/url-signing.key` before the start, and how to see it is untouched.
enum Damage {
    Bytes(Vec<u8>),
    Directory,
    LinkToNowhere,
}

impl Damage {
    fn apply(&self, key: &Path) {
        match self {
            Damage::Bytes(bytes) => std::fs::write(key, bytes).unwrap(),
            Damage::Directory => std::fs::create_dir(key).unwrap(),
            Damage::LinkToNowhere => {
                std::os::unix::fs::symlink(key.with_file_name("unmounted/url-signing.key"), key).unwrap()
            }
        }
    }

    fn assert_untouched(&self, key: &Path) {
        match self {
            Damage::Bytes(bytes) => assert_eq!(&std::fs::read(key).unwrap(), bytes),
            Damage::Directory => assert_eq!(std::fs::read_dir(key).unwrap().count(), 0),
            Damage::LinkToNowhere => {
                assert_eq!(
                    std::fs::read_link(key).unwrap(),
                    key.with_file_name("unmounted/url-signing.key")
                );
                assert!(!key.exists());
            }
        }
    }
}

#[tokio::test]
async fn a_url_signing_key_that_cannot_be_read_stops_the_start_and_is_never_replaced() {
    let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let cases = [
        ("not UTF-8", Damage::Bytes(vec![0xff; 44])),
        ("not base64", Damage::Bytes(b"not a key!\n".to_vec())),
        ("too short", Damage::Bytes(format!("{short}\n").into_bytes())),
        ("a directory", Damage::Directory),
        ("a link to nowhere", Damage::LinkToNowhere),
    ];
    for (case, damage) in cases {
        let data = tempfile::tempdir().unwrap();
        let key = data.path().join("url-signing.key");
        damage.apply(&key);
        let Err(err) = App::build(Config::for_data_dir(data.path())).await else {
            panic!("{case}: the service started with a new URL-signing key");
        };
        let message = format!("{err:#}");
        assert!(message.starts_with("url_signing: "), "{case}: {message}");
        assert!(
            message.contains("never replaces an existing key"),
            "{case}: {message}"
        );
        damage.assert_untouched(&key);
        let key_files: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("url-signing"))
            .collect();
        assert_eq!(
            key_files,
            ["url-signing.key"],
            "{case}: nothing written beside it"
        );
    }
}

#[tokio::test]
async fn the_url_signing_key_is_created_once_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let first = App::build(Config::for_data_dir(data.path())).await.unwrap();
    let key = data.path().join("url-signing.key");
    let bytes = std::fs::read(&key).unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(first);
    App::build(Config::for_data_dir(data.path())).await.unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), bytes);
}
