//! What must hold once the faults stop, and the summary table.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use export_auth::http::DpopClient;
use export_core::Sha256Digest;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use super::cluster::{Cluster, SHUTDOWN_GRACE, TENANTS};
use super::load::{create, get, Wanted};
use super::Created;
use crate::helpers::{files_under, http_client, output_name, run_prefix, TEST_AGE_IDENTITY};
use crate::processes::{client_as, command, start};

/// What the faults were, as they happened.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) kills: u32,
    /// How long each replica sent SIGTERM took to exit.
    pub(crate) drains: Vec<Duration>,
    /// Replicas that had not exited within twice the grace period.
    pub(crate) undrained: u32,
    pub(crate) registry_down: Option<Instant>,
    pub(crate) registry_outage: Option<Duration>,
    /// Per kind of fault, the time from it until every replica was ready again.
    pub(crate) recoveries: BTreeMap<&'static str, Vec<Duration>>,
    /// From the first creation to the last fault.
    pub(crate) window: Duration,
    /// From the last fault until every run had ended and its follower had seen it.
    pub(crate) settled: Duration,
}

/// The figures of a passed check.
pub(crate) struct Report {
    tally: Tally,
    runs: usize,
    succeeded: usize,
    failed: BTreeMap<String, usize>,
    retries: u32,
    resumed: u32,
    takeovers: i64,
    compared: usize,
    tags: usize,
    objects: usize,
    /// Files of multipart uploads that a killed process never completed or aborted.
    unfinished_uploads: usize,
}

impl Report {
    pub(crate) async fn check(
        cluster: &mut Cluster,
        clients: &HashMap<&str, Arc<DpopClient>>,
        created: Vec<Created>,
        tally: Tally,
    ) -> Self {
        let bases = cluster.api_bases.clone();
        let mut statuses = Vec::new();
        for run in &created {
            statuses.push(
                ended(
                    &clients[run.wanted.tenant],
                    &bases,
                    run.wanted.tenant,
                    &run.run_id,
                )
                .await,
            );
        }
        exactly_once_per_key(clients, &bases, &created).await;
        for (run, status) in created.iter().zip(&statuses) {
            events_once_each(run, status);
        }

        // A run failed only where the fault made success impossible, and then the same
        // request succeeds.
        let mut failed = BTreeMap::new();
        let mut outcomes = Vec::new();
        for (run, status) in created.iter().zip(statuses) {
            if status["status"] == "succeeded" {
                outcomes.push((run.wanted.clone(), status));
                continue;
            }
            let code = status["errors"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // A push during the registry outage, or a run whose worker was killed under it
            // `workers.max_attempts` times (long runs, on a loaded machine).
            let abandoned = status["errors"][0]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("the run was abandoned after"));
            assert!(
                (run.wanted.profile == "published" && code == "ERR_EXPORT_DISTRIBUTION_FAILED") || abandoned,
                "{} ({}) ended {}: {status}",
                run.run_id,
                run.wanted.profile,
                status["status"]
            );
            *failed.entry(code).or_insert(0) += 1;
            let client = &clients[run.wanted.tenant];
            let (again, _) = create(client, &bases, &run.wanted, &format!("chaos-again-{}", run.index)).await;
            let status = ended(client, &bases, run.wanted.tenant, &again).await;
            assert_eq!(
                status["status"], "succeeded",
                "the same request after the faults: {status}"
            );
            outcomes.push((run.wanted.clone(), status));
        }
        let succeeded = created.len() - failed.values().sum::<usize>();

        let compared = same_bytes_as_a_calm_process(cluster, &outcomes).await;
        let tags = every_tag_is_complete(&cluster.registry.address).await;
        let objects = only_outputs_in_the_bucket(
            &cluster
                .s3
                .data_dir()
                .join(export_artifacts::testing::S3Server::BUCKET),
            &outcomes,
        );
        // s3s-fs keeps the parts of an upload beside its buckets, as `.upload…` files.
        let unfinished_uploads = std::fs::read_dir(cluster.s3.data_dir())
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(".upload"))
            .count();
        assert_eq!(
            tally.undrained, 0,
            "a replica sent SIGTERM did not stop within twice its grace period"
        );
        for drained in &tally.drains {
            assert!(
                *drained <= SHUTDOWN_GRACE + Duration::from_secs(2),
                "a replica took {drained:?} to stop after SIGTERM"
            );
        }

        let mut database = PgConnection::connect(&cluster.postgres.url()).await.unwrap();
        let takeovers: Option<i64> =
            sqlx::query_scalar("SELECT sum(attempts - 1)::bigint FROM runs WHERE attempts > 1")
                .fetch_one(&mut database)
                .await
                .unwrap();
        Self {
            runs: created.len(),
            succeeded,
            failed,
            retries: created.iter().map(|run| run.retries).sum(),
            resumed: created.iter().map(|run| run.events.resumed).sum(),
            takeovers: takeovers.unwrap_or(0),
            compared,
            tags,
            objects,
            unfinished_uploads,
            tally,
        }
    }
}

/// Polls a run until it has ended; a run still queued or running after 300 s is stuck.
async fn ended(client: &DpopClient, bases: &RwLock<Vec<String>>, tenant: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = get(client, bases, tenant, &format!("/export-center/runs/{run_id}")).await;
        if !matches!(status["status"].as_str(), Some("queued" | "running")) {
            return status;
        }
        assert!(Instant::now() < deadline, "{run_id} is stuck: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each tenant's runs are exactly those the harness was given, one per key.
async fn exactly_once_per_key(
    clients: &HashMap<&str, Arc<DpopClient>>,
    bases: &RwLock<Vec<String>>,
    created: &[Created],
) {
    for tenant in TENANTS {
        let wanted: BTreeSet<&str> = created
            .iter()
            .filter(|run| run.wanted.tenant == tenant)
            .map(|run| run.run_id.as_str())
            .collect();
        let mut listed = BTreeSet::new();
        let mut path = "/export-center/runs?limit=200".to_owned();
        loop {
            let page = get(&clients[tenant], bases, tenant, &path).await;
            for item in page["items"].as_array().unwrap() {
                assert!(
                    listed.insert(item["runId"].as_str().unwrap().to_owned()),
                    "listed twice: {item}"
                );
            }
            match page["nextCursor"].as_str() {
                Some(cursor) => path = format!("/export-center/runs?limit=200&cursor={cursor}"),
                None => break,
            }
        }
        let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        assert_eq!(
            listed, wanted,
            "{tenant}: the runs listed are not the runs created, once each"
        );
    }
}

/// The follower saw the events `1..=n` once each, ending with the run's outcome.
fn events_once_each(run: &Created, status: &Value) {
    let ids = &run.events.ids;
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, &expected, "{}: events {:?}", run.run_id, run.events.names);
    let last = run.events.names.last().map(String::as_str);
    let outcome = match status["status"].as_str() {
        Some("succeeded") => "completed",
        other => other.unwrap_or_default(),
    };
    assert_eq!(last, Some(outcome), "{}: {:?}", run.run_id, run.events.names);
}

/// Every output of every run downloads with its digest and has the bytes a calm single
/// process gives for the same request over the same snapshot (the provenance apart, which
/// names its run; an encrypted bundle compared once decrypted, since age encrypts to a
/// fresh key): once the replicas are stopped, one process on the same database with the
/// local filesystem as its artifact store. Returns how many files were compared.
async fn same_bytes_as_a_calm_process(cluster: &mut Cluster, outcomes: &[(Wanted, Value)]) -> usize {
    let mut downloaded = Vec::new();
    for (wanted, status) in outcomes {
        downloaded.push((wanted, status["runId"].clone(), download(status).await));
    }
    cluster.stop_replicas();
    let calm = tempfile::tempdir().unwrap();
    copy_dir(
        &cluster.data.path().join("keyrings"),
        &calm.path().join("keyrings"),
    );
    let on_the_same_database = || {
        let mut command = command(calm.path());
        command.env("EXPORT_CENTER_DATABASE__URL", cluster.postgres.url());
        command
    };
    let server = start(
        on_the_same_database(),
        &["--config", cluster.config.to_str().unwrap()],
    )
    .await;
    let bases = RwLock::new(vec![server.base()]);
    let mut reference: HashMap<(&str, &str), BTreeMap<String, Vec<u8>>> = HashMap::new();
    let mut compared = 0;
    for (wanted, run_id, files) in downloaded {
        if let Entry::Vacant(slot) = reference.entry((wanted.tenant, wanted.profile)) {
            let calm_run = calm_run(cluster, on_the_same_database(), &bases, wanted).await;
            slot.insert(download(&calm_run).await);
        }
        let expected = &reference[&(wanted.tenant, wanted.profile)];
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{run_id}"
        );
        let differing: Vec<&String> = files
            .iter()
            .filter(|(name, bytes)| *bytes != &expected[*name])
            .map(|(name, _)| name)
            .collect();
        assert!(
            differing.is_empty(),
            "{}: {differing:?} differ from the calm process's; manifest.json:\n{}\ncalm:\n{}",
            run_id,
            String::from_utf8_lossy(&files["manifest.json"]),
            String::from_utf8_lossy(&expected["manifest.json"])
        );
        compared += files.len();
    }
    compared
}

/// The request of `wanted` on the calm process (a `published` one to a tag of its own).
async fn calm_run(
    cluster: &Cluster,
    minter: std::process::Command,
    bases: &RwLock<Vec<String>>,
    wanted: &Wanted,
) -> Value {
    let mut wanted = wanted.clone();
    if wanted.profile == "published" {
        wanted.body["distribution"] = json!({
            "type": "oci",
            "ref": format!("{}/{}/calm:reference", cluster.registry.address, wanted.tenant),
        });
    }
    let client = client_as(minter, wanted.tenant);
    let (run_id, _) = create(
        &client,
        bases,
        &wanted,
        &format!("calm-{}-{}", wanted.tenant, wanted.profile),
    )
    .await;
    let status = ended(&client, bases, wanted.tenant, &run_id).await;
    assert_eq!(status["status"], "succeeded", "the calm process: {status}");
    status
}

/// A run's outputs by name, each checked against its listed digest, without the
/// provenance, and an `.age` file decrypted.
async fn download(status: &Value) -> BTreeMap<String, Vec<u8>> {
    let http = http_client();
    let mut files = BTreeMap::new();
    for output in status["outputs"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let bytes = http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        assert_eq!(
            Sha256Digest::of(&bytes).to_string(),
            output["sha256"].as_str().unwrap(),
            "{url}"
        );
        let name = output_name(url);
        match name.strip_suffix(".age") {
            _ if name == "provenance.dsse.json" => {}
            Some(plain) => {
                files.insert(plain.to_owned(), decrypt(&bytes));
            }
            None => {
                files.insert(name, bytes);
            }
        }
    }
    files
}

fn decrypt(bytes: &[u8]) -> Vec<u8> {
    let identity: age::x25519::Identity = TEST_AGE_IDENTITY.parse().unwrap();
    let decryptor = age::Decryptor::new(bytes).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).unwrap();
    plain
}

/// Every tag of every tenant's `chaos` repository names a manifest whose blobs, and
/// whose referenced manifests, are all in the registry: no tag is half-published.
/// Returns how many tags were checked.
async fn every_tag_is_complete(registry: &str) -> usize {
    let http = http_client();
    let mut checked = 0;
    for tenant in TENANTS {
        let repository = format!("{tenant}/chaos");
        let tags = http
            .get(format!("http://{registry}/v2/{repository}/tags/list"))
            .send()
            .await
            .unwrap();
        if tags.status() == 404 {
            continue;
        }
        let tags: Value = tags.json().await.unwrap();
        for tag in tags["tags"].as_array().into_iter().flatten() {
            complete(&http, registry, &repository, tag.as_str().unwrap()).await;
            checked += 1;
        }
    }
    checked
}

/// Fetches the manifest `reference` and checks, recursively, everything it names.
async fn complete(http: &reqwest::Client, registry: &str, repository: &str, reference: &str) {
    let mut pending = vec![reference.to_owned()];
    while let Some(reference) = pending.pop() {
        let answer = http
            .get(format!("http://{registry}/v2/{repository}/manifests/{reference}"))
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "{repository}:{reference} names a missing manifest"
        );
        let manifest: Value = answer.json().await.unwrap();
        for child in manifest["manifests"].as_array().into_iter().flatten() {
            pending.push(child["digest"].as_str().unwrap().to_owned());
        }
        let blobs = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(manifest.get("config"));
        for blob in blobs {
            let digest = blob["digest"].as_str().unwrap();
            let answer = http
                .head(format!("http://{registry}/v2/{repository}/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                answer.status(),
                200,
                "{repository}:{reference}: blob {digest} is missing"
            );
        }
    }
}

/// The bucket holds the outputs of the runs that succeeded, and nothing else: nothing of
/// a failed run, of an abandoned attempt or of an unfinished upload. Returns how many
/// objects it holds.
fn only_outputs_in_the_bucket(bucket: &Path, outcomes: &[(Wanted, Value)]) -> usize {
    let mut expected = BTreeSet::new();
    for (_, status) in outcomes {
        let run = run_prefix(status["runId"].as_str().unwrap());
        // Every run here is signed: its envelope is kept beside the bundle (the `completed`
        // event links it as `manifestDsseUrl`).
        let names = status["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|output| output_name(output["url"].as_str().unwrap()))
            .chain(["manifest.dsse.json".to_owned()]);
        for name in names {
            expected.insert(format!("artifacts/{run}/{name}"));
        }
    }
    let stored: BTreeSet<String> = files_under(bucket)
        .iter()
        .map(|path| path.strip_prefix(bucket).unwrap().display().to_string())
        .collect();
    let unexpected: Vec<&String> = stored.difference(&expected).collect();
    assert!(
        unexpected.is_empty(),
        "objects no succeeded run lists: {unexpected:?}"
    );
    stored.len()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = |d: &Duration| format!("{:.1} s", d.as_secs_f64());
        let spread = |all: &[Duration]| match (all.iter().min(), all.iter().max()) {
            (Some(min), Some(max)) => format!("{} to {}", seconds(min), seconds(max)),
            _ => "-".to_owned(),
        };
        let tally = &self.tally;
        let failed = if self.failed.is_empty() {
            "none".to_owned()
        } else {
            self.failed
                .iter()
                .map(|(code, n)| format!("{n} {code}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "| what | figure |")?;
        writeln!(f, "| --- | --- |")?;
        writeln!(
            f,
            "| runs created (3 tenants, 4 profiles) | {} over {} |",
            self.runs,
            seconds(&tally.window)
        )?;
        writeln!(f, "| succeeded under the faults | {} |", self.succeeded)?;
        writeln!(
            f,
            "| failed with a typed code (then succeeded when asked again) | {failed} |"
        )?;
        writeln!(f, "| replicas killed (SIGKILL) | {} |", tally.kills)?;
        writeln!(
            f,
            "| replicas stopped (SIGTERM, grace {}) | {}, each gone in {} |",
            seconds(&SHUTDOWN_GRACE),
            tally.drains.len(),
            spread(&tally.drains)
        )?;
        writeln!(f, "| runs taken over from a lost worker | {} |", self.takeovers)?;
        writeln!(
            f,
            "| run creations retried with the same key | {} |",
            self.retries
        )?;
        writeln!(
            f,
            "| event streams resumed with Last-Event-ID | {} |",
            self.resumed
        )?;
        if let Some(outage) = tally.registry_outage {
            writeln!(f, "| registry outage | {} |", seconds(&outage))?;
        }
        for (kind, times) in &tally.recoveries {
            writeln!(
                f,
                "| {kind}: all replicas ready again after | {} ({}x) |",
                spread(times),
                times.len()
            )?;
        }
        writeln!(
            f,
            "| every run ended, and was seen to end, after the last fault within | {} |",
            seconds(&tally.settled)
        )?;
        writeln!(
            f,
            "| files byte-identical to a calm single process | {} |",
            self.compared
        )?;
        writeln!(f, "| registry tags checked complete | {} |", self.tags)?;
        writeln!(
            f,
            "| objects in the bucket, all outputs of succeeded runs | {} |",
            self.objects
        )?;
        writeln!(
            f,
            "| files of multipart uploads left by killed replicas (the bucket's lifecycle rule reclaims them) | {} |",
            self.unfinished_uploads
        )
    }
}
