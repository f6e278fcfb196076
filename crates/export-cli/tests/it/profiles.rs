//! `exportctl profiles …` against a real server (SPEC §16): a profile created from a TOML
//! file, changed from a JSON file into a second revision, run, archived; the profiles of
//! the configuration file stay read-only.

use crate::support::Server;

#[test]
fn a_profile_is_created_revised_run_and_archived_with_exportctl() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("nightly.toml");
    std::fs::write(
        &first,
        "targets = [\"advisory\"]\nformats = [\"ndjson\"]\nretention = { default_days = 3, max_days = 30 }\n\
         schedule = { cron = \"0 2 * * *\", timezone = \"Europe/Berlin\", request = { priority = \"low\" } }\n",
    )
    .unwrap();
    let created = server.run(&[
        "profiles",
        "create",
        "nightly",
        "--file",
        first.to_str().unwrap(),
        "--json",
    ]);
    let created = created.success().json();
    assert_eq!(created["id"], "export-profile::tenant-default::nightly");
    assert_eq!(
        (created["version"].as_u64(), created["source"].as_str()),
        (Some(1), Some("api"))
    );

    let second = dir.path().join("nightly.json");
    std::fs::write(
        &second,
        r#"{"targets": ["advisory"], "formats": ["json", "ndjson"], "retention": {"default_days": 7, "max_days": 30}}"#,
    )
    .unwrap();
    let updated = server.run(&[
        "profiles",
        "update",
        "nightly",
        "--file",
        second.to_str().unwrap(),
        "--json",
    ]);
    let updated = updated.success().json();
    assert_eq!(updated["version"], 2);
    assert_ne!(updated["revision"], created["revision"]);

    let revisions = server.run(&["profiles", "revisions", "nightly"]);
    let table = &revisions.success().stdout;
    assert!(table.starts_with("VERSION"), "{table}");
    for revision in [&created["revision"], &updated["revision"]] {
        assert!(table.contains(revision.as_str().unwrap()), "{table}");
    }
    let shown = server.run(&["profiles", "show", "nightly"]);
    assert!(shown.success().stdout.contains("SOURCE"), "{shown}");

    let run = server.run(&["runs", "create", "--profile", "nightly", "--follow", "--json"]);
    let lines = run.success().json_lines();
    assert_eq!(lines.last().unwrap()["event"], "completed", "{run}");

    server.run(&["profiles", "delete", "nightly"]).success();
    let refused = server.run(&["runs", "create", "--profile", "nightly"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("archived"), "{refused}");
    let listed = server.run(&["profiles"]);
    assert!(!listed.success().stdout.contains("::nightly"), "{listed}");

    // The configuration file's profile is read-only.
    let read_only = server.run(&[
        "profiles",
        "update",
        "default",
        "--file",
        second.to_str().unwrap(),
    ]);
    assert_eq!(read_only.code, 1, "{read_only}");
    assert!(read_only.stderr.contains("configuration file"), "{read_only}");
}
