//! `exportctl profiles` shows a schedule and its next fire; `runs list --trigger` filters
//! runs by what made them and the table names it.

use crate::support::{Server, ServerOptions};

#[test]
fn profiles_show_the_next_fire_and_runs_list_filters_by_trigger() {
    let server = Server::start_with(ServerOptions {
        config: Some(
            r#"
[tenants.tenant-default.profiles.nightly]
targets = ["advisory"]
formats = ["ndjson"]
schedule = { cron = "30 2 * * *", timezone = "Europe/Berlin", request = { retentionDays = 7 } }
"#
            .to_owned(),
        ),
        ..ServerOptions::default()
    });
    let profiles = server.run(&["profiles", "--json"]);
    profiles.success();
    let schedule = &profiles.json()["items"][0]["schedule"];
    assert_eq!(schedule["cron"], "30 2 * * *", "{profiles}");
    assert_eq!(schedule["request"]["retentionDays"], 7, "{profiles}");
    let next = schedule["nextFireAt"].as_str().expect("nextFireAt");
    // 02:30 in Berlin is 00:30 or 01:30 UTC, depending on the season.
    assert!(next.ends_with(":30:00Z"), "{profiles}");
    let table = server.run(&["profiles"]);
    table.success();
    assert!(table.stdout.contains("30 2 * * * Europe/Berlin"), "{table}");
    assert!(table.stdout.contains(next), "{table}");

    let created = server.run(&["runs", "create", "--profile", "nightly", "--json"]);
    created.success();
    let run_id = created.json()["runId"].as_str().expect("runId").to_owned();

    let api = server.run(&["runs", "list", "--trigger", "api"]);
    api.success();
    let mut lines = api.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header.last(), Some(&"TRIGGER"), "{api}");
    let row = lines.next().expect("the API run");
    assert!(row.starts_with(&run_id) && row.ends_with("api"), "{api}");

    let scheduled = server.run(&["runs", "list", "--trigger", "schedule", "--json"]);
    scheduled.success();
    assert_eq!(scheduled.json()["items"], serde_json::json!([]), "{scheduled}");

    let refused = server.run(&["runs", "list", "--trigger", "cron"]);
    assert_ne!(refused.code, 0, "{refused}");
}
