//! `soak`: a started server under steady, mixed load for a fixed time (issue 17, point 3;
//! run by `scripts/soak`, results in docs/reliability.md "Soak").
//!
//! Concurrently, until `--minutes` have passed:
//! - **steady load**: `--rate` authenticated GETs per second (a fresh DPoP proof each, the
//!   project's `DpopClient`), in turn the runs list, the newest run's status, the profiles
//!   and the succeeded runs; each is sent on its tick whatever the others do (open loop,
//!   at most `--max-in-flight` at once; a tick that finds them all busy is counted as
//!   skipped);
//! - **runs created continuously**: one every `--run-interval` seconds, each with an
//!   `Idempotency-Key`; every `--replay-every`-th is sent twice and the second answer must
//!   be the first one replayed (`Idempotent-Replayed: true`, the same run). Each run is
//!   followed to its end and must succeed; every `--download-every`-th run's outputs are
//!   downloaded in turn through their signed URLs, and must have the size and SHA-256 the
//!   status gives;
//! - **SSE subscribers** (`--subscribers`) that join the newest run's event stream, read it
//!   for a random while (`--dwell-ms`) or a random number of events (1 to 6), leave, and rejoin with `Last-Event-ID` until the
//!   terminal event: the ids seen must be 1, 2, 3 … without a gap or a repeat.
//!
//! Every `--sample-seconds` it samples the server process (`--server-pid`): resident memory
//! (`VmRSS`), open file descriptors (`/proc/<pid>/fd`), threads and CPU, and the latency of
//! the GETs that ended in that window (p50, p99, max).
//!
//! The verdict (`rules` in the JSON): no failure of any kind (a non-2xx answer, a transport
//! error, a missed or repeated event, a run that failed or did not end, a bad download, a
//! broken replay) and, with the first quarter of the time taken as warm-up,
//! - memory and descriptors flat: the mean of the last quarter's samples is at most
//!   `tolerance` above the mean of the second quarter's, and the least-squares slope over
//!   the last half, times the length of that half, is at most `tolerance` too (RSS:
//!   `max(--rss-tolerance-mib, --rss-tolerance-pct of the second quarter's mean)`;
//!   descriptors: `--fd-tolerance`);
//! - p99 stable: no more than `--p99-outliers-pct` of the windows after the warm-up have a
//!   p99 above `max(--p99-factor × the median window p99, --p99-floor-ms)`, and the median
//!   window p99 of the last quarter is at most `max(2 × that of the second quarter,
//!   --p99-floor-ms)`.
//!
//! It prints a Markdown table of the samples and the verdict, saves everything as JSON
//! (`--json-out`), and exits 0 when the soak passed, 2 when it failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use export_auth::http::DpopClient;
use export_bench::client::{self, Credentials, TENANT_HEADER};
use export_bench::event_stream::{self, EventStream, Refused};
use export_bench::stats::{self, ProcSample};
use hdrhistogram::Histogram;
use http::Method;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

mod load;
mod verdict;

use load::*;
use verdict::*;

#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Steady mixed load on a started server, its memory, descriptors and latency sampled"
)]
struct Args {
    /// The server, e.g. http://127.0.0.1:18080 (an IP address, not a name).
    #[arg(long)]
    base_url: String,
    #[arg(long, default_value = "tenant-default")]
    tenant: String,
    /// The JSON printed by `export-center token` (its scopes must include export:write).
    #[arg(long)]
    token_file: PathBuf,
    /// The profile of the runs created (a small one, so each run ends quickly).
    #[arg(long, default_value = "export-profile::tenant-default::default")]
    profile_id: String,
    /// The server process, sampled.
    #[arg(long)]
    server_pid: u32,
    /// How long the load lasts.
    #[arg(long, default_value_t = 20.0)]
    minutes: f64,
    /// Authenticated GETs per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Seconds between run creations.
    #[arg(long, default_value_t = 5.0)]
    run_interval: f64,
    /// Every n-th creation is sent a second time with the same Idempotency-Key.
    #[arg(long, default_value_t = 4)]
    replay_every: u64,
    /// Every n-th run has one of its outputs downloaded.
    #[arg(long, default_value_t = 3)]
    download_every: u64,
    /// Seconds a run may take before it counts as stuck.
    #[arg(long, default_value_t = 300)]
    run_timeout: u64,
    #[arg(long, default_value_t = 4)]
    subscribers: usize,
    /// How long a subscriber reads before it leaves and rejoins, drawn at random from
    /// this range of milliseconds.
    #[arg(long, default_value = "20..400")]
    dwell_ms: String,
    #[arg(long, default_value_t = 10)]
    sample_seconds: u64,
    #[arg(long, default_value_t = 4.0)]
    rss_tolerance_mib: f64,
    #[arg(long, default_value_t = 5.0)]
    rss_tolerance_pct: f64,
    #[arg(long, default_value_t = 8.0)]
    fd_tolerance: f64,
    #[arg(long, default_value_t = 3.0)]
    p99_factor: f64,
    #[arg(long, default_value_t = 50.0)]
    p99_floor_ms: f64,
    #[arg(long, default_value_t = 5.0)]
    p99_outliers_pct: f64,
    /// Print every n-th sample in the table (the JSON has them all).
    #[arg(long, default_value_t = 1)]
    table_every: usize,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// What every task shares: the clients, the counters and the failures.
struct Shared {
    base_url: String,
    api: DpopClient,
    plain: reqwest::Client,
    credentials: Credentials,
    server: SocketAddr,
    tenant: http::HeaderValue,
    stop: AtomicBool,
    /// Latency of the steady GETs that ended in the current window, µs.
    window: Mutex<Histogram<u64>>,
    requests: AtomicU64,
    skipped: AtomicU64,
    /// The runs created, oldest first.
    runs: Mutex<Vec<String>>,
    created: AtomicU64,
    succeeded: AtomicU64,
    replays: AtomicU64,
    downloads: AtomicU64,
    sse_joins: AtomicU64,
    sse_rejoins: AtomicU64,
    sse_events: AtomicU64,
    sse_runs: AtomicU64,
    /// `use_dpop_nonce` challenges of stream requests, answered (expected, not failures).
    nonce_challenges: AtomicU64,
    /// Failures by kind, and the first few in full.
    failures: Mutex<BTreeMap<&'static str, u64>>,
    examples: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, kind: &'static str, detail: impl std::fmt::Display) {
        *lock(&self.failures).entry(kind).or_default() += 1;
        let mut examples = lock(&self.examples);
        if examples.len() < 20 {
            let line = format!("{kind}: {detail}");
            eprintln!("soak: FAILURE {line}");
            examples.push(line);
        }
    }

    fn failure_count(&self) -> u64 {
        lock(&self.failures).values().sum()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// An authenticated request with the tenant header; the status and the whole body.
    async fn call(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, reqwest::header::HeaderMap, bytes::Bytes)> {
        let response = self
            .api
            .send(method, url, |request| {
                build(request.header(TENANT_HEADER, self.tenant.clone()))
            })
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok((status, headers, body))
    }

    /// GET of a JSON document that must answer 200.
    async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let (status, _, body) = self.call(Method::GET, url, |request| request).await?;
        if status != reqwest::StatusCode::OK {
            bail!("GET {url}: {status}: {}", excerpt(&body));
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// One sample of the server and of the window that ended with it.
#[derive(Debug, Clone, Default)]
struct Sample {
    seconds: f64,
    rss_mib: f64,
    fds: f64,
    threads: u64,
    cpu_cores: f64,
    load1: f64,
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    failures: u64,
    created: u64,
    succeeded: u64,
    sse_joins: u64,
    sse_rejoins: u64,
}

impl Sample {
    fn to_json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "rssMiB": round(self.rss_mib, 1),
            "fds": self.fds,
            "threads": self.threads,
            "cpuCores": round(self.cpu_cores, 2),
            "loadAverage1m": self.load1,
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50Ms": round(self.p50_ms, 2),
            "p99Ms": round(self.p99_ms, 2),
            "maxMs": round(self.max_ms, 2),
            "failures": self.failures,
            "runsCreated": self.created,
            "runsSucceeded": self.succeeded,
            "sseJoins": self.sse_joins,
            "sseRejoins": self.sse_rejoins,
        })
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("soak: starting the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("soak: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dwell = parse_range(&args.dwell_ms)?;
    let credentials = Credentials::from_token_json(&args.token_file, &args.tenant)?;
    export_egress::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("the HTTP client")?;
    let base_url = args.base_url.trim_end_matches('/').to_owned();
    let shared = Arc::new(Shared {
        api: credentials
            .dpop_client(http.clone())
            .ok_or_else(|| anyhow!("the token file has no token"))?,
        plain: http,
        server: client::socket_addr(&base_url)?,
        tenant: credentials.tenant().clone(),
        credentials,
        base_url,
        stop: AtomicBool::new(false),
        window: Mutex::new(stats::new_histogram()),
        requests: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        runs: Mutex::new(Vec::new()),
        created: AtomicU64::new(0),
        succeeded: AtomicU64::new(0),
        replays: AtomicU64::new(0),
        downloads: AtomicU64::new(0),
        sse_joins: AtomicU64::new(0),
        sse_rejoins: AtomicU64::new(0),
        sse_events: AtomicU64::new(0),
        sse_runs: AtomicU64::new(0),
        nonce_challenges: AtomicU64::new(0),
        failures: Mutex::new(BTreeMap::new()),
        examples: Mutex::new(Vec::new()),
    });
    // The profile must be there before the clock starts.
    shared
        .get_json(&format!("{}/export-center/profiles", shared.base_url))
        .await
        .context("the first request")?;

    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let pid = args.server_pid.to_string();
    eprintln!(
        "soak: {:.1} min against {} (pid {pid}): {} GET/s, a run every {} s, {} SSE subscribers",
        args.minutes, shared.base_url, args.rate, args.run_interval, args.subscribers
    );
    let load = tokio::spawn(steady_load(shared.clone(), args.rate, args.max_in_flight));
    let creator = tokio::spawn(create_runs(
        shared.clone(),
        args.profile_id.clone(),
        Duration::from_secs_f64(args.run_interval),
        args.replay_every.max(1),
        args.download_every.max(1),
        Duration::from_secs(args.run_timeout),
    ));
    let mut subscribers = JoinSet::new();
    for _ in 0..args.subscribers {
        subscribers.spawn(subscriber(
            shared.clone(),
            dwell.clone(),
            Duration::from_secs(args.run_timeout),
        ));
    }

    // Sampling, until the time is up.
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut previous = ProcSample::read(&pid)?;
    let mut previous_requests = 0;
    samples.push(sample(&shared, &pid, 0.0, &previous, &previous, 0, 0.0)?);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(args.sample_seconds),
        Duration::from_secs(args.sample_seconds),
    );
    let mut last_at = started;
    while started.elapsed() + Duration::from_millis(500) < duration {
        tick.tick().await;
        let now = ProcSample::read(&pid).context("the server is gone")?;
        let requests = shared.requests.load(Ordering::Relaxed);
        let elapsed = last_at.elapsed().as_secs_f64();
        last_at = Instant::now();
        let s = sample(
            &shared,
            &pid,
            started.elapsed().as_secs_f64().round(),
            &now,
            &previous,
            requests - previous_requests,
            elapsed,
        )?;
        eprintln!(
            "soak: {:>5.0} s  RSS {:>6.1} MiB  fds {:>4}  {:>5.1} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  runs {}/{}  SSE joins {}  failures {}",
            s.seconds, s.rss_mib, s.fds, s.rps, s.p50_ms, s.p99_ms, s.succeeded, s.created, s.sse_joins, s.failures
        );
        samples.push(s);
        previous = now;
        previous_requests = requests;
    }

    // Drain: no new work; runs under way end, subscribers follow theirs to the end.
    shared.stop.store(true, Ordering::Relaxed);
    eprintln!("soak: time is up; waiting for the runs and streams under way");
    let grace = Duration::from_secs(args.run_timeout + 30);
    load.await.context("load task")?;
    if tokio::time::timeout(grace, creator).await.is_err() {
        shared.fail("drain", "runs still being followed after the grace period");
    }
    if tokio::time::timeout(grace, async { while subscribers.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        shared.fail("drain", "subscribers still following runs after the grace period");
    }
    let after = ProcSample::read(&pid)?;
    let after_fds = stats::open_fds(&pid)?;

    let limits = Limits {
        rss_mib: args.rss_tolerance_mib,
        rss_pct: args.rss_tolerance_pct,
        fds: args.fd_tolerance,
        p99_factor: args.p99_factor,
        p99_floor_ms: args.p99_floor_ms,
        p99_outliers_pct: args.p99_outliers_pct,
    };
    let seconds = duration.as_secs_f64();
    let failures = lock(&shared.failures).clone();
    let mut checks = verdict(&samples, seconds, args.sample_seconds as f64, &limits);
    checks.insert(
        0,
        Check {
            name: "no failures",
            pass: failures.is_empty(),
            detail: if failures.is_empty() {
                "none".into()
            } else {
                format!("{failures:?}")
            },
        },
    );
    let counts = json!({
        "requests": shared.requests.load(Ordering::Relaxed),
        "skippedTicks": shared.skipped.load(Ordering::Relaxed),
        "runsCreated": shared.created.load(Ordering::Relaxed),
        "runsSucceeded": shared.succeeded.load(Ordering::Relaxed),
        "idempotentReplays": shared.replays.load(Ordering::Relaxed),
        "downloads": shared.downloads.load(Ordering::Relaxed),
        "sseJoins": shared.sse_joins.load(Ordering::Relaxed),
        "sseRejoins": shared.sse_rejoins.load(Ordering::Relaxed),
        "sseEvents": shared.sse_events.load(Ordering::Relaxed),
        "sseRunsFollowed": shared.sse_runs.load(Ordering::Relaxed),
        "sseNonceChallenges": shared.nonce_challenges.load(Ordering::Relaxed),
    });
    let activity = [
        ("runsSucceeded", 1),
        ("sseRunsFollowed", 1),
        ("sseRejoins", 1),
        ("idempotentReplays", 1),
        ("downloads", 1),
    ];
    let idle: Vec<&str> = activity
        .iter()
        .filter(|(name, least)| counts[*name].as_u64().unwrap_or_default() < *least)
        .map(|(name, _)| *name)
        .collect();
    checks.insert(
        1,
        Check {
            name: "everything exercised",
            pass: idle.is_empty(),
            detail: if idle.is_empty() {
                "runs, replays, downloads, SSE joins and rejoins".into()
            } else {
                format!("none of: {}", idle.join(", "))
            },
        },
    );
    let pass = checks.iter().all(|check| check.pass);

    print_table(&samples, args.table_every.max(1));
    println!("\n{}\n", serde_json::to_string(&counts)?);
    println!("| check | result | detail |\n| --- | --- | --- |");
    for check in &checks {
        println!(
            "| {} | {} | {} |",
            check.name,
            if check.pass { "pass" } else { "FAIL" },
            check.detail
        );
    }
    println!(
        "\nAfter the drain: RSS {:.1} MiB, {after_fds} fds, peak RSS (VmHWM) {:.1} MiB.",
        after.rss_kib as f64 / 1024.0,
        after.peak_rss_kib as f64 / 1024.0
    );
    println!("\nVerdict: {}", if pass { "PASS" } else { "FAIL" });

    if let Some(path) = &args.json_out {
        let result = json!({
            "benchmark": "soak",
            "label": args.label,
            "verdict": if pass { "pass" } else { "fail" },
            "settings": {
                "minutes": args.minutes,
                "rate": args.rate,
                "runInterval": args.run_interval,
                "replayEvery": args.replay_every,
                "downloadEvery": args.download_every,
                "subscribers": args.subscribers,
                "dwellMs": args.dwell_ms,
                "sampleSeconds": args.sample_seconds,
                "profileId": args.profile_id,
            },
            "rules": {
                "warmUp": "the first quarter of the time",
                "flat": "mean(last quarter) - mean(second quarter) <= tolerance, and the least-squares slope over the last half times its length <= tolerance",
                "rssToleranceMiB": args.rss_tolerance_mib,
                "rssTolerancePct": args.rss_tolerance_pct,
                "fdTolerance": args.fd_tolerance,
                "p99": "windows after the warm-up above max(factor x median window p99, floor) at most outliersPct of them; median p99 of the last quarter <= max(2 x that of the second quarter, floor)",
                "p99Factor": args.p99_factor,
                "p99FloorMs": args.p99_floor_ms,
                "p99OutliersPct": args.p99_outliers_pct,
            },
            "checks": checks.iter().map(|c| json!({"name": c.name, "pass": c.pass, "detail": c.detail})).collect::<Vec<_>>(),
            "counts": counts,
            "failures": failures,
            "failureExamples": lock(&shared.examples).clone(),
            "afterDrain": {
                "rssMiB": round(after.rss_kib as f64 / 1024.0, 1),
                "fds": after_fds,
                "vmHwmMiB": round(after.peak_rss_kib as f64 / 1024.0, 1),
            },
            "samples": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(path, format!("{result:#}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn parse_range(text: &str) -> anyhow::Result<std::ops::Range<u64>> {
    let (low, high) = text
        .split_once("..")
        .ok_or_else(|| anyhow!("--dwell-ms: expected LOW..HIGH, got {text}"))?;
    let (low, high): (u64, u64) = (low.trim().parse()?, high.trim().parse()?);
    if low >= high {
        bail!("--dwell-ms: {low} is not below {high}");
    }
    Ok(low..high)
}

/// Reads the server and the window histogram (which starts afresh).
fn sample(
    shared: &Shared,
    pid: &str,
    seconds: f64,
    now: &ProcSample,
    previous: &ProcSample,
    requests: u64,
    window_seconds: f64,
) -> anyhow::Result<Sample> {
    let histogram = std::mem::replace(&mut *lock(&shared.window), stats::new_histogram());
    let ms = |micros: u64| micros as f64 / 1000.0;
    let (p50_ms, p99_ms, max_ms) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max()),
        )
    };
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or_default();
    Ok(Sample {
        seconds,
        rss_mib: now.rss_kib as f64 / 1024.0,
        fds: stats::open_fds(pid)? as f64,
        threads: now.threads,
        cpu_cores: now.cores_since(previous),
        load1,
        requests,
        rps: if window_seconds > 0.0 {
            requests as f64 / window_seconds
        } else {
            0.0
        },
        p50_ms,
        p99_ms,
        max_ms,
        failures: shared.failure_count(),
        created: shared.created.load(Ordering::Relaxed),
        succeeded: shared.succeeded.load(Ordering::Relaxed),
        sse_joins: shared.sse_joins.load(Ordering::Relaxed),
        sse_rejoins: shared.sse_rejoins.load(Ordering::Relaxed),
    })
}

fn print_table(samples: &[Sample], every: usize) {
    println!(
        "| time | RSS MiB | fds | threads | server CPU | load 1 min | req/s | p50 ms | p99 ms | max ms | runs created / succeeded | SSE joins (rejoins) | failures |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let last = samples.len().saturating_sub(1);
    for (index, s) in samples.iter().enumerate() {
        if !index.is_multiple_of(every) && index != last {
            continue;
        }
        let total = s.seconds as u64;
        println!(
            "| {}:{:02} | {:.1} | {} | {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {} / {} | {} ({}) | {} |",
            total / 60,
            total % 60,
            s.rss_mib,
            s.fds,
            s.threads,
            s.cpu_cores,
            s.load1,
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.created,
            s.succeeded,
            s.sse_joins,
            s.sse_rejoins,
            s.failures
        );
    }
}
