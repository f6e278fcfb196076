//! Mirror bundles for a sealed site through `exportctl` (SPEC §15): `runs create --mirror
//! full|delta [--base RUN_ID]`, the download of a mirror run (its bundle, `mirror.json` and
//! a delta's `tombstones.ndjson`) verified with the key, and the refusals of a base.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::{free_port, offline_token, workspace_root, Server, ServerOptions, TENANT};

const PROFILE: &str = r#"
[tenants.tenant-default.profiles.mirror]
targets = ["advisory"]
signing = { enabled = true, keys = ["kms://tenant-default/signer"] }
mirror = { mode = "delta", valid_days = 10 }
"#;

/// The fixture `osv-go` feed with `changed`'s summary rewritten and `removed` left out.
fn changed_feed(dir: &Path, changed: &str, removed: &str) -> PathBuf {
    let out = dir.join("osv-go-today");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("fixtures/evidence/osv-go")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == format!("{removed}.json") {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if name == format!("{changed}.json") {
            let mut document: Value = serde_json::from_slice(&bytes).unwrap();
            document["summary"] = Value::from("Summary rewritten by the feed");
            bytes = serde_json::to_vec(&document).unwrap();
        }
        std::fs::write(out.join(&name), bytes).unwrap();
    }
    out
}

/// `runs create --profile mirror <args> --follow --json`, which must succeed: the run id.
#[track_caller]
fn create_followed(server: &Server, args: &[&str]) -> String {
    let mut command = vec!["runs", "create", "--profile", "mirror"];
    command.extend_from_slice(args);
    command.extend_from_slice(&["--follow", "--json"]);
    let created = server.run(&command);
    created.success();
    let lines = created.json_lines();
    assert_eq!(lines.last().unwrap()["event"], "completed", "{created}");
    created.run_id()
}

/// `runs download <run> --out <dir> --verify --key <signer>`, which must verify: the names
/// of the files written.
#[track_caller]
fn download_verified(server: &Server, run_id: &str, dir: &Path) -> Vec<String> {
    let key = server.signing_keyring().join("signer.pub.pem");
    let downloaded = server.run(&[
        "runs",
        "download",
        run_id,
        "--out",
        dir.to_str().unwrap(),
        "--verify",
        "--key",
        key.to_str().unwrap(),
        "--json",
    ]);
    downloaded.success();
    let body = downloaded.json();
    assert_eq!(body["verification"]["exitCode"], 0, "{downloaded}");
    let mut files: Vec<String> = body["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| file["path"].as_str().unwrap().to_owned())
        .collect();
    files.sort();
    files
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sha256(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

#[test]
fn mirror_runs_are_created_full_then_delta_and_download_verified() {
    let server = Server::start_with(ServerOptions {
        config: Some(PROFILE.to_owned()),
        signing_key: true,
        ..ServerOptions::default()
    });

    // The profile list shows the profile's mirror mode.
    let profiles = server.run(&["profiles"]);
    profiles.success();
    let row: Vec<&str> = profiles
        .stdout
        .lines()
        .find(|line| line.starts_with("export-profile::tenant-default::mirror "))
        .unwrap_or_else(|| panic!("no mirror profile: {profiles}"))
        .split_whitespace()
        .collect();
    // ID, REVISION, TARGETS, FORMATS, MIRROR, …
    assert_eq!(row.get(4), Some(&"delta"), "{profiles}");

    // A full bundle, though the profile's mode is delta.
    let full_id = create_followed(&server, &["--mirror", "full"]);
    let full = server.data_dir().join("full");
    let files = download_verified(&server, &full_id, &full);
    for name in [
        "bundle.tar.zst",
        "mirror.json",
        "manifest.dsse.json",
        "advisory.ndjson",
    ] {
        assert!(files.iter().any(|file| file == name), "{name}: {files:?}");
    }
    assert!(!files.iter().any(|file| file == "tombstones.ndjson"), "{files:?}");
    let full_mirror = read_json(&full.join("mirror.json"));
    assert_eq!(full_mirror["mode"], "full");
    assert_eq!(full_mirror["tenant"], TENANT);
    assert!(full_mirror.get("base").is_none(), "{full_mirror}");
    let status = server.run(&["runs", "get", &full_id, "--json"]).json();
    let kinds: Vec<&str> = status["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| output["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"mirror") && kinds.contains(&"bundle"),
        "{kinds:?}"
    );

    // The feed changes: one advisory rewritten, one withdrawn.
    let feed = changed_feed(server.data_dir(), "GO-2020-0025", "GO-2020-0050");
    let ingested = server
        .command("ingest")
        .args(["--sync", "--tenant", TENANT, "--source", "osv-go"])
        .arg(&feed)
        .output()
        .expect("running export-center ingest");
    assert!(
        ingested.status.success(),
        "ingest --sync failed: {}",
        String::from_utf8_lossy(&ingested.stderr)
    );

    // A delta from the full run, naming it.
    let delta_id = create_followed(&server, &["--mirror", "delta", "--base", &full_id]);
    let delta = server.data_dir().join("delta");
    let files = download_verified(&server, &delta_id, &delta);
    for name in [
        "bundle.tar.zst",
        "mirror.json",
        "tombstones.ndjson",
        "advisory.ndjson",
    ] {
        assert!(files.iter().any(|file| file == name), "{name}: {files:?}");
    }
    let delta_mirror = read_json(&delta.join("mirror.json"));
    assert_eq!(delta_mirror["mode"], "delta");
    assert_eq!(
        delta_mirror["base"],
        serde_json::json!({
            "watermark": full_mirror["watermark"],
            "manifestDigest": sha256(&full.join("manifest.json")),
        })
    );
    let advisories = std::fs::read_to_string(delta.join("advisory.ndjson")).unwrap();
    let ids: Vec<String> = advisories
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["GO-2020-0025"], "only what changed");
    assert_eq!(
        std::fs::read_to_string(delta.join("tombstones.ndjson")).unwrap(),
        "{\"id\":\"GO-2020-0050\",\"kind\":\"advisory\",\"source\":\"osv-go\"}\n"
    );

    // A base that is no run of the tenant: the server's refusal, naming the field.
    let refused = server.run(&[
        "runs",
        "create",
        "--profile",
        "mirror",
        "--mirror",
        "delta",
        "--base",
        "export-run::tenant-default::2020-01-01::0001",
    ]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.starts_with("error: ERR_EXPORT_BASE_MISSING: "),
        "{refused}"
    );
    assert!(refused.stderr.contains("mirror.baseRunId"), "{refused}");
}

#[test]
fn a_base_without_a_delta_is_refused_before_any_request() {
    // Nothing listens: a request would exit 4 (unreachable), a usage error exits 1.
    let dir = tempfile::tempdir().unwrap();
    let token = offline_token(dir.path());
    let server = format!("http://127.0.0.1:{}", free_port());
    for mirror in [&["--mirror", "full"][..], &[]] {
        let mut command = Command::new(crate::support::exportctl_binary());
        command
            .args(["--server", &server, "--tenant", TENANT, "--token-file"])
            .arg(&token)
            .args(["runs", "create", "--profile", "mirror"])
            .args(mirror)
            .args(["--base", "export-run::tenant-default::2025-01-01::0001"]);
        let refused = crate::support::run(command);
        assert_eq!(refused.code, 1, "{mirror:?}: {refused}");
        assert!(refused.stderr.contains("`--base`"), "{refused}");
        assert!(refused.stderr.contains("`--mirror delta`"), "{refused}");
    }
}
