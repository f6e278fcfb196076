//! Profiles of the API (SPEC §16): created, changed and archived with `export:admin`,
//! each change an immutable revision that runs record and may pin, in the tenant's own
//! store, on SQLite and on PostgreSQL.

use export_store_postgres::testing::{fresh_schema, url_for};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TenantClient, TestApp};

const PROFILES: &str = "/export-center/profiles";

fn nightly(targets: &[&str], default_days: u32) -> Value {
    json!({
        "name": "nightly",
        "description": "every night",
        "targets": targets,
        "formats": ["ndjson"],
        "retention": { "default_days": default_days, "max_days": 30 },
        "bundle": { "enabled": false },
    })
}

fn path(client: &TenantClient<'_>, name: &str) -> String {
    format!("{PROFILES}/{}", client.profile_id(name))
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates `body` as the tenant's profile and asserts the `201`.
async fn create(client: &TenantClient<'_>, body: &Value) -> Value {
    let response = client
        .admin(Method::POST, PROFILES)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("{PROFILES}/{}", created["id"].as_str().unwrap())
    );
    created
}

fn data_files(run: &export_api_types::RunStatusResponse) -> Vec<String> {
    run.outputs
        .iter()
        .filter(|output| output.format == "ndjson")
        .map(|output| output.id.clone())
        .collect()
}

#[tokio::test]
async fn a_profile_is_created_changed_pinned_and_archived_through_the_api() {
    let app = TestApp::spawn().await;
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");
    let created = create(&acme, &nightly(&["advisory"], 3)).await;
    assert_eq!(created["id"], "export-profile::acme::nightly");
    assert_eq!(
        (created["source"].as_str(), created["version"].as_u64()),
        (Some("api"), Some(1))
    );
    assert_eq!(created["retention"]["defaultDays"], 3);
    let v1 = created["revision"].as_str().unwrap().to_owned();

    // The tenant's list holds it beside the configuration's profiles.
    let (status, list) = send(acme.get(PROFILES)).await;
    assert_eq!(status, StatusCode::OK);
    let sources: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert!(sources.contains(&("nightly", "api")), "{sources:?}");
    assert!(sources.contains(&("daily", "config")), "{sources:?}");

    // A change is a new revision; the same definition again is none.
    let mut changed = nightly(&["advisory", "vex"], 7);
    changed.as_object_mut().unwrap().remove("name");
    let (status, updated) = send(acme.admin(Method::PUT, &path(&acme, "nightly")).json(&changed)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    let v2 = updated["revision"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let (_, again) = send(acme.admin(Method::PUT, &path(&acme, "nightly")).json(&changed)).await;
    assert_eq!((&again["version"], &again["revision"]), (&json!(2), &json!(v2)));
    let (status, revisions) = send(acme.get(&format!("{}/revisions", path(&acme, "nightly")))).await;
    assert_eq!(status, StatusCode::OK);
    let items = revisions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (&items[0]["version"], &items[0]["revision"]),
        (&json!(1), &json!(v1))
    );
    assert_eq!(items[0]["definition"]["targets"], json!(["advisory"]));
    assert_eq!(items[0]["createdBy"], "test-user");
    assert_eq!(
        items[1]["definition"]["retention"],
        json!({"default_days": 7, "max_days": 30})
    );

    // A run uses the newest revision unless it pins one.
    let newest = acme.export("nightly", json!({})).await;
    assert_eq!(newest.status, "succeeded", "{:?}", newest.errors);
    assert_eq!(newest.profile_revision, v2);
    assert_eq!(data_files(&newest), ["advisory", "vex"]);
    let pinned = acme.export("nightly", json!({ "profileRevision": v1 })).await;
    assert_eq!(pinned.status, "succeeded", "{:?}", pinned.errors);
    assert_eq!(pinned.profile_revision, v1);
    assert_eq!(data_files(&pinned), ["advisory"], "the pinned revision's targets");
    let unknown = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("nightly"), "profileRevision": "sha256:00" }))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(unknown, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(problem["errors"][0]["field"], "profileRevision");

    // Archived: no new runs, but the profile, its revisions and its runs stay readable.
    let (status, _) = send(acme.admin(Method::DELETE, &path(&acme, "nightly"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(acme.admin(Method::DELETE, &path(&acme, "nightly"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "archiving twice is no error");
    let refused = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("nightly") }))
        .send()
        .await
        .unwrap();
    assert_problem(refused, 409, "ERR_EXPORT_CONFLICT").await;
    let update = acme
        .admin(Method::PUT, &path(&acme, "nightly"))
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_problem(update, 409, "ERR_EXPORT_CONFLICT").await;
    let (status, shown) = send(acme.get(&path(&acme, "nightly"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown["archivedAt"].is_string(), "{shown}");
    let (_, revisions) = send(acme.get(&format!("{}/revisions", path(&acme, "nightly")))).await;
    assert_eq!(revisions["items"].as_array().unwrap().len(), 2);
    assert_eq!(acme.run(&pinned.run_id).await.profile_revision, v1);
    let (_, list) = send(acme.get(PROFILES)).await;
    assert!(
        !list.to_string().contains("export-profile::acme::nightly"),
        "{list}"
    );
    // The name stays taken.
    let again = acme
        .admin(Method::POST, PROFILES)
        .json(&nightly(&["advisory"], 3))
        .send()
        .await
        .unwrap();
    assert_problem(again, 409, "ERR_EXPORT_CONFLICT").await;
}

#[tokio::test]
async fn profiles_of_the_configuration_file_are_read_only_through_the_api() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let mut daily = nightly(&["advisory"], 3);
    daily["name"] = json!("daily");
    let create = acme
        .admin(Method::POST, PROFILES)
        .json(&daily)
        .send()
        .await
        .unwrap();
    assert_problem(create, 409, "ERR_EXPORT_CONFLICT").await;
    let update = acme
        .admin(Method::PUT, &path(&acme, "daily"))
        .json(&json!({ "targets": ["advisory"] }))
        .send()
        .await
        .unwrap();
    assert_problem(update, 409, "ERR_EXPORT_CONFLICT").await;
    let delete = acme
        .admin(Method::DELETE, &path(&acme, "daily"))
        .send()
        .await
        .unwrap();
    assert_problem(delete, 409, "ERR_EXPORT_CONFLICT").await;
    let (status, shown) = send(acme.get(&path(&acme, "daily"))).await;
    assert_eq!(
        (status, shown["source"].as_str()),
        (StatusCode::OK, Some("config"))
    );
    let (status, revisions) = send(acme.get(&format!("{}/revisions", path(&acme, "daily")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revisions["items"][0]["revision"], shown["revision"]);
    // Its one revision may be pinned; no other.
    let pinned = acme
        .create_run(json!({ "profileId": acme.profile_id("daily"), "profileRevision": shown["revision"] }))
        .await;
    assert_eq!(
        acme.run(&pinned.run_id).await.profile_revision,
        shown["revision"].as_str().unwrap()
    );
}

#[tokio::test]
async fn managing_profiles_needs_the_admin_scope_and_stays_in_the_tenant() {
    let app = TestApp::spawn().await;
    let (acme, globex) = (app.tenant("acme"), app.tenant("globex"));
    let body = nightly(&["advisory"], 3);
    let write_only = ["export:read", "export:write"];
    let refused = acme
        .scoped(Method::POST, PROFILES, &write_only)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403, "ERR_SCOPE_MISMATCH").await;
    let anonymous = app.http.post(app.url(PROFILES)).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    create(&acme, &body).await;
    for method in [Method::PUT, Method::DELETE] {
        let refused = acme
            .scoped(method, &path(&acme, "nightly"), &write_only)
            .json(&json!({ "targets": ["vex"] }))
            .send()
            .await
            .unwrap();
        assert_problem(refused, 403, "ERR_SCOPE_MISMATCH").await;
    }
    // Reads need `export:read` only.
    let (status, _) = send(acme.scoped(Method::GET, &path(&acme, "nightly"), &["export:read"])).await;
    assert_eq!(status, StatusCode::OK);

    // Another tenant neither sees nor changes it, and has a name space of its own.
    let theirs = format!("{PROFILES}/{}", acme.profile_id("nightly"));
    for request in [
        globex.get(&theirs),
        globex.get(&format!("{theirs}/revisions")),
        globex
            .admin(Method::PUT, &theirs)
            .json(&json!({ "targets": ["vex"] })),
        globex.admin(Method::DELETE, &theirs),
    ] {
        assert_problem(request.send().await.unwrap(), 404, "ERR_EXPORT_PROFILE_NOT_FOUND").await;
    }
    let (_, list) = send(globex.get(PROFILES)).await;
    assert!(!list.to_string().contains("acme"), "{list}");
    let own = create(&globex, &nightly(&["vex"], 5)).await;
    assert_eq!(own["id"], "export-profile::globex::nightly");
    let (_, ours) = send(acme.get(&path(&acme, "nightly"))).await;
    assert_eq!(
        ours["targets"],
        json!(["advisory"]),
        "globex's profile left acme's alone"
    );
}

#[tokio::test]
async fn a_bad_definition_is_refused_naming_its_field() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let cases = [
        (json!({ "targets": ["advisory"] }), "name"),
        (json!({ "name": "Not A Name", "targets": ["advisory"] }), "name"),
        (
            json!({ "name": "x", "targets": ["advisory", "bogus"] }),
            "targets[1]",
        ),
        (json!({ "name": "x", "targets": [] }), "targets"),
        (
            json!({ "name": "x", "targets": ["advisory"], "retention": { "default_days": 40, "max_days": 30 } }),
            "retention.default_days",
        ),
        (
            json!({ "name": "x", "targets": ["advisory"], "signing": { "keys": ["file:/etc/keys/a.pem"] } }),
            "signing.keys",
        ),
        (
            json!({ "name": "x", "targets": ["advisory"], "signing": { "keys": ["kms://globex/signer"] } }),
            "signing.keys",
        ),
        (
            json!({ "name": "x", "targets": ["advisory"], "colour": "red" }),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let response = acme
            .admin(Method::POST, PROFILES)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        assert!(
            !problem.to_string().contains("/etc/keys"),
            "no path echoed: {problem}"
        );
    }
    let (_, list) = send(acme.get(PROFILES)).await;
    assert!(!list.to_string().contains("::x\""), "nothing was stored: {list}");
    let text = acme
        .admin(Method::POST, PROFILES)
        .header("content-type", "text/plain")
        .body("name = x")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn every_replica_sees_a_profile_of_the_api_at_once_on_postgres() {
    let database_url = url_for(&fresh_schema().await);
    let on_postgres = |config: &mut export_server::config::Config| {
        config.database.url = Some(database_url.clone());
    };
    let first = TestApp::spawn_with(on_postgres).await;
    let second = TestApp::spawn_with(on_postgres).await;
    create(&first.tenant("acme"), &nightly(&["advisory"], 3)).await;
    let other = second.tenant("acme");
    let (status, shown) = send(other.get(&path(&other, "nightly"))).await;
    assert_eq!((status, shown["version"].as_u64()), (StatusCode::OK, Some(1)));
    let mut changed = nightly(&["advisory", "vex"], 3);
    changed.as_object_mut().unwrap().remove("name");
    let (status, _) = send(other.admin(Method::PUT, &path(&other, "nightly")).json(&changed)).await;
    assert_eq!(status, StatusCode::OK);
    let accepted = first
        .tenant("acme")
        .create_run(json!({ "profileId": other.profile_id("nightly") }))
        .await;
    let run = first.tenant("acme").run(&accepted.run_id).await;
    assert_eq!(run.profile_revision, shown_revision(&other).await);
}

async fn shown_revision(client: &TenantClient<'_>) -> String {
    let (_, shown) = send(client.get(&path(client, "nightly"))).await;
    assert_eq!(shown["version"], 2);
    shown["revision"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_schedule_on_a_profile_of_the_api_fires_its_revision_until_it_is_archived() {
    use chrono::TimeZone as _;
    use export_api::{FireOutcome, Scheduler};

    let clock =
        crate::helpers::TestClock::starting_at(chrono::Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 30).unwrap());
    let app = TestApp::spawn_at(clock.clone(), |_| {}).await;
    let acme = app.tenant("acme");
    // A schedule's request is checked as the configuration file's are.
    let mut bad = nightly(&["advisory"], 3);
    bad["schedule"] = json!({ "cron": "* * * * *", "timezone": "UTC", "request": { "formats": ["json"] } });
    let response = acme
        .admin(Method::POST, PROFILES)
        .json(&bad)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(
        problem["errors"][0]["field"], "schedule.request.formats[0]",
        "{problem}"
    );
    bad["schedule"]["timezone"] = json!("Mars/Olympus");
    let response = acme
        .admin(Method::POST, PROFILES)
        .json(&bad)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400, "ERR_EXPORT_REQUEST_INVALID").await;
    assert_eq!(problem["errors"][0]["field"], "schedule.timezone", "{problem}");

    let mut body = nightly(&["advisory"], 3);
    body["schedule"] =
        json!({ "cron": "* * * * *", "timezone": "Europe/Berlin", "request": { "priority": "low" } });
    let created = create(&acme, &body).await;
    assert_eq!(
        created["schedule"]["nextFireAt"], "2026-06-01T09:01:00Z",
        "{created}"
    );
    let (_, revisions) = send(acme.get(&format!("{}/revisions", path(&acme, "nightly")))).await;
    assert_eq!(
        revisions["items"][0]["definition"]["schedule"]["cron"],
        "* * * * *"
    );

    let scheduler = Scheduler::new(app.app.state.clone());
    assert_eq!(scheduler.pass().await, [], "the first pass records the schedule");
    clock.advance(chrono::Duration::seconds(60));
    let outcomes = scheduler.pass().await;
    let [FireOutcome::Created(run_id)] = outcomes.as_slice() else {
        panic!("one run expected: {outcomes:?}");
    };
    let run = acme.run(&run_id.to_string()).await;
    assert_eq!(run.profile_revision, created["revision"].as_str().unwrap());
    assert_eq!(
        (run.priority.as_str(), run.trigger.kind.as_str()),
        ("low", "schedule")
    );

    // Archived, it fires no more.
    let (status, _) = send(acme.admin(Method::DELETE, &path(&acme, "nightly"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    clock.advance(chrono::Duration::seconds(60));
    assert_eq!(scheduler.pass().await, []);
}
