//! Every command of `exportctl` against a real server, and its exit codes.

use std::process::Command;

use crate::support::{free_port, offline_token, registry_config, Server, ServerOptions, TENANT};

#[test]
fn profiles_are_listed_as_json_and_as_a_table() {
    let server = Server::start();
    let run = server.run(&["profiles", "--json"]);
    run.success();
    let profiles = run.json();
    let ids: Vec<&str> = profiles["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(ids.contains(&"export-profile::tenant-default::default"), "{run}");

    let run = server.run(&["profiles"]);
    run.success();
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "REVISION", "TARGETS", "FORMATS", "MIRROR", "SCHEDULE", "NEXT", "FIRE"]
    );
    assert!(
        run.stdout.contains("export-profile::tenant-default::default"),
        "{run}"
    );
}

#[test]
fn a_followed_run_succeeds_and_downloads_verified() {
    let server = Server::start();
    let created = server.run(&["runs", "create", "--profile", "default", "--follow"]);
    created.success();
    let lines: Vec<&str> = created.stdout.lines().collect();
    let run_id = lines[0].to_owned();
    assert!(run_id.starts_with("export-run::tenant-default::"), "{created}");
    assert!(lines.contains(&"started"), "{created}");
    assert_eq!(lines.last(), Some(&"completed"), "{created}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("artifact_ready manifest sha256:")),
        "{created}"
    );

    // get, as JSON and as text
    let got = server.run(&["runs", "get", &run_id, "--json"]);
    got.success();
    let status = got.json();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["runId"], run_id.as_str());
    let text = server.run(&["runs", "get", &run_id]);
    text.success();
    assert!(text.stdout.contains("status:        succeeded"), "{text}");
    assert!(!text.stdout.contains("sig="), "signed URLs are not shown: {text}");

    // list: this run is there, with filters and with --all across pages of one
    server
        .run(&[
            "runs",
            "create",
            "--profile",
            "export-profile::tenant-default::default",
        ])
        .success();
    let listed = server.run(&[
        "runs",
        "list",
        "--json",
        "--status",
        "succeeded",
        "--profile",
        "default",
    ]);
    listed.success();
    let items = listed.json()["items"].as_array().cloned().unwrap_or_default();
    assert!(items.iter().any(|r| r["runId"] == run_id.as_str()), "{listed}");
    assert!(items.iter().all(|r| r["status"] == "succeeded"), "{listed}");
    let paged = server.run(&["runs", "list", "--json", "--limit", "1", "--all"]);
    paged.success();
    let all = paged.json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2), "{paged}");
    assert!(all.get("nextCursor").is_none(), "{paged}");
    let one = server.run(&["runs", "list", "--limit", "1"]);
    one.success();
    assert!(one.stderr.contains("--cursor"), "{one}");

    // download: every output, checked, and checksums.txt agrees
    let out = server.data_dir().join("download");
    let downloaded = server.run(&["runs", "download", &run_id, "--out", out.to_str().unwrap()]);
    downloaded.success();
    for output in status["outputs"].as_array().expect("outputs") {
        let url = output["url"].as_str().unwrap();
        let name = url.split('?').next().unwrap().rsplit('/').next().unwrap();
        let bytes = std::fs::read(out.join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            format!("sha256:{}", sha256_hex(&bytes)),
            output["sha256"].as_str().unwrap(),
            "{name}"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let check = Command::new("sha256sum")
        .args(["-c", "checksums.txt"])
        .current_dir(&out)
        .output()
        .expect("running sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c checksums.txt failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // --only one file, into the default directory (./<run id with :: as _>)
    let mut only = server.exportctl();
    only.current_dir(server.data_dir()).args([
        "runs",
        "download",
        &run_id,
        "--only",
        "manifest.json",
        "--json",
    ]);
    let only = crate::support::run(only);
    only.success();
    let files = only.json()["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 1, "{only}");
    let default_dir = server.data_dir().join(run_id.replace("::", "_"));
    assert!(default_dir.join("manifest.json").is_file(), "{only}");
    let missing = server.run(&["runs", "download", &run_id, "--only", "nope.json"]);
    assert_eq!(missing.code, 1, "{missing}");
    assert!(missing.stderr.contains("no output `nope.json`"), "{missing}");

    // watching a finished run replays it to its end
    let watched = server.run(&["runs", "watch", &run_id]);
    watched.success();
    assert_eq!(watched.stdout.lines().last(), Some("completed"), "{watched}");

    // cancelling a finished run is a conflict
    let cancel = server.run(&["runs", "cancel", &run_id]);
    assert_eq!(cancel.code, 1, "{cancel}");
    assert!(cancel.stderr.contains("error: ERR_EXPORT_CONFLICT: "), "{cancel}");
}

#[test]
fn a_signed_run_downloads_its_manifest_envelope_and_verifies_offline() {
    let server = Server::start_with(ServerOptions {
        config: Some(
            r#"
[tenants.tenant-default.profiles.signed]
targets = ["advisory"]
formats = ["ndjson"]
signing = { enabled = true, keys = ["kms://tenant-default/signer"] }
"#
            .to_owned(),
        ),
        signing_key: true,
        ..ServerOptions::default()
    });
    let created = server.run(&["runs", "create", "--profile", "signed", "--follow", "--json"]);
    created.success();
    let lines = created.json_lines();
    let run_id = created.run_id();
    let completed = lines.last().expect("events");
    assert_eq!(completed["event"], "completed", "{created}");
    assert!(completed["data"]["manifestDsseUrl"].is_string(), "{created}");

    let out = server.data_dir().join("signed");
    let downloaded = server.run(&[
        "runs",
        "download",
        &run_id,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    downloaded.success();
    let files: Vec<String> = downloaded.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|file| file["path"].as_str().map(str::to_owned))
        .collect();
    assert!(files.contains(&"manifest.dsse.json".to_owned()), "{downloaded}");
    let check = Command::new("sha256sum")
        .args(["-c", "checksums.txt"])
        .current_dir(&out)
        .output()
        .expect("running sha256sum");
    let listed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{listed}");
    assert!(listed.contains("manifest.dsse.json: OK"), "{listed}");

    server.assert_verifies(&out);

    // exportctl verifies what it downloads with the same library: signature by the key
    // named, not only digests; another key fails the download with exit code 5.
    let key = server.signing_keyring().join("signer.pub.pem");
    let verified_out = server.data_dir().join("verified");
    let verified = server.run(&[
        "runs",
        "download",
        &run_id,
        "--out",
        verified_out.to_str().unwrap(),
        "--verify",
        "--key",
        key.to_str().unwrap(),
        "--json",
    ]);
    verified.success();
    let verdict = &verified.json()["verification"];
    assert_eq!(verdict["exitCode"], 0, "{verified}");
    let signature = verdict["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == "signature")
        .unwrap_or_else(|| panic!("no signature check: {verified}"));
    assert_eq!(signature["status"], "ok", "{verified}");

    let stranger = server.data_dir().join("stranger");
    let generated = server
        .command("keys")
        .args(["generate", "--name", "stranger", "--out"])
        .arg(&stranger)
        .output()
        .expect("running export-center keys generate");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let refused = server.run(&[
        "runs",
        "download",
        &run_id,
        "--out",
        server.data_dir().join("refused").to_str().unwrap(),
        "--verify",
        "--key",
        stranger.join("stranger.pub.pem").to_str().unwrap(),
    ]);
    assert_eq!(refused.code, 5, "{refused}");
    assert!(refused.stdout.contains("signature"), "{refused}");
    assert!(refused.stdout.contains("FAIL"), "{refused}");

    let no_key = server.run(&["runs", "download", &run_id, "--verify"]);
    assert_eq!(no_key.code, 1, "{no_key}");
    assert!(no_key.stderr.contains("--key"), "{no_key}");
}

#[test]
fn a_cancelled_run_ends_its_watch_with_exit_code_3() {
    // Without workers every run stays queued until it is cancelled.
    let server = Server::start_with(ServerOptions {
        workers: 0,
        ..ServerOptions::default()
    });
    let created = server.run(&["runs", "create", "--profile", "default", "--json"]);
    created.success();
    let accepted = created.json();
    assert_eq!(accepted["status"], "queued");
    let run_id = accepted["runId"].as_str().unwrap().to_owned();

    let download = server.run(&["runs", "download", &run_id]);
    assert_eq!(download.code, 1, "{download}");
    assert!(download.stderr.contains("is queued"), "{download}");

    let cancel = server.run(&["runs", "cancel", &run_id]);
    cancel.success();
    assert_eq!(cancel.stdout.trim(), format!("cancelled {run_id}"));

    let watched = server.run(&["runs", "watch", &run_id, "--json"]);
    assert_eq!(watched.code, 3, "{watched}");
    let last: serde_json::Value = serde_json::from_str(watched.stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}: {watched}"));
    assert_eq!(last["event"], "cancelled", "{watched}");
}

#[test]
fn server_problems_print_their_code_and_detail() {
    let server = Server::start();
    let unknown = "export-run::tenant-default::2025-01-01::0042";
    let got = server.run(&["runs", "get", unknown]);
    assert_eq!(got.code, 1, "{got}");
    assert!(got.stderr.starts_with("error: ERR_EXPORT_NOT_FOUND: "), "{got}");

    let as_json = server.run(&["runs", "get", unknown, "--json"]);
    assert_eq!(as_json.code, 1, "{as_json}");
    assert_eq!(as_json.json()["code"], "ERR_EXPORT_NOT_FOUND", "{as_json}");

    let watched = server.run(&["runs", "watch", unknown]);
    assert_eq!(watched.code, 1, "{watched}");
    assert!(watched.stderr.contains("ERR_EXPORT_NOT_FOUND"), "{watched}");

    let created = server.run(&["runs", "create", "--profile", "no-such-profile"]);
    assert_eq!(created.code, 1, "{created}");
    assert!(
        created
            .stderr
            .starts_with("error: ERR_EXPORT_PROFILE_NOT_FOUND: "),
        "{created}"
    );

    let invalid = server.run(&["runs", "create", "--profile", "default", "--format", "xml"]);
    assert_eq!(invalid.code, 1, "{invalid}");
    assert!(invalid.stderr.contains("ERR_EXPORT_REQUEST_INVALID"), "{invalid}");
    assert!(
        invalid.stderr.contains("formats[0]"),
        "the field is named: {invalid}"
    );

    let other_tenant = server.run(&["--tenant", "someone-else", "profiles"]);
    assert_eq!(other_tenant.code, 1, "{other_tenant}");
    assert!(
        other_tenant.stderr.contains("ERR_TENANT_MISMATCH"),
        "{other_tenant}"
    );
}

#[test]
fn an_unreachable_server_exits_with_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let token = offline_token(dir.path());
    let server = format!("http://127.0.0.1:{}", free_port());
    let exportctl = |args: &[&str]| {
        let mut command = Command::new(crate::support::exportctl_binary());
        command
            .args(["--server", &server, "--tenant", TENANT, "--token-file"])
            .arg(&token)
            .args(args)
            .env("EXPORTCTL_BACKOFF_MS", "10")
            .env("EXPORTCTL_MAX_RETRIES", "2");
        crate::support::run(command)
    };
    let profiles = exportctl(&["profiles"]);
    assert_eq!(profiles.code, 4, "{profiles}");
    assert!(profiles.stderr.contains("unreachable"), "{profiles}");

    let watched = exportctl(&["runs", "watch", "export-run::tenant-default::2025-01-01::0001"]);
    assert_eq!(watched.code, 4, "{watched}");
    assert_eq!(
        watched.stderr.matches("reconnecting in").count(),
        2,
        "two retries, then give up: {watched}"
    );

    let token_text = std::fs::read_to_string(&token).unwrap();
    let access_token: serde_json::Value = serde_json::from_str(&token_text).unwrap();
    let access_token = access_token["accessToken"].as_str().unwrap();
    assert!(!watched.stderr.contains(access_token), "the token never appears");
}

#[test]
fn usage_errors_exit_with_code_1() {
    let exportctl = |args: &[&str]| {
        let mut command = Command::new(crate::support::exportctl_binary());
        command.args(args);
        crate::support::run(command)
    };
    for args in [
        &["runs", "frobnicate"][..],
        &["runs", "create"],
        &["runs", "list", "--limit", "0"],
        &["runs", "create", "--profile", "p", "--priority", "urgent"],
        &[],
    ] {
        let run = exportctl(args);
        assert_eq!(run.code, 1, "{args:?}: {run}");
    }
    let help = exportctl(&["--help"]);
    help.success();
    assert!(help.stdout.contains("Exit codes:"), "{help}");
    assert!(help.stdout.contains("4  the server is unreachable"), "{help}");

    let no_token = exportctl(&["--token-file", "/nonexistent/token.json", "profiles"]);
    assert_eq!(no_token.code, 1, "{no_token}");
    assert!(
        no_token
            .stderr
            .contains("reading token file /nonexistent/token.json"),
        "{no_token}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn an_oci_run_shows_its_distribution_and_pulls_back_into_a_verifiable_directory() {
    let registry = export_oci::testing::RegistryServer::start();
    let server = Server::start_with(ServerOptions {
        config: Some(
            registry_config(&registry.address)
                + r#"
[tenants.tenant-default.profiles.published]
targets = ["advisory"]
formats = ["ndjson"]
distributions = ["oci"]
signing = { enabled = true, keys = ["kms://tenant-default/signer"] }
"#,
        ),
        signing_key: true,
        ..ServerOptions::default()
    });
    let reference = format!("{}/tenant-default/daily", registry.address);
    let created = server.run(&[
        "runs",
        "create",
        "--profile",
        "published",
        "--distribution",
        "oci",
        "--ref",
        &reference,
        "--follow",
        "--json",
    ]);
    created.success();
    let run_id = created.run_id();

    let shown = server.run(&["runs", "distribution", &run_id]);
    shown.success();
    assert!(shown.stdout.contains("status:        published"), "{shown}");
    assert!(
        shown
            .stdout
            .contains(&format!("ref:           {reference}@sha256:")),
        "{shown}"
    );
    let distribution = server.run(&["runs", "distribution", &run_id, "--json"]).json();
    assert_eq!(distribution["type"], "oci");

    let out = server.data_dir().join("pulled");
    let pulled = server.run(&[
        "runs",
        "pull",
        &run_id,
        "--insecure",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    pulled.success();
    let files = pulled.json()["files"].as_array().unwrap().len();
    assert!(files >= 5, "{pulled}");
    server.assert_verifies(&out);

    // An `http` run has nothing to pull.
    let plain = server.run(&["runs", "pull", "export-run::tenant-default::2020-01-01::0001"]);
    assert_eq!(plain.code, 1, "{plain}");
}
