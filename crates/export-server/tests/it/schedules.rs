//! Schedules (SPEC §16): exactly one run per fire across replicas, at most one catch-up
//! run after downtime, refusal of a schedule that cannot run, `?trigger=`, and scheduled
//! runs that export exactly what an API run of the same request does.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Timelike, Utc};
use export_api::{FireOutcome, Scheduler};
use export_api_types::RunList;
use export_core::ProfileDefinition;
use export_server::config::Config;
use export_store_postgres::testing::{fresh_schema, url_for};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, download_all, fixtures, TestApp, TestClock};
use crate::processes::{call, client, command, start};

/// Adds acme's profile `name` with `definition` (TOML) to the configuration.
fn with_profile(config: &mut Config, name: &str, definition: &str) {
    let definition: ProfileDefinition = toml::from_str(definition).unwrap();
    config
        .tenants
        .get_mut("acme")
        .unwrap()
        .profiles
        .insert(name.to_owned(), definition);
}

const EVERY_MINUTE: &str = r#"
targets = ["advisory", "vex", "policy"]
formats = ["json", "ndjson"]
schedule = { cron = "* * * * *", timezone = "Europe/Berlin", request = { targets = ["advisory", "vex"], formats = ["ndjson"], retentionDays = 3 } }
"#;

async fn scheduled_runs(app: &TestApp, query: &str) -> RunList {
    let response = app
        .tenant("acme")
        .get(&format!("/export-center/runs?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn after_downtime_only_the_latest_missed_fire_makes_a_run() {
    let clock = TestClock::starting_at(Utc.with_ymd_and_hms(2026, 3, 29, 0, 58, 30).unwrap());
    let app = TestApp::spawn_at(clock.clone(), |config| {
        with_profile(config, "minutely", EVERY_MINUTE)
    })
    .await;
    let scheduler = Scheduler::new(app.app.state.clone());
    // The first pass only records when the schedule was first seen: no fire before it.
    assert_eq!(scheduler.pass().await, []);
    // Down for five fires (00:59 … 01:03 UTC, across Berlin's spring-forward at 01:00):
    // one catch-up run, for the latest.
    clock.advance(chrono::Duration::seconds(5 * 60));
    let outcomes = scheduler.pass().await;
    let [FireOutcome::Created(run_id)] = outcomes.as_slice() else {
        panic!("one run expected: {outcomes:?}");
    };
    // Nothing more until the next fire, also from another process's scheduler.
    assert_eq!(scheduler.pass().await, []);
    clock.advance(chrono::Duration::seconds(20));
    assert_eq!(Scheduler::new(app.app.state.clone()).pass().await, []);

    let listed = scheduled_runs(&app, "trigger=schedule").await;
    assert_eq!(listed.items.len(), 1);
    let run = &listed.items[0];
    assert_eq!(run.run_id, run_id.to_string());
    assert_eq!(run.trigger.kind, "schedule");
    assert_eq!(run.trigger.at.as_deref(), Some("2026-03-29T01:03:00Z"));

    // The next minute fires once; an API run is listed only without the filter.
    clock.advance(chrono::Duration::seconds(40));
    let outcomes = scheduler.pass().await;
    assert!(
        matches!(outcomes.as_slice(), [FireOutcome::Created(_)]),
        "{outcomes:?}"
    );
    let api_run = app
        .tenant("acme")
        .create_run(json!({ "profileId": app.tenant("acme").profile_id("minutely") }))
        .await;
    let fires: Vec<_> = scheduled_runs(&app, "trigger=schedule")
        .await
        .items
        .into_iter()
        .map(|run| run.trigger.at.unwrap())
        .collect();
    assert_eq!(fires, ["2026-03-29T01:04:00Z", "2026-03-29T01:03:00Z"]);
    let api = scheduled_runs(&app, "trigger=api").await;
    assert_eq!(api.items.len(), 1);
    assert_eq!(api.items[0].run_id, api_run.run_id);
    assert_eq!(api.items[0].trigger.kind, "api");
    assert_eq!(api.items[0].trigger.at, None);
    assert_eq!(scheduled_runs(&app, "").await.items.len(), 3);
    let bad = app
        .tenant("acme")
        .get("/export-center/runs?trigger=cron")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert!(problem.to_string().contains("trigger"), "{problem}");
}

#[tokio::test]
async fn profiles_show_their_schedule_and_next_fire() {
    let clock = TestClock::starting_at(Utc.with_ymd_and_hms(2026, 10, 25, 0, 10, 0).unwrap());
    let daily = r#"
targets = ["advisory"]
schedule = { cron = "30 2 * * *", timezone = "Europe/Berlin" }
"#;
    let app = TestApp::spawn_at(clock.clone(), |config| with_profile(config, "nightly", daily)).await;
    let next = |items: &Value| {
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|profile| profile["name"] == "nightly")
            .unwrap()["schedule"]
            .clone()
    };
    let profiles: Value = app
        .tenant("acme")
        .get("/export-center/profiles")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 02:30 CEST, the first of the two 02:30s of the fall-back night.
    assert_eq!(
        next(&profiles),
        json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin", "request": {}, "nextFireAt": "2026-10-25T00:30:00Z" })
    );
    clock.advance(chrono::Duration::hours(1));
    let profiles: Value = app
        .tenant("acme")
        .get("/export-center/profiles")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Not the second 02:30 (01:30 UTC): the next day's.
    assert_eq!(next(&profiles)["nextFireAt"], "2026-10-26T01:30:00Z");
    // Profiles without a schedule show none.
    let tiny = profiles["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|profile| profile["name"] == "tiny")
        .unwrap();
    assert!(tiny.get("schedule").is_none(), "{tiny}");
}

#[tokio::test]
async fn a_scheduled_run_exports_the_same_bytes_as_an_api_run_of_its_request() {
    let clock = TestClock::starting_at(Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 30).unwrap());
    let app = TestApp::spawn_at(clock.clone(), |config| {
        with_profile(config, "minutely", EVERY_MINUTE)
    })
    .await;
    app.ingest_fixtures("acme").await;
    let scheduler = Scheduler::new(app.app.state.clone());
    assert_eq!(scheduler.pass().await, []);
    clock.advance(chrono::Duration::seconds(60));
    let outcomes = scheduler.pass().await;
    let [FireOutcome::Created(scheduled)] = outcomes.as_slice() else {
        panic!("one run expected: {outcomes:?}");
    };
    let acme = app.tenant("acme");
    let api = acme
        .export(
            "minutely",
            json!({ "targets": ["advisory", "vex"], "formats": ["ndjson"], "retentionDays": 3 }),
        )
        .await;
    let scheduled = acme.run(&scheduled.to_string()).await;
    assert_eq!(
        (scheduled.status.as_str(), api.status.as_str()),
        ("succeeded", "succeeded")
    );
    assert_eq!(scheduled.trigger.at.as_deref(), Some("2026-12-03T10:01:00Z"));
    let (a, b) = (
        download_all(&app, &scheduled).await,
        download_all(&app, &api).await,
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(
        a.contains_key("manifest.json") && a.contains_key("advisory.ndjson"),
        "{:?}",
        a.keys()
    );
    for (name, bytes) in &a {
        assert!(
            bytes == &b[name],
            "{name} differs between the scheduled and the API run"
        );
    }
}

#[test]
fn a_profile_whose_schedule_cannot_run_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    for (schedule, field) in [
        (
            r#"{ cron = "0 2 * * *", timezone = "UTC", request = { targets = ["policy"] } }"#,
            "tenants.acme.profiles.nightly.schedule.request.targets[0]",
        ),
        (
            r#"{ cron = "0 2 * * *", timezone = "UTC", request = { retentionDays = 400 } }"#,
            "tenants.acme.profiles.nightly.schedule.request.retentionDays",
        ),
        (
            r#"{ cron = "0 2 * *", timezone = "UTC" }"#,
            "tenants.acme.profiles.nightly.schedule.cron",
        ),
        (
            r#"{ cron = "0 2 * * *", timezone = "Berlin" }"#,
            "tenants.acme.profiles.nightly.schedule.timezone",
        ),
    ] {
        let path = dir.path().join("export-center.toml");
        let toml =
            format!("[tenants.acme.profiles.nightly]\ntargets = [\"advisory\"]\nschedule = {schedule}\n");
        std::fs::write(&path, toml).unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
}

/// Two worker replicas on one PostgreSQL database, each passing every second, with a
/// schedule that fires every minute: each fire makes one run, whoever gets there first.
#[tokio::test]
async fn two_worker_replicas_make_exactly_one_run_per_fire() {
    const FIRES: usize = 3;
    let schema = fresh_schema().await;
    let database_url = url_for(&schema);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("export-center.toml");
    std::fs::write(
        &config,
        r#"
[tenants.tenant-default.profiles.minutely]
targets = ["advisory"]
formats = ["ndjson"]
bundle = { enabled = false }
schedule = { cron = "* * * * *", timezone = "America/New_York" }
"#,
    )
    .unwrap();
    let on_postgres = || {
        let mut command: Command = command(data.path());
        command
            .env("EXPORT_CENTER_DATABASE__URL", &database_url)
            .env("EXPORT_CENTER_WORKERS__SCHEDULER_INTERVAL_SECONDS", "1");
        command
    };
    let ingested = on_postgres()
        .args(["ingest", "--config"])
        .arg(&config)
        .args(["--tenant", "tenant-default", "--source", "osv-go"])
        .arg(fixtures().join("osv-go"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ingested.success());
    let config = config.to_str().unwrap();
    let _workers = [
        start(on_postgres(), &["--config", config, "--role", "worker"]).await,
        start(on_postgres(), &["--config", config, "--role", "worker"]).await,
    ];
    let api_server = start(on_postgres(), &["--config", config, "--role", "api"]).await;
    let api = client(on_postgres());
    let list = format!(
        "{}/export-center/runs?trigger=schedule&limit=200",
        api_server.base()
    );
    // The first fire is the first minute after the schedule was first seen: FIRES fires
    // take at most FIRES minutes and the workers' passes (1 s) on top.
    let deadline = Instant::now() + Duration::from_secs(60 * FIRES as u64 + 30);
    loop {
        let page = call(&api, Method::GET, &list, None).await;
        let made = page["items"].as_array().unwrap().len();
        if made >= FIRES {
            break;
        }
        assert!(Instant::now() < deadline, "{made} fires in time: {page}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Both replicas had a pass or more in every second since: a duplicate would be here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = call(&api, Method::GET, &list, None).await["items"]
        .as_array()
        .unwrap()
        .clone();
    let fires: Vec<DateTime<Utc>> = runs
        .iter()
        .map(|run| {
            assert_eq!(run["trigger"]["type"], "schedule", "{run}");
            let at = run["trigger"]["at"].as_str().unwrap();
            let at = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
            assert_eq!((at.second(), at.nanosecond()), (0, 0), "on a minute: {run}");
            at
        })
        .collect();
    let distinct: BTreeSet<_> = fires.iter().collect();
    assert_eq!(distinct.len(), fires.len(), "one run per fire: {fires:?}");
    assert!(fires.len() >= FIRES, "{fires:?}");
    // Consecutive minutes, newest first: no fire was skipped either.
    for pair in fires.windows(2) {
        assert_eq!(pair[0] - pair[1], chrono::Duration::minutes(1), "{fires:?}");
    }
    // The workers ran them.
    let first = format!(
        "{}/export-center/runs/{}",
        api_server.base(),
        runs.last().unwrap()["runId"].as_str().unwrap()
    );
    let done = crate::processes::wait_for(&api, &first, |run| run["status"] == "succeeded").await;
    assert_eq!(done["trigger"]["type"], "schedule");
}
