//! `bench-sse`: SSE fan-out to many subscribers of one run (issue 4).
//!
//! Opens `--subscribers` HTTP/1.1 connections to `GET /export-center/runs/{runId}/events`
//! (one token, a fresh DPoP proof per connection, source addresses spread over
//! `--source-ips` loopback addresses), waits until every stream has sent its first bytes,
//! writes `--ready-file` (the script then starts the worker that executes the run), and
//! records the wall-clock arrival time of every event at every subscriber; each reads its
//! stream until the server ends it after the terminal event (or, `--close-on-terminal`,
//! closes on the terminal event). Each subscriber is one task reading its socket through
//! `export_bench::event_stream`, so that the generator takes as little as it can of the
//! CPU it shares with the server.
//!
//! Two delays are reported:
//! - *spread*: for each event id, arrival at a subscriber minus the earliest arrival of
//!   that id at any subscriber. It needs no server clock, and is a lower bound of the
//!   commit-to-delivery delay (it leaves out the time to the first subscriber).
//! - *commit to arrival*: arrival minus the event row's `created_at` in SQLite (`--db`,
//!   read with the `sqlite3` tool after the run), for every subscriber and for subscriber
//!   0 alone. `created_at` is taken just before the row's transaction begins, so this is
//!   an upper bound by the length of that transaction.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use export_bench::client::{self, Credentials};
use export_bench::event_stream::{self, EventStream};
use export_bench::stats::{self, MachineSample, ProcSample};
use export_core::RunId;
use http::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
#[command(
    name = "bench-sse",
    about = "SSE fan-out: many subscribers to one run's event stream"
)]
struct Args {
    /// The API server, e.g. http://127.0.0.1:18081 (an IP address, not a name).
    #[arg(long)]
    base_url: String,
    #[arg(long, default_value = "tenant-default")]
    tenant: String,
    /// The JSON printed by `export-center token` (ES256 proof key).
    #[arg(long, conflicts_with = "data_dir")]
    token_file: Option<PathBuf>,
    /// Or the server's data directory, to mint a token from its dev issuer key.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Proof key algorithm when minting: es256 or eddsa.
    #[arg(long, default_value = "es256")]
    alg: String,
    /// The run to follow; without it, a run of --profile-id is created (it stays queued
    /// while no worker runs).
    #[arg(long)]
    run_id: Option<String>,
    #[arg(long, default_value = "export-profile::tenant-default::default")]
    profile_id: String,
    /// Create the run through this server (default: --base-url), e.g. an API-only process
    /// on the same database, so that no worker of the streaming process is woken by it.
    #[arg(long)]
    create_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Spread the client side over 127.0.0.1 … 127.0.0.N.
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// Written (with the number of streams held) once every subscriber is connected.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The server's SQLite database, for the events' `created_at` (used as the commit time
    /// only if it has sub-second precision).
    #[arg(long)]
    db: Option<PathBuf>,
    /// The JSON log of the process that executed the run, written with
    /// `RUST_LOG=info,sqlx::query[run]=debug` and `logging.format = "json"`: the n-th
    /// `INSERT INTO run_events` of the run's span is event n, and its timestamp (taken when
    /// the statement has run, just before its commit) is the event's commit time.
    #[arg(long)]
    commit_log: Option<PathBuf>,
    /// Poll the run's event rows in --db every this many milliseconds, from before the
    /// run starts until it ends, to see when each event was committed (0: no polling).
    #[arg(long, default_value_t = 2)]
    watch_ms: u64,
    /// Once every subscriber is connected, create a run through this server and cancel it
    /// at once: it wakes an idle worker of a `serve --role all` process (started with a long
    /// `workers.poll_interval_ms`), which then claims the oldest queued run, the one followed.
    #[arg(long)]
    kick: bool,
    /// Each subscriber closes its connection as soon as it has the terminal event, as
    /// `exportctl` does, instead of reading its stream until the server ends it (as a
    /// browser's `EventSource` and any SSE reader that does not know which events are
    /// terminal do). Supplementary: on one machine the subscribers' own teardown of
    /// 10,000 connections then shares the server's cores while the terminal event is
    /// still being sent.
    #[arg(long)]
    close_on_terminal: bool,
    /// Keep each stream's connection open after its terminal event until every
    /// connected subscriber has seen its own, then close them all. Supplementary: it
    /// takes the teardown of 10,000 connections out of the terminal event's delivery.
    #[arg(long, conflicts_with = "close_on_terminal")]
    hold: bool,
    /// The API server process, for its memory and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to wait for every subscriber to see the end of the run.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The client's async worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    /// (event id, arrival in µs since the epoch)
    arrivals: Vec<(i64, i64)>,
    /// Event names by id (kept by subscriber 0 only).
    names: BTreeMap<i64, String>,
    terminal: bool,
    error: Option<String>,
}

struct Shared {
    url: String,
    credentials: Credentials,
    server: std::net::SocketAddr,
    source_ips: u8,
    connecting: Semaphore,
    connected: AtomicUsize,
    settled: AtomicUsize,
    open: AtomicUsize,
    /// Subscribers that have seen the terminal event.
    ended: AtomicUsize,
    /// With `--hold`: set once every connected subscriber has seen the terminal event.
    all_ended: tokio::sync::watch::Sender<bool>,
    hold: bool,
    close_on_terminal: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench-sse: starting the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bench-sse: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let credentials = match (&args.token_file, &args.data_dir) {
        (Some(path), _) => Credentials::from_token_json(path, &args.tenant)?,
        (None, Some(dir)) => Credentials::mint(
            dir,
            &args.tenant,
            client::parse_alg(&args.alg)?,
            Duration::from_secs(3600),
        )?,
        (None, None) => bail!("--token-file or --data-dir is needed"),
    };
    let base_url = args.base_url.trim_end_matches('/').to_owned();
    let run_id = match &args.run_id {
        Some(run_id) => run_id.clone(),
        None => {
            let create_url = args
                .create_url
                .as_deref()
                .unwrap_or(&base_url)
                .trim_end_matches('/');
            client::create_run(&credentials, create_url, &args.profile_id).await?
        }
    };
    let run = client::get_run(&credentials, &base_url, &run_id).await?;
    eprintln!(
        "bench-sse: run {run_id} is {}; opening {} streams ({} at a time, from {} source addresses)",
        run["status"], args.subscribers, args.connect_concurrency, args.source_ips
    );
    if run["status"] != "queued" {
        bail!(
            "the run must still be queued (start the API server alone): it is {}",
            run["status"]
        );
    }
    let shared = Arc::new(Shared {
        url: format!("{base_url}/export-center/runs/{run_id}/events"),
        credentials,
        server: client::socket_addr(&base_url)?,
        source_ips: args.source_ips.max(1),
        connecting: Semaphore::new(args.connect_concurrency.max(1)),
        connected: AtomicUsize::new(0),
        settled: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        all_ended: tokio::sync::watch::Sender::new(false),
        hold: args.hold,
        close_on_terminal: args.close_on_terminal,
    });
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let read_server = || server_pid.as_deref().map(ProcSample::read).transpose();

    let server_before = read_server()?;
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.subscribers);
    for index in 0..args.subscribers {
        tasks.push(tokio::spawn(subscriber(index, shared.clone())));
    }
    // Everyone connected (or failed).
    while shared.settled.load(Ordering::Relaxed) < args.subscribers {
        if connect_started.elapsed() > Duration::from_secs(args.timeout) {
            bail!("subscribers still connecting after {} s", args.timeout);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let held_at_ready = shared.open.load(Ordering::Relaxed);
    let server_ready = read_server()?;
    let client_ready = ProcSample::read("self")?;
    let machine_ready = MachineSample::read()?;
    eprintln!(
        "bench-sse: {held_at_ready} of {} streams open after {connect_seconds:.1} s; server {}",
        args.subscribers,
        server_ready
            .as_ref()
            .map(|s| format!("RSS {:.0} MiB", s.rss_kib as f64 / 1024.0))
            .unwrap_or_default()
    );
    let watch_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = match (&args.db, args.watch_ms) {
        (Some(db), ms) if ms > 0 => Some(watch_commits(
            db.clone(),
            RunId::parse(&run_id).map_err(|err| anyhow!("run id: {err}"))?,
            Duration::from_millis(ms),
            watch_stop.clone(),
        )),
        _ => None,
    };
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{held_at_ready}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.kick {
        let kick = client::create_run(&shared.credentials, &base_url, &args.profile_id).await?;
        let url = format!("{base_url}/export-center/runs/{kick}/cancel");
        let (status, _) = client::one_shot(&shared.credentials, Method::POST, &url, None).await?;
        eprintln!("bench-sse: woke the worker with run {kick} (then cancelled it: {status})");
    }

    // Sample the server's memory until the end, for its peak while streaming.
    let sampler = {
        let server_pid = server_pid.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut peak_rss = 0u64;
            let mut min_open = usize::MAX;
            loop {
                if let Some(pid) = &server_pid {
                    if let Ok(sample) = ProcSample::read(pid) {
                        peak_rss = peak_rss.max(sample.rss_kib);
                    }
                }
                // Streams held while the run streams, until the first subscriber is done.
                if shared.ended.load(Ordering::Relaxed) == 0 {
                    min_open = min_open.min(shared.open.load(Ordering::Relaxed));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if shared.open.load(Ordering::Relaxed) == 0 {
                    return (peak_rss, min_open);
                }
            }
        })
    };

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut seen = Vec::with_capacity(args.subscribers);
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(result) => seen.push(result.context("subscriber panicked")?),
            Err(_) => bail!("subscribers still streaming after {} s", args.timeout),
        }
    }
    let server_end = read_server()?;
    let client_end = ProcSample::read("self")?;
    let machine_end = MachineSample::read()?;
    let (peak_rss_sampled, min_open) = sampler.await.context("sampler")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    watch_stop.store(true, Ordering::Relaxed);
    let observed = match watcher {
        Some(handle) => Some(
            handle
                .join()
                .map_err(|_| anyhow!("the database watcher panicked"))??,
        ),
        None => None,
    };
    let report = analyse(
        &args,
        &run_id,
        &seen,
        shared.connected.load(Ordering::Relaxed),
        observed,
    )?;
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    let server_json = match (&server_before, &server_ready, &server_end) {
        (Some(before), Some(ready), Some(end)) => json!({
            "rssBeforeMiB": mib(before.rss_kib),
            "rssConnectedMiB": mib(ready.rss_kib),
            "rssPeakSampledMiB": mib(peak_rss_sampled),
            "vmHwmMiB": mib(end.peak_rss_kib),
            "threads": end.threads,
            "connectCpuCores": (ready.cores_since(before) * 100.0).round() / 100.0,
            "streamCpuCores": (end.cores_since(ready) * 100.0).round() / 100.0,
            "streamCpuSeconds": ((end.cpu_seconds - ready.cpu_seconds) * 100.0).round() / 100.0,
        }),
        _ => json!(null),
    };
    let mut result = json!({
        "benchmark": "sse-fanout",
        "label": args.label,
        "runId": run_id,
        "subscribers": args.subscribers,
        "connectSeconds": (connect_seconds * 10.0).round() / 10.0,
        "heldWhenReady": held_at_ready,
        "minOpenBeforeFirstEnd": if min_open == usize::MAX { 0 } else { min_open },
        "server": server_json,
        "client": stats::process_json(&client_end, &client_ready),
        "machineBusyCores": (machine_end.busy_cores_since(&machine_ready, cores) * 100.0).round() / 100.0,
        "cores": cores,
    });
    if let Value::Object(fields) = &mut result {
        fields.extend(report);
    }
    println!("{result}");
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{result:#}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let complete = result["completeSubscribers"].as_u64().unwrap_or_default() as usize;
    Ok(if complete == args.subscribers {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench-sse: only {complete} of {} subscribers saw every event",
            args.subscribers
        );
        ExitCode::from(2)
    })
}

/// One subscriber: connects, then records every event until the terminal one.
async fn subscriber(index: usize, shared: Arc<Shared>) -> Seen {
    let mut seen = Seen::default();
    let permit = shared.connecting.acquire().await.expect("never closed");
    let local = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (index % shared.source_ips as usize) as u8,
    ));
    let opened = async {
        let proof = shared.credentials.proof("GET", &shared.url);
        let mut request = shared
            .credentials
            .request(Method::GET, &shared.url, proof.as_deref(), None)?;
        request.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        let mut stream = EventStream::open(shared.server, Some(local), &request).await?;
        // The first bytes (`retry` and a `: connected` comment) say the stream is set up.
        let mut first = Vec::with_capacity(1024);
        if !stream.read_body(&mut first).await? {
            bail!("stream closed before its first bytes");
        }
        anyhow::Ok((stream, first))
    }
    .await;
    drop(permit);
    let (mut stream, mut buffer) = match opened {
        Ok(parts) => parts,
        Err(err) => {
            seen.error = Some(format!("{err:#}"));
            shared.settled.fetch_add(1, Ordering::Relaxed);
            return seen;
        }
    };
    shared.open.fetch_add(1, Ordering::Relaxed);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    shared.settled.fetch_add(1, Ordering::Relaxed);

    let mut arrived = stats::unix_micros();
    loop {
        while let Some(message) = event_stream::next_message(&mut buffer) {
            if let Some(id) = message.id {
                seen.arrivals.push((id, arrived));
                let terminal = message.is_terminal();
                if index == 0 {
                    seen.names.insert(id, message.event.unwrap_or_default());
                }
                if terminal {
                    seen.terminal = true;
                    let ended = shared.ended.fetch_add(1, Ordering::Relaxed) + 1;
                    if ended == shared.connected.load(Ordering::Relaxed) {
                        shared.all_ended.send_replace(true);
                    }
                }
            }
        }
        if seen.terminal && (shared.close_on_terminal || shared.hold) {
            break;
        }
        match stream.read_body(&mut buffer).await {
            Ok(true) => arrived = stats::unix_micros(),
            Ok(false) => break,
            Err(err) => {
                seen.error = Some(format!("stream: {err:#}"));
                break;
            }
        }
    }
    if shared.hold && seen.terminal {
        let _ = shared.all_ended.subscribe().wait_for(|all| *all).await;
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
    seen
}

/// Completeness, spread and commit-to-arrival delays.
fn analyse(
    args: &Args,
    run_id: &str,
    seen: &[Seen],
    connected: usize,
    observed: Option<BTreeMap<i64, Observed>>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in seen {
        if let Some(error) = &s.error {
            let kind: String = error.chars().take(120).collect();
            *errors.entry(kind).or_default() += 1;
        }
    }
    let last_id = seen
        .iter()
        .flat_map(|s| s.arrivals.iter().map(|(id, _)| *id))
        .max()
        .unwrap_or_default();
    // Every id 1..=last exactly once, in order, ending with the terminal event.
    let complete = seen
        .iter()
        .filter(|s| {
            s.terminal
                && s.arrivals.len() as i64 == last_id
                && s.arrivals
                    .iter()
                    .enumerate()
                    .all(|(at, (id, _))| *id == at as i64 + 1)
        })
        .count();
    let mut earliest: BTreeMap<i64, i64> = BTreeMap::new();
    let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
    for s in seen {
        for &(id, at) in &s.arrivals {
            earliest.entry(id).and_modify(|t| *t = (*t).min(at)).or_insert(at);
            latest.entry(id).and_modify(|t| *t = (*t).max(at)).or_insert(at);
        }
    }
    let mut spread = stats::new_histogram();
    for s in seen {
        for &(id, at) in &s.arrivals {
            let _ = spread.record(((at - earliest[&id]).max(0) as u64).max(1));
        }
    }
    let mut full_delivery = stats::new_histogram();
    for (id, first) in &earliest {
        let _ = full_delivery.record(((latest[id] - first).max(0) as u64).max(1));
    }
    let names = seen.first().map(|s| s.names.clone()).unwrap_or_default();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for name in names.values() {
        *counts.entry(name.clone()).or_default() += 1;
    }
    eprintln!(
        "bench-sse: {complete} of {} subscribers saw all {last_id} events {counts:?}",
        seen.len()
    );
    eprintln!(
        "bench-sse: spread after the earliest arrival:  {}",
        stats::summary_line(&spread)
    );
    eprintln!(
        "bench-sse: first to last subscriber, per event: {}",
        stats::summary_line(&full_delivery)
    );

    let mut report = serde_json::Map::new();
    report.insert("connected".into(), json!(connected));
    report.insert("completeSubscribers".into(), json!(complete));
    report.insert("errors".into(), json!(errors));
    report.insert("events".into(), json!(last_id));
    report.insert("eventCounts".into(), json!(counts));
    report.insert("deliveries".into(), json!(spread.len()));
    report.insert("spread".into(), stats::summary(&spread));
    report.insert("firstToLastPerEvent".into(), stats::summary(&full_delivery));

    if let Some(db) = &args.db {
        let created = created_at(db, run_id)?;
        let subsecond = created.values().any(|at| at % 1_000_000 != 0);
        report.insert("createdAtRows".into(), json!(created.len()));
        report.insert("createdAtSubsecond".into(), json!(subsecond));
        if subsecond {
            let delays = commit_delays("run_events.created_at", &created, seen, &names, &earliest)?;
            report.insert("commitToArrivalCreatedAt".into(), delays);
        } else {
            eprintln!(
                "bench-sse: run_events.created_at holds whole seconds only ({} rows): not usable as commit times",
                created.len()
            );
        }
    }
    if let Some(observed) = observed {
        if observed.len() as i64 != last_id {
            bail!(
                "the database watcher saw {} events, the subscribers {last_id}",
                observed.len()
            );
        }
        // The commit happened after the last poll that did not see the row started: the
        // delay from there is an upper bound of the true commit-to-arrival delay.
        let upper: BTreeMap<i64, i64> = observed.iter().map(|(id, o)| (*id, o.not_before)).collect();
        let mut bracket = stats::new_histogram();
        for o in observed.values() {
            let _ = bracket.record(((o.seen_by - o.not_before).max(0) as u64).max(1));
        }
        eprintln!(
            "bench-sse: commit bracket (database watcher; delays are upper bounds by this much): {}",
            stats::summary_line(&bracket)
        );
        let delays = commit_delays("database watcher", &upper, seen, &names, &earliest)?;
        report.insert("commitBracket".into(), stats::summary(&bracket));
        report.insert("commitToArrival".into(), delays);
    }
    if let Some(path) = &args.commit_log {
        let logged = commit_times(path)?;
        if logged.len() as i64 != last_id {
            bail!(
                "{}: {} event inserts logged for {last_id} events",
                path.display(),
                logged.len()
            );
        }
        let delays = commit_delays("worker log", &logged, seen, &names, &earliest)?;
        report.insert("commitToArrivalWorkerLog".into(), delays);
    }
    Ok(report)
}

/// The run's events' `created_at`, µs since the epoch, by event id, read with `sqlite3`.
fn created_at(db: &std::path::Path, run_id: &str) -> anyhow::Result<BTreeMap<i64, i64>> {
    let id = RunId::parse(run_id).map_err(|err| anyhow!("run id: {err}"))?;
    let sql = format!(
        "SELECT e.seq, e.created_at FROM run_events e JOIN runs r ON r.run_key = e.run_key \
         WHERE r.tenant = '{}' AND r.day = '{}' AND r.seq = {} ORDER BY e.seq",
        id.tenant.as_str(),
        id.date.format("%Y-%m-%d"),
        id.seq
    );
    let output = std::process::Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(&sql)
        .output()
        .context("running sqlite3")?;
    if !output.status.success() {
        bail!("sqlite3: {}", String::from_utf8_lossy(&output.stderr));
    }
    let mut created = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let (seq, at) = line
            .split_once('|')
            .ok_or_else(|| anyhow!("sqlite3: unexpected line {line}"))?;
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .with_context(|| format!("created_at {at}"))?
            .timestamp_micros();
        created.insert(seq.parse::<i64>().context("seq")?, at);
    }
    Ok(created)
}

/// The timestamps of the run's `INSERT INTO run_events` statements in a JSON log, µs since
/// the epoch, numbered 1, 2, 3 … in log order.
fn commit_times(path: &std::path::Path) -> anyhow::Result<BTreeMap<i64, i64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut commits = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let statement = entry["db.statement"]
            .as_str()
            .or_else(|| entry["fields"]["db.statement"].as_str())
            .or_else(|| entry["summary"].as_str())
            .or_else(|| entry["fields"]["summary"].as_str())
            .unwrap_or_default();
        if !statement.trim_start().starts_with("INSERT INTO run_events") {
            continue;
        }
        let at = entry["timestamp"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: a log line without timestamp", path.display()))?;
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .with_context(|| format!("log timestamp {at}"))?
            .timestamp_micros();
        commits.insert(commits.len() as i64 + 1, at);
    }
    Ok(commits)
}

/// Delays from each event's commit time (`commits`, µs since the epoch, by event id) to
/// its arrival: at every subscriber, at subscriber 0, at the first subscriber, by event.
fn commit_delays(
    source: &str,
    commits: &BTreeMap<i64, i64>,
    seen: &[Seen],
    names: &BTreeMap<i64, String>,
    earliest: &BTreeMap<i64, i64>,
) -> anyhow::Result<Value> {
    let mut all = stats::new_histogram();
    let mut first_only = stats::new_histogram();
    let mut one = stats::new_histogram();
    let mut by_kind: BTreeMap<String, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    for (index, s) in seen.iter().enumerate() {
        for &(id, at) in &s.arrivals {
            let commit = commits
                .get(&id)
                .ok_or_else(|| anyhow!("{source}: no commit time for event {id}"))?;
            let delay = ((at - commit).max(0) as u64).max(1);
            let _ = all.record(delay);
            if index == 0 {
                let _ = one.record(delay);
            }
            let kind = names.get(&id).cloned().unwrap_or_default();
            let _ = by_kind
                .entry(kind)
                .or_insert_with(stats::new_histogram)
                .record(delay);
        }
    }
    for (id, first) in earliest {
        if let Some(commit) = commits.get(id) {
            let _ = first_only.record(((first - commit).max(0) as u64).max(1));
        }
    }
    let span = match (commits.values().min(), commits.values().max()) {
        (Some(first), Some(last)) => (last - first) as f64 / 1e6,
        _ => 0.0,
    };
    // Each event on its own: when it was committed (from the first commit) and how long
    // it took to reach the first, the median, the 99th percentile and the last
    // subscriber, so a slow event can be told from a slow fan-out.
    let mut per_id: BTreeMap<i64, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    for s in seen {
        for &(id, at) in &s.arrivals {
            if let Some(commit) = commits.get(&id) {
                let _ = per_id
                    .entry(id)
                    .or_insert_with(stats::new_histogram)
                    .record(((at - commit).max(0) as u64).max(1));
            }
        }
    }
    let start = commits.values().min().copied().unwrap_or_default();
    let ms = |micros: u64| (micros as f64 / 100.0).round() / 10.0;
    let mut per_event = Vec::new();
    for (id, histogram) in &per_id {
        let name = names.get(id).cloned().unwrap_or_default();
        let committed_ms = ((commits[id] - start) as f64 / 100.0).round() / 10.0;
        eprintln!(
            "bench-sse:     event {id:>3} {name:>15} committed at +{committed_ms:>7.1} ms: arrival first {} / p50 {} / p99 {} / last {} ms",
            ms(histogram.min()),
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.max())
        );
        per_event.push(json!({
            "id": id,
            "event": name,
            "committedMs": committed_ms,
            "firstMs": ms(histogram.min()),
            "p50Ms": ms(histogram.value_at_quantile(0.5)),
            "p99Ms": ms(histogram.value_at_quantile(0.99)),
            "lastMs": ms(histogram.max()),
        }));
    }
    eprintln!("bench-sse: commit times from the {source}; the run's events span {span:.1} s");
    eprintln!(
        "bench-sse:   commit to arrival, every subscriber: {}",
        stats::summary_line(&all)
    );
    eprintln!(
        "bench-sse:   commit to arrival, subscriber 0:     {}",
        stats::summary_line(&one)
    );
    eprintln!(
        "bench-sse:   commit to the first arrival:        {}",
        stats::summary_line(&first_only)
    );
    for (kind, histogram) in &by_kind {
        eprintln!("bench-sse:     {kind:>15}: {}", stats::summary_line(histogram));
    }
    let mut report = stats::summary(&all);
    report["source"] = json!(source);
    report["eventsSpanSeconds"] = json!((span * 10.0).round() / 10.0);
    report["subscriber0"] = stats::summary(&one);
    report["perEvent"] = json!(per_event);
    report["firstArrival"] = stats::summary(&first_only);
    report["byEvent"] = by_kind
        .iter()
        .map(|(kind, histogram)| (kind.clone(), stats::summary(histogram)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Ok(report)
}

/// When the database watcher first saw an event row.
#[derive(Debug, Clone, Copy)]
struct Observed {
    /// The start of the last poll that did not see it (µs since the epoch): the row was
    /// committed after this.
    not_before: i64,
    /// The end of the first poll that saw it: the row was committed before this.
    seen_by: i64,
}

/// Polls the run's event rows every `interval` on a thread of its own (so that the
/// subscribers' work does not delay it) until `stop`; when each row was first seen.
fn watch_commits(
    db: PathBuf,
    run_id: RunId,
    interval: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<BTreeMap<i64, Observed>>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db)
                .read_only(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .with_context(|| format!("opening {}", db.display()))?;
            let date = run_id.date.format("%Y-%m-%d").to_string();
            let mut observed = BTreeMap::new();
            let mut last = 0i64;
            let mut previous_start = stats::unix_micros();
            while !stop.load(Ordering::Relaxed) {
                let start = stats::unix_micros();
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT e.seq FROM run_events e JOIN runs r ON r.run_key = e.run_key \
                     WHERE r.tenant = ? AND r.day = ? AND r.seq = ? AND e.seq > ? ORDER BY e.seq",
                )
                .bind(run_id.tenant.as_str())
                .bind(&date)
                .bind(i64::from(run_id.seq))
                .bind(last)
                .fetch_all(&pool)
                .await
                .context("polling run_events")?;
                let end = stats::unix_micros();
                for (seq,) in rows {
                    last = last.max(seq);
                    observed.insert(
                        seq,
                        Observed {
                            not_before: previous_start,
                            seen_by: end,
                        },
                    );
                }
                previous_start = start;
                tokio::time::sleep(interval).await;
            }
            pool.close().await;
            Ok(observed)
        })
    })
}
