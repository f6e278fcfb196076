//! Ingestion through the real `export-center ingest` command and the store.

use std::path::Path;
use std::process::{Command, Output};

use export_api_types::RunStatusResponse;
use export_store_postgres::testing::{fresh_schema, url_for};

use crate::helpers::{fixtures, shared_data, TestApp};

#[tokio::test]
async fn all_of_the_shared_evidence_ingests_with_the_expected_counts() {
    let app = TestApp::spawn().await;
    let data = shared_data();
    for (source, dir, expected) in [
        ("osv-go", data.join("osv-go"), 4291),
        ("csaf", data.join("csaf"), 6 + 13),
        ("openvex", data.join("openvex"), 3),
    ] {
        let report = app.ingest("acme", source, &[dir]).await;
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        assert_eq!(report.inserted, expected, "{source}");
    }
    // Identical re-ingestion changes nothing.
    let again = app.ingest("acme", "osv-go", &[data.join("osv-go")]).await;
    assert_eq!((again.inserted, again.replaced, again.unchanged), (0, 0, 4291));

    let acme = app.tenant("acme");
    let queued = acme
        .create_run(serde_json::json!({ "profileId": acme.profile_id("daily") }))
        .await;
    let status = acme.run(&queued.run_id).await;
    assert_eq!(status.progress.items_total, 4291 + 6 + 13 + 3);
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_export-center"))
}

#[test]
fn the_ingest_command_reports_each_rejected_file_and_loads_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let input = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("osv-go/GO-2020-0001.json"),
        input.path().join("good.json"),
    )
    .unwrap();
    std::fs::write(input.path().join("broken.json"), "{\"id\": ").unwrap();
    std::fs::write(
        input.path().join("no-id.json"),
        r#"{"document": {"csaf_version": "2.0", "category": "csaf_vex", "tracking": {}}}"#,
    )
    .unwrap();
    std::fs::write(input.path().join("README.txt"), "not evidence").unwrap();

    let output = binary()
        .args(["ingest", "--tenant", "acme", "--source", "mixed"])
        .arg(input.path())
        .env("EXPORT_CENTER_SERVER__DATA_DIR", data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a rejected file makes the command fail");
    assert!(
        stderr.contains("broken.json") && stderr.contains("invalid JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no-id.json") && stderr.contains("/document/tracking/id"),
        "{stderr}"
    );
    assert!(
        stdout.contains("1 new, 0 replaced, 0 unchanged, 2 rejected, 1 skipped"),
        "without --sync, nothing is removed or counted as such: {stdout}"
    );

    // Running it again on the good file alone succeeds and changes nothing.
    let again = binary()
        .args(["ingest", "--tenant", "acme", "--source", "mixed"])
        .arg(input.path().join("good.json"))
        .env("EXPORT_CENTER_SERVER__DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 new, 0 replaced, 1 unchanged"));
}

/// Whether the advisory data files of a finished run hold `id`.
async fn advisories_hold(app: &TestApp, status: &RunStatusResponse, id: &str) -> bool {
    assert_eq!(status.status, "succeeded", "{status:?}");
    let mut found = false;
    for output in status.outputs.iter().filter(|output| output.kind == "advisory") {
        let bytes = app.get(&output.url).await.bytes().await.unwrap();
        found |= String::from_utf8_lossy(&bytes).contains(id);
    }
    found
}

/// `export-center ingest --sync`, run beside a server on the same database: a rejected
/// file makes it remove nothing (and fail); a complete read removes the source's
/// documents the files lack from the runs planned afterwards, but not from a run
/// planned before, nor from another source or tenant; a removed document ingested again
/// is back.
async fn ingest_sync_removes_what_the_files_lack(database_url: Option<String>) {
    let app = TestApp::spawn_with(|config| config.database.url = database_url.clone()).await;
    let ingest = |args: &[&str], paths: &[&Path]| -> Output {
        let mut command = binary();
        command
            .args(["ingest", "--tenant"])
            .args(args)
            .args(paths)
            .env("EXPORT_CENTER_SERVER__DATA_DIR", &app.data_dir);
        if let Some(url) = &database_url {
            command.env("EXPORT_CENTER_DATABASE__URL", url);
        }
        command.output().unwrap()
    };
    let input = tempfile::tempdir().unwrap();
    let (all, kept) = (input.path().join("all"), input.path().join("kept"));
    for (dir, ids) in [
        (&all, &["GO-2020-0001", "GO-2020-0025", "GO-2020-0050"][..]),
        (&kept, &["GO-2020-0001", "GO-2020-0025"][..]),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        for id in ids {
            std::fs::copy(
                fixtures().join(format!("osv-go/{id}.json")),
                dir.join(format!("{id}.json")),
            )
            .unwrap();
        }
    }
    for args in [
        ["acme", "--source", "osv-go"],
        ["acme", "--source", "osv-mirror"],
        ["globex", "--source", "osv-go"],
    ] {
        let output = ingest(&args, &[&all]);
        assert!(output.status.success(), "{output:?}");
    }
    let (acme, globex) = (app.tenant("acme"), app.tenant("globex"));

    std::fs::write(kept.join("broken.json"), "{\"id\": ").unwrap();
    let sync = ["acme", "--source", "osv-go", "--sync"];
    let rejected = ingest(&sync, &[&kept]);
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    let stdout = String::from_utf8_lossy(&rejected.stdout);
    assert_eq!(rejected.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("broken.json") && stderr.contains("--sync removed nothing from acme/osv-go"),
        "{stderr}"
    );
    assert!(stdout.contains("2 unchanged, 0 removed, 1 rejected"), "{stdout}");
    // Planned now, executed only after the next sync.
    let before = acme
        .create_run(serde_json::json!({ "profileId": acme.profile_id("daily") }))
        .await;
    assert_eq!(
        acme.run(&before.run_id).await.progress.items_total,
        6,
        "a sync with a rejected file removes nothing"
    );

    std::fs::remove_file(kept.join("broken.json")).unwrap();
    let synced = ingest(&sync, &[&kept]);
    let stdout = String::from_utf8_lossy(&synced.stdout);
    assert!(synced.status.success(), "{synced:?}");
    assert!(
        stdout.contains("ingested into acme/osv-go: 0 new, 0 replaced, 2 unchanged, 1 removed, 0 rejected"),
        "{stdout}"
    );

    let after = acme.export("daily", serde_json::json!({})).await;
    assert_eq!(
        after.progress.items_total, 5,
        "osv-go's GO-2020-0050 is gone, osv-mirror's stays"
    );
    let before = acme.run(&before.run_id).await;
    assert_eq!(
        before.progress.items_total, 6,
        "a run planned before the sync, executed after it, keeps it"
    );
    assert!(advisories_hold(&app, &before, "GO-2020-0050").await);
    let osv_go = acme.export("osv-only", serde_json::json!({})).await;
    assert_eq!(osv_go.progress.items_total, 2);
    assert!(!advisories_hold(&app, &osv_go, "GO-2020-0050").await);
    assert!(advisories_hold(&app, &osv_go, "GO-2020-0025").await);
    let theirs = globex.export("daily", serde_json::json!({})).await;
    assert_eq!(theirs.progress.items_total, 3, "another tenant's documents stay");
    assert!(advisories_hold(&app, &theirs, "GO-2020-0050").await);

    let again = ingest(&sync, &[&all]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("1 new, 0 replaced, 2 unchanged, 0 removed"));
    let back = acme.export("osv-only", serde_json::json!({})).await;
    assert_eq!(back.progress.items_total, 3);
    assert!(advisories_hold(&app, &back, "GO-2020-0050").await);
}

#[tokio::test]
async fn ingest_sync_removes_what_the_files_lack_on_sqlite() {
    ingest_sync_removes_what_the_files_lack(None).await;
}

#[tokio::test]
async fn ingest_sync_removes_what_the_files_lack_on_postgres() {
    ingest_sync_removes_what_the_files_lack(Some(url_for(&fresh_schema().await))).await;
}

#[test]
fn bad_arguments_and_configuration_name_the_culprit() {
    let output = binary()
        .args(["ingest", "--tenant", "Bad Tenant", "--source", "s", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tenant"));
    let output = binary()
        .args(["ingest", "--tenant", "acme", "--source", "s", "x"])
        .env("EXPORT_CENTER_LIMITS__MAX_TARGETS", "lots")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("limits.max_targets"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_demo_runs_the_whole_flow_and_verifies_it() {
    let data = tempfile::tempdir().unwrap();
    let output = binary()
        .arg("demo")
        .arg("--data-dir")
        .arg(data.path())
        .arg("--fixtures")
        .arg(fixtures())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("4. run succeeded: 39 items, 100%"), "{stdout}");
    assert!(stdout.contains("ok    signature"), "{stdout}");
    assert!(stdout.lines().any(|line| line.trim() == "verified"), "{stdout}");
}
