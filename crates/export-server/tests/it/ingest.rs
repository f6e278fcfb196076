//! Ingestion through the real `export-center ingest` command and the store.

use std::process::Command;

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
        stdout.contains("1 new") && stdout.contains("2 rejected") && stdout.contains("1 skipped"),
        "{stdout}"
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
