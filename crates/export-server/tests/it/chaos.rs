//! Chaos on the scale-out setup (issue 17, docs/reliability.md "Chaos"): three replicas
//! (two `all`, one `worker`) on a PostgreSQL server and an S3 bucket of the test's own,
//! with OCI distributions to a real registry, while runs are created from three tenants:
//! replicas are killed (`SIGKILL`) or stopped (`SIGTERM`, a rolling restart) every few
//! seconds and started again, the S3 server is restarted, the registry is gone for a
//! while and PostgreSQL is restarted.
//!
//! Afterwards every run has ended, `succeeded` or `failed` with a typed code (and then the
//! same request succeeds on the calm cluster), each exactly once per `Idempotency-Key`;
//! every output has the bytes a calm single process (SQLite, local files) gives for the
//! same request; every event follower saw each event once; every tag in the registry is
//! complete; the bucket holds the outputs of succeeded runs and nothing else.
//!
//! The short form is what the suite runs; `scripts/chaos` runs the long form (more runs,
//! a longer window, several rounds) through the same test with `CHAOS_*` variables:
//! `CHAOS_RUNS` (60), `CHAOS_WINDOW_SECONDS` (the span of creations and faults, 50),
//! `CHAOS_REGISTRY_OUTAGE_SECONDS` (30), `CHAOS_SEED` (random; printed).

mod checks;
mod cluster;
mod load;
mod postgres;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::checks::{Report, Tally};
use self::cluster::{Cluster, TENANTS};
use self::load::{create, follow, Followed, Wanted};

struct Settings {
    runs: usize,
    window: Duration,
    registry_outage: Duration,
    seed: u64,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|value| {
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}: not a number: {value}"))
                })
                .unwrap_or(default)
        };
        Self {
            runs: number("CHAOS_RUNS", 60) as usize,
            window: Duration::from_secs(number("CHAOS_WINDOW_SECONDS", 50)),
            registry_outage: Duration::from_secs(number("CHAOS_REGISTRY_OUTAGE_SECONDS", 30)),
            seed: number("CHAOS_SEED", rand::random()),
        }
    }
}

/// A run created under the faults: what was asked, what answered, what its events were.
pub(crate) struct Created {
    pub(crate) index: usize,
    pub(crate) wanted: Wanted,
    pub(crate) run_id: String,
    pub(crate) retries: u32,
    pub(crate) events: Followed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_postgres_and_s3_survive_kill_9_rolling_restarts_and_outages_of_what_they_use() {
    let settings = Settings::from_env();
    println!(
        "chaos: {} runs over {} s, seed {} (CHAOS_SEED={} repeats the faults' choices)",
        settings.runs,
        settings.window.as_secs(),
        settings.seed,
        settings.seed
    );
    let mut cluster = Cluster::start().await;
    let clients: HashMap<&str, Arc<export_auth::http::DpopClient>> = TENANTS
        .iter()
        .map(|tenant| (*tenant, Arc::new(cluster.client(tenant))))
        .collect();

    let began = Instant::now();
    let mut creations = Vec::new();
    for index in 0..settings.runs {
        let wanted = Wanted::nth(index, &cluster.registry.address);
        let client = clients[wanted.tenant].clone();
        let bases = cluster.api_bases.clone();
        let at = settings.window.mul_f64(0.8 * index as f64 / settings.runs as f64);
        creations.push(tokio::spawn(async move {
            tokio::time::sleep_until((began + at).into()).await;
            let key = format!("chaos-{index}");
            let (run_id, retries) = create(&client, &bases, &wanted, &key).await;
            let events = follow(client, bases, wanted.tenant, run_id.clone()).await;
            Created {
                index,
                wanted,
                run_id,
                retries,
                events,
            }
        }));
    }

    let mut tally = Tally::default();
    inject_faults(&mut cluster, &settings, began, &mut tally).await;
    tally.window = began.elapsed();

    // Every client task ends once its run's follower has seen the terminal event.
    let calm = Instant::now();
    let mut created = Vec::new();
    for creation in creations {
        created.push(creation.await.expect("a client task failed"));
    }
    tally.settled = calm.elapsed();
    let report = Report::check(&mut cluster, &clients, created, tally).await;
    println!("{report}");
}

/// The faults, until the window ends: a replica killed or stopped every 2 to 5 s and
/// started again after up to 1.5 s; the S3 server restarted once, the registry gone for
/// `registry_outage` once, PostgreSQL restarted once.
async fn inject_faults(cluster: &mut Cluster, settings: &Settings, began: Instant, tally: &mut Tally) {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let window = settings.window;
    let mut once = vec![
        (window.mul_f64(0.1), Fault::RestartS3),
        (window.mul_f64(0.2), Fault::StopRegistry),
        (
            window.mul_f64(0.2) + settings.registry_outage,
            Fault::StartRegistry,
        ),
        (window.mul_f64(0.5), Fault::RestartPostgres),
    ];
    once.sort_by_key(|(at, _)| *at);
    let mut once = once.into_iter().peekable();
    let mut next_replica = Duration::from_secs(2);
    loop {
        let (at, fault) = match once.peek() {
            Some((at, _)) if *at <= next_replica => {
                let (at, fault) = once.next().unwrap();
                (at, fault)
            }
            _ if next_replica < window => {
                let at = next_replica;
                next_replica += Duration::from_millis(rng.gen_range(2000..5000));
                let replica = rng.gen_range(0..cluster.replica_count());
                let fault = if rng.gen_bool(1.0 / 3.0) {
                    Fault::Terminate(replica)
                } else {
                    Fault::Kill(replica)
                };
                (at, fault)
            }
            _ => match once.next() {
                Some(next) => next,
                None => return,
            },
        };
        tokio::time::sleep_until((began + at).into()).await;
        let start = Instant::now();
        match fault {
            Fault::Kill(replica) => {
                cluster.kill(replica);
                tally.kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
                cluster.restart(replica).await;
            }
            Fault::Terminate(replica) => {
                match cluster.terminate(replica).await {
                    Some(drained) => tally.drains.push(drained),
                    None => tally.undrained += 1,
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
                cluster.restart(replica).await;
            }
            Fault::RestartS3 => cluster.s3.restart(Duration::from_secs(2)),
            Fault::StopRegistry => {
                cluster.registry.stop();
                tally.registry_down = Some(start);
                println!("chaos: {:>6.1} s {fault:?}", at.as_secs_f64());
                continue;
            }
            Fault::StartRegistry => {
                cluster.registry.start_again();
                tally.registry_outage = tally.registry_down.map(|down| down.elapsed());
                println!("chaos: {:>6.1} s {fault:?}", at.as_secs_f64());
                continue;
            }
            Fault::RestartPostgres => cluster.postgres.restart(),
        }
        let recovered = cluster.wait_until_ready(start).await;
        tally.recoveries.entry(fault.kind()).or_default().push(recovered);
        println!(
            "chaos: {:>6.1} s {fault:?}, ready again after {:.1} s",
            at.as_secs_f64(),
            recovered.as_secs_f64()
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(usize),
    Terminate(usize),
    RestartS3,
    StopRegistry,
    StartRegistry,
    RestartPostgres,
}

impl Fault {
    fn kind(self) -> &'static str {
        match self {
            Fault::Kill(_) => "replica killed (SIGKILL)",
            Fault::Terminate(_) => "replica stopped (SIGTERM)",
            Fault::RestartS3 => "S3 server restarted",
            Fault::StopRegistry | Fault::StartRegistry => "registry outage",
            Fault::RestartPostgres => "PostgreSQL restarted",
        }
    }
}
