//! Several replicas on one PostgreSQL database (SPEC §13): an API process and a worker
//! process share the state, the job queue and the events, as real processes.
//!
//! Needs PostgreSQL (`export_store_postgres::testing`); without it the test fails,
//! never skips.

use std::path::Path;
use std::process::{Command, Stdio};

use export_core::Sha256Digest;
use export_store_postgres::testing::{fresh_schema, server_url, url_for};
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::helpers::fixtures;
use crate::processes::{call, client, command, mint, start, wait_for, Server};

fn on_postgres(data: &Path, database_url: &str) -> Command {
    let mut command = command(data);
    command.env("EXPORT_CENTER_DATABASE__URL", database_url);
    command
}

#[tokio::test]
async fn an_api_replica_and_a_worker_replica_share_runs_and_events_through_postgres() {
    let schema = fresh_schema().await;
    let database_url = url_for(&schema);
    let data = tempfile::tempdir().unwrap();
    let ingested = on_postgres(data.path(), &database_url)
        .args(["ingest", "--tenant", "tenant-default", "--source", "osv-go"])
        .arg(fixtures().join("osv-go"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ingested.success());

    let api_server = start(on_postgres(data.path(), &database_url), &["--role", "api"]).await;
    let api = client(on_postgres(data.path(), &database_url));
    let base = format!("{}/export-center", api_server.base());
    let accepted = call(
        &api,
        Method::POST,
        &format!("{base}/runs"),
        Some(json!({ "profileId": "export-profile::tenant-default::default" })),
    )
    .await;
    let status_url = format!(
        "{}{}",
        api_server.base(),
        accepted["links"]["status"].as_str().unwrap()
    );
    // The API process has no workers: the run waits in the shared queue.
    let queued = call(&api, Method::GET, &status_url, None).await;
    assert_eq!(queued["status"], "queued", "{queued}");

    let events_url = format!("{status_url}/events");
    let stream = {
        let api = client(on_postgres(data.path(), &database_url));
        tokio::spawn(async move {
            let response = api
                .send(Method::GET, &events_url, |request| {
                    request
                        .header("X-StellaOps-Tenant", "tenant-default")
                        .header("Accept", "text/event-stream")
                })
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        })
    };
    let worker = start(on_postgres(data.path(), &database_url), &["--role", "worker"]).await;
    // A worker answers probes on its port, scrapes on its operator port, and no API.
    let worker_base = worker.base();
    let ready = reqwest::get(format!("{worker_base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", worker.admin_address))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let profiles = reqwest::get(format!("{worker_base}/export-center/profiles"))
        .await
        .unwrap();
    assert_eq!(profiles.status(), 404);

    // Events the worker process stores reach the API process's stream, in order, once.
    let text = tokio::time::timeout(std::time::Duration::from_secs(120), stream)
        .await
        .expect("the stream ended")
        .unwrap();
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "{text}");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"started"), "{text}");
    assert_eq!(names.last(), Some(&"completed"), "{text}");

    let done = wait_for(&api, &status_url, |s| s["status"] == "succeeded").await;
    for output in done["outputs"].as_array().unwrap() {
        let bytes = reqwest::get(output["url"].as_str().unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            Sha256Digest::of(&bytes).to_string(),
            output["sha256"].as_str().unwrap(),
            "{output}"
        );
    }

    // The state lives in PostgreSQL, not in a SQLite file beside the data.
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    let statuses: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT status::text, attempts FROM {schema}.runs ORDER BY run_key"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(statuses, [("succeeded".to_owned(), 1)]);
    let stored_events: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {schema}.run_events"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored_events, ids.len() as i64);
    assert!(!data.path().join("export-center.db").exists());
}

/// Behind one public URL, a DPoP proof accepted by one API replica is refused by the
/// other: the replicas share the proofs they have seen through PostgreSQL.
#[tokio::test]
async fn a_proof_replayed_to_another_replica_is_refused() {
    let schema = fresh_schema().await;
    let database_url = url_for(&schema);
    let data = tempfile::tempdir().unwrap();
    let first = start(on_postgres(data.path(), &database_url), &["--role", "api"]).await;
    let public = first.base();
    let mut second = on_postgres(data.path(), &database_url);
    second.env("EXPORT_CENTER_SERVER__PUBLIC_BASE_URL", &public);
    let second = start(second, &["--role", "api"]).await;
    let (access_token, key) = mint(on_postgres(data.path(), &database_url));

    let url = format!("{public}/export-center/profiles");
    let proof = key.proof("GET", &url, Some(&access_token), None);
    let send = |server: &Server, proof: &str| {
        crate::helpers::http_client()
            .get(format!("{}/export-center/profiles", server.base()))
            .header("Authorization", format!("DPoP {access_token}"))
            .header("DPoP", proof)
            .header("X-StellaOps-Tenant", "tenant-default")
            .send()
    };
    assert_eq!(send(&first, &proof).await.unwrap().status(), 200);
    assert_eq!(
        send(&second, &proof).await.unwrap().status(),
        401,
        "the replayed proof"
    );
    let fresh = key.proof("GET", &url, Some(&access_token), None);
    assert_eq!(
        send(&second, &fresh).await.unwrap().status(),
        200,
        "a fresh proof is accepted by the other replica"
    );
}

/// A replica killed between claiming an `Idempotency-Key` and creating its run does not
/// lock the client out of its own key: once the claim's lease lapses, the retry on
/// another replica creates the run (202), and the next retry replays it; one run in all.
/// Needs the `failpoints` feature (`scripts/test` builds with `--all-features`).
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_retry_on_another_replica_takes_over_the_key_of_a_replica_killed_mid_request() {
    let schema = fresh_schema().await;
    let database_url = url_for(&schema);
    let data = tempfile::tempdir().unwrap();
    let replica = || {
        let mut command = on_postgres(data.path(), &database_url);
        command
            .env("EXPORT_CENTER_LIMITS__IDEMPOTENCY_LEASE_SECONDS", "2")
            .env("EXPORT_CENTER_LIMITS__RUNS_BURST", "1000");
        command
    };
    let mut doomed = {
        let mut command = replica();
        // The doomed replica stops for good right after it has claimed the key.
        command.env("FAILPOINTS", "create-run-after-idempotency-claim=pause");
        start(command, &["--role", "api"]).await
    };
    let survivor = start(replica(), &["--role", "api"]).await;
    let body = json!({ "profileId": "export-profile::tenant-default::default" });
    let post = |server: &Server| {
        let client = client(replica());
        let body = body.clone();
        let url = format!("{}/export-center/runs", server.base());
        async move {
            client
                .send(Method::POST, &url, |request| {
                    request
                        .header("X-StellaOps-Tenant", "tenant-default")
                        .header("Idempotency-Key", "retry-me")
                        .json(&body)
                })
                .await
        }
    };
    let cut = tokio::spawn(post(&doomed));
    // The key is claimed, and no run created, when the replica holding it dies.
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    let claimed = format!("SELECT COUNT(*) FROM {schema}.idempotency WHERE run_id IS NULL");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(&claimed)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        == 0
    {
        if cut.is_finished() {
            let answer = match cut.await.unwrap() {
                Ok(response) => format!("{} {}", response.status(), response.text().await.unwrap()),
                Err(err) => err.to_string(),
            };
            panic!("the cut request was answered before its claim was seen: {answer}");
        }
        assert!(std::time::Instant::now() < deadline, "the key was never claimed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    assert!(cut.await.unwrap().is_err(), "the cut request got no answer");

    let mut statuses = Vec::new();
    let accepted = loop {
        let response = post(&survivor).await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 202 {
            assert!(response.headers().get("idempotent-replayed").is_none());
            break response.json::<serde_json::Value>().await.unwrap();
        }
        assert_eq!(response.status(), 409, "{statuses:?}");
        assert!(statuses.len() < 100, "the key stayed claimed: {statuses:?}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let replayed = post(&survivor).await.unwrap();
    assert_eq!(replayed.status(), 202);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let replayed: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(replayed["runId"], accepted["runId"]);

    let runs: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {schema}.runs"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs, 1, "one run for one key");
}
