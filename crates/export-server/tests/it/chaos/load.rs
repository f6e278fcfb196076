//! The clients: run creation that retries with the same `Idempotency-Key` until a replica
//! answers, and event followers that resume with `Last-Event-ID` wherever they can.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use export_auth::http::DpopClient;
use reqwest::Method;
use serde_json::{json, Value};

use super::cluster::{PROFILES, TENANTS};

/// One run the harness asked for.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub(crate) tenant: &'static str,
    pub(crate) profile: &'static str,
    pub(crate) body: Value,
}

impl Wanted {
    /// The `index`th run: tenants and profiles in turn, each `published` run to a tag of
    /// its own.
    pub(crate) fn nth(index: usize, registry: &str) -> Self {
        let tenant = TENANTS[index % TENANTS.len()];
        let profile = PROFILES[(index / TENANTS.len()) % PROFILES.len()];
        let mut body = json!({ "profileId": format!("export-profile::{tenant}::{profile}") });
        if profile == "published" {
            body["distribution"] =
                json!({ "type": "oci", "ref": format!("{registry}/{tenant}/chaos:run-{index}") });
        }
        Self {
            tenant,
            profile,
            body,
        }
    }
}

/// `POST /runs` until a replica accepts it, every attempt with the same key; returns the
/// run id and how many attempts failed (no answer, `409` in flight, `5xx`).
pub(crate) async fn create(
    client: &DpopClient,
    bases: &RwLock<Vec<String>>,
    wanted: &Wanted,
    key: &str,
) -> (String, u32) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut failed = 0;
    loop {
        let base = pick(bases, failed as usize);
        let answer = client
            .send(Method::POST, &format!("{base}/export-center/runs"), |request| {
                request
                    .header("X-StellaOps-Tenant", wanted.tenant)
                    .header("Idempotency-Key", key)
                    .timeout(Duration::from_secs(20))
                    .json(&wanted.body)
            })
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => {
                let accepted: Value = answer.json().await.unwrap();
                return (accepted["runId"].as_str().unwrap().to_owned(), failed);
            }
            Ok(answer) if answer.status() == 409 || answer.status().is_server_error() => {}
            Ok(answer) => panic!(
                "{key}: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        failed += 1;
        assert!(
            Instant::now() < deadline,
            "{key}: no replica created the run within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A GET of the API through any replica, retried until one answers `200`.
pub(crate) async fn get(client: &DpopClient, bases: &RwLock<Vec<String>>, tenant: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failed = 0;
    loop {
        let url = format!("{}{path}", pick(bases, failed));
        let answer = client
            .send(Method::GET, &url, |request| {
                request
                    .header("X-StellaOps-Tenant", tenant)
                    .timeout(Duration::from_secs(20))
            })
            .await;
        match answer {
            Ok(answer) if answer.status() == 200 => return answer.json().await.unwrap(),
            Ok(answer) if answer.status().is_client_error() => panic!("{url}: {}", answer.status()),
            _ => {}
        }
        failed += 1;
        assert!(
            Instant::now() < deadline,
            "{url}: no replica answered within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What an event follower saw.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// The `id` of every event, in the order received, over every connection.
    pub(crate) ids: Vec<u64>,
    pub(crate) names: Vec<String>,
    /// Connections after the first.
    pub(crate) resumed: u32,
}

/// Follows a run's events to its terminal event, resuming with `Last-Event-ID` on any
/// replica whenever a stream ends early or a connection fails.
pub(crate) async fn follow(
    client: Arc<DpopClient>,
    bases: Arc<RwLock<Vec<String>>>,
    tenant: &'static str,
    run_id: String,
) -> Followed {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = Followed::default();
    let mut connections = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "{run_id}: no terminal event within 600 s: {seen:?}"
        );
        if connections > 0 {
            seen.resumed += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        connections += 1;
        let url = format!("{}/export-center/runs/{run_id}/events", pick(&bases, connections));
        let last = seen.ids.last().copied();
        let answer = client
            .send(Method::GET, &url, |request| {
                let request = request
                    .header("X-StellaOps-Tenant", tenant)
                    .header("Accept", "text/event-stream");
                match last {
                    Some(id) => request.header("Last-Event-ID", id.to_string()),
                    None => request,
                }
            })
            .await;
        let Ok(mut answer) = answer else { continue };
        if answer.status() != 200 {
            assert!(
                answer.status().is_server_error() || answer.status() == 429,
                "{url}: {}",
                answer.status()
            );
            continue;
        }
        let mut pending = String::new();
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(60), answer.chunk()).await {
            pending.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = pending.find("\n\n") {
                let message: String = pending.drain(..end + 2).collect();
                let id = message.lines().find_map(|line| line.strip_prefix("id: "));
                let name = message.lines().find_map(|line| line.strip_prefix("event: "));
                if let (Some(id), Some(name)) = (id, name) {
                    seen.ids.push(id.parse().unwrap());
                    seen.names.push(name.to_owned());
                    if matches!(name, "completed" | "failed" | "cancelled") {
                        return seen;
                    }
                }
            }
        }
    }
}

/// The `attempt`th base (round robin), so that a retry goes to the next replica.
fn pick(bases: &RwLock<Vec<String>>, attempt: usize) -> String {
    let bases = bases.read().unwrap();
    bases[attempt % bases.len()].clone()
}
