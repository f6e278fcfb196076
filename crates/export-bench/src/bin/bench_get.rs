//! `bench-get`: authenticated `GET /export-center/runs/{runId}` under load (issue 3).
//!
//! `--connections` workers each hold one HTTP/1.1 keep-alive connection and send one
//! request after another, each with a fresh DPoP proof (new `jti`) for the exact URL and
//! method. After `--warmup` seconds, requests that start and finish within the next
//! `--duration` seconds are measured. Every answer other than `200` is an error and is
//! counted by status.
//!
//! Proofs (`--proofs`):
//! - `pregen` (default): every proof the run can use is signed before the clock starts,
//!   on all cores, so the measured window spends no client CPU on signatures. Signing
//!   hundreds of thousands of ES256 proofs takes about as long as the run itself, so their
//!   `iat` is the expected middle of the run (signing time estimated from a first sample),
//!   not the moment of signing; the run is refused unless every proof is used within
//!   ±55 s of its `iat` (the server accepts ±60 s). If the server answers faster than
//!   `--max-rps`, the pool runs dry and the run ends early with exit code 3.
//! - `live`: `--proof-threads` OS threads sign proofs during the run, a few seconds ahead
//!   of the workers, competing with the server for the CPU like a real client.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use export_bench::client::{self, Credentials};
use export_bench::stats::{self, MachineSample, ProcSample};
use hdrhistogram::Histogram;
use http::Method;
use http_body_util::BodyExt;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// DPoP-bound token and a fresh proof per request (`auth.mode = "dev"`).
    Dev,
    /// The tenant header alone (`auth.mode = "disabled"`).
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proofs {
    Pregen,
    Live,
}

#[derive(Debug, Parser)]
#[command(
    name = "bench-get",
    about = "Authenticated GET /export-center/runs/{runId} under load"
)]
struct Args {
    /// The server, e.g. http://127.0.0.1:18080 (an IP address, not a name).
    #[arg(long)]
    base_url: String,
    #[arg(long, default_value = "tenant-default")]
    tenant: String,
    #[arg(long, value_enum, default_value = "dev")]
    auth: AuthMode,
    /// The server's data directory: a token is minted from its dev issuer key.
    #[arg(long, required_if_eq("auth", "dev"), conflicts_with = "token_file")]
    data_dir: Option<PathBuf>,
    /// Or the JSON printed by `export-center token` (its proof key is ES256).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Proof key algorithm when minting: es256 or eddsa.
    #[arg(long, default_value = "es256")]
    alg: String,
    /// The run to read; without it, a run of --profile-id is created and awaited.
    #[arg(long)]
    run_id: Option<String>,
    #[arg(long, default_value = "export-profile::tenant-default::default")]
    profile_id: String,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, value_enum, default_value = "pregen")]
    proofs: Proofs,
    /// Pre-generated proofs per second of run (pregen).
    #[arg(long, default_value_t = 12_000)]
    max_rps: u64,
    /// Signing threads (live).
    #[arg(long, default_value_t = 1)]
    proof_threads: usize,
    /// The client's async worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The server process, for its CPU use and memory during the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label for the result.
    #[arg(long, default_value = "")]
    label: String,
    /// Written when the measured window begins (for a profiler to start on).
    #[arg(long)]
    started_file: Option<PathBuf>,
    /// Also write the result JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// Proofs signed ahead, in batches, shared by the workers.
struct ProofPool {
    batches: Mutex<VecDeque<Vec<String>>>,
    /// `pregen`: nothing more will come.
    sealed: bool,
    exhausted: AtomicBool,
    starved: AtomicU64,
}

const BATCH: usize = 256;

impl ProofPool {
    fn take(&self) -> Option<Vec<String>> {
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }

    fn len(&self) -> usize {
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    fn push(&self, batch: Vec<String>) {
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_back(batch);
    }
}

#[derive(Default)]
struct WorkerResult {
    histogram: Option<Histogram<u64>>,
    measured: u64,
    total: u64,
    errors: BTreeMap<String, u64>,
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
            eprintln!("bench-get: starting the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bench-get: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let credentials = match (args.auth, &args.token_file, &args.data_dir) {
        (AuthMode::Disabled, _, _) => Credentials::disabled(&args.tenant)?,
        (AuthMode::Dev, Some(path), _) => Credentials::from_token_json(path, &args.tenant)?,
        (AuthMode::Dev, None, Some(dir)) => Credentials::mint(
            dir,
            &args.tenant,
            client::parse_alg(&args.alg)?,
            Duration::from_secs(3600),
        )?,
        (AuthMode::Dev, None, None) => bail!("--auth dev needs --data-dir or --token-file"),
    };
    let base_url = args.base_url.trim_end_matches('/').to_owned();
    let server = client::socket_addr(&base_url)?;
    let run_id = match &args.run_id {
        Some(run_id) => run_id.clone(),
        None => {
            let run_id = client::create_run(&credentials, &base_url, &args.profile_id).await?;
            let run =
                client::wait_for_run(&credentials, &base_url, &run_id, Duration::from_secs(600)).await?;
            if run["status"] != "succeeded" {
                bail!("set-up run {run_id} ended {}", run["status"]);
            }
            run_id
        }
    };
    let url = format!("{base_url}/export-center/runs/{run_id}");
    // One request outside the measurement: the run must answer 200.
    let (status, body) = client::one_shot(&credentials, Method::GET, &url, None).await?;
    if status != http::StatusCode::OK {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    let body_bytes = body.len();
    let alg = if credentials.authenticated() {
        credentials.alg().as_str()
    } else {
        "none"
    };
    eprintln!(
        "bench-get: {url} ({body_bytes} bytes), auth {:?} proofs {alg}, {} connections, {} s warm-up + {} s",
        args.auth, args.connections, args.warmup, args.duration
    );

    // Proofs.
    let pool = Arc::new(ProofPool {
        batches: Mutex::new(VecDeque::new()),
        sealed: args.proofs == Proofs::Pregen,
        exhausted: AtomicBool::new(false),
        starved: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut pregen_seconds = 0.0;
    if credentials.authenticated() {
        match args.proofs {
            Proofs::Pregen => {
                let count = args.max_rps * (args.warmup + args.duration);
                let started = Instant::now();
                // Estimate the signing time from a sample, and date the proofs at the
                // expected middle of the run.
                let sample = Instant::now();
                for _ in 0..200 {
                    let _ = credentials.proof("GET", &url);
                }
                let per_proof = sample.elapsed().as_secs_f64() / 200.0;
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let ahead = per_proof * count as f64 / cores + (args.warmup + args.duration) as f64 / 2.0;
                let iat = chrono::Utc::now() + chrono::TimeDelta::milliseconds((ahead * 1000.0) as i64);
                pregenerate(&credentials, &url, count as usize, iat, &pool);
                pregen_seconds = started.elapsed().as_secs_f64();
                // Proofs are used from now until the end of the run, relative to their iat:
                let first_use = (chrono::Utc::now() - iat).num_milliseconds() as f64 / 1000.0;
                let last_use = first_use + (args.warmup + args.duration) as f64 + 2.0;
                eprintln!(
                    "bench-get: {count} proofs signed in {pregen_seconds:.1} s on every core; used from {first_use:+.0} s to {last_use:+.0} s of their iat"
                );
                if first_use < -55.0 || last_use > 55.0 {
                    bail!(
                        "the proofs would be used outside ±55 s of their iat: lower --max-rps or --duration, or use --proofs live"
                    );
                }
            }
            Proofs::Live => {
                for _ in 0..args.proof_threads.max(1) {
                    let (credentials, url, pool, stop) =
                        (credentials.clone(), url.clone(), pool.clone(), stop.clone());
                    // About two seconds of proofs ahead of the workers at 16,000/s.
                    std::thread::spawn(move || live_signer(&credentials, &url, &pool, &stop, 128));
                }
                while pool.len() < 16 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    // Connections first, then the clock.
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(client::connect(server, None).await?);
    }
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(args.warmup);
    let measure_to = measure_from + Duration::from_secs(args.duration);

    let sampler = {
        let server_pid = server_pid.clone();
        let started_file = args.started_file.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            if let Some(path) = started_file {
                let _ = std::fs::write(path, "measuring\n");
            }
            let first = (
                server_pid.as_deref().map(ProcSample::read).transpose(),
                ProcSample::read("self"),
                MachineSample::read(),
            );
            tokio::time::sleep_until(measure_to.into()).await;
            let last = (
                server_pid.as_deref().map(ProcSample::read).transpose(),
                ProcSample::read("self"),
                MachineSample::read(),
            );
            (first, last)
        })
    };

    let mut workers = Vec::with_capacity(args.connections);
    for sender in senders {
        let (credentials, url, pool) = (credentials.clone(), url.clone(), pool.clone());
        workers.push(tokio::spawn(worker(
            sender,
            server,
            credentials,
            url,
            pool,
            measure_from,
            measure_to,
        )));
    }
    let mut histogram = stats::new_histogram();
    let (mut measured, mut total) = (0u64, 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for handle in workers {
        let result = handle.await.context("worker panicked")?;
        if let Some(h) = &result.histogram {
            histogram.add(h).context("merging histograms")?;
        }
        measured += result.measured;
        total += result.total;
        for (kind, count) in result.errors {
            *errors.entry(kind).or_default() += count;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let ((server_first, client_first, machine_first), (server_last, client_last, machine_last)) =
        sampler.await.context("sampler")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_json = match (server_first?, server_last?) {
        (Some(first), Some(last)) => stats::process_json(&last, &first),
        _ => json!(null),
    };
    let client_json = stats::process_json(&client_last?, &client_first?);
    let machine_busy = machine_last?.busy_cores_since(&machine_first?, cores);

    let error_count: u64 = errors.values().sum();
    let exhausted = pool.exhausted.load(Ordering::Relaxed);
    let rps = measured as f64 / args.duration as f64;
    let result = json!({
        "benchmark": "get-run",
        "label": args.label,
        "url": url,
        "bodyBytes": body_bytes,
        "auth": format!("{:?}", args.auth).to_lowercase(),
        "proofAlg": alg,
        "proofs": format!("{:?}", args.proofs).to_lowercase(),
        "pregenSeconds": (pregen_seconds * 10.0).round() / 10.0,
        "connections": args.connections,
        "warmupSeconds": args.warmup,
        "durationSeconds": args.duration,
        "requestsMeasured": measured,
        "requestsTotal": total,
        "rps": rps.round(),
        "latency": stats::summary(&histogram),
        "errors": error_count,
        "errorsByKind": errors,
        "proofPoolExhausted": exhausted,
        "proofStarvedWaits": pool.starved.load(Ordering::Relaxed),
        "server": server_json,
        "client": client_json,
        "machineBusyCores": (machine_busy * 100.0).round() / 100.0,
        "cores": cores,
    });
    eprintln!(
        "bench-get: {rps:.0} requests/s, {}; errors {error_count} {errors:?}",
        stats::summary_line(&histogram)
    );
    eprintln!(
        "bench-get: server {server_json}; client {client_json}; whole machine {machine_busy:.2} of {cores} cores busy"
    );
    println!("{result}");
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{result:#}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if exhausted {
        eprintln!("bench-get: the pre-generated proofs ran out: raise --max-rps");
        ExitCode::from(3)
    } else if error_count > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Signs `count` proofs with `iat` on every core, into batches of the pool.
fn pregenerate(
    credentials: &Credentials,
    url: &str,
    count: usize,
    iat: chrono::DateTime<chrono::Utc>,
    pool: &ProofPool,
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batches = count.div_ceil(BATCH);
    let per_thread = batches.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|_| {
                            (0..BATCH)
                                .map(|_| credentials.proof_at("GET", url, iat).expect("authenticated"))
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for batch in handle.join().expect("signing thread panicked") {
                pool.push(batch);
            }
        }
    });
}

/// Keeps about `ahead` batches of fresh proofs in the pool until `stop`.
fn live_signer(credentials: &Credentials, url: &str, pool: &ProofPool, stop: &AtomicBool, ahead: usize) {
    while !stop.load(Ordering::Relaxed) {
        if pool.len() >= ahead {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let batch = (0..BATCH)
            .map(|_| credentials.proof("GET", url).expect("authenticated"))
            .collect();
        pool.push(batch);
    }
}

async fn worker(
    mut sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    server: std::net::SocketAddr,
    credentials: Credentials,
    url: String,
    pool: Arc<ProofPool>,
    measure_from: Instant,
    measure_to: Instant,
) -> WorkerResult {
    let mut result = WorkerResult {
        histogram: Some(stats::new_histogram()),
        ..WorkerResult::default()
    };
    let histogram = result.histogram.as_mut().expect("set above");
    let mut proofs: Vec<String> = Vec::new();
    loop {
        let proof = if credentials.authenticated() {
            if proofs.is_empty() {
                match pool.take() {
                    Some(batch) => proofs = batch,
                    None if pool.sealed => {
                        pool.exhausted.store(true, Ordering::Relaxed);
                        break;
                    }
                    None => {
                        pool.starved.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        continue;
                    }
                }
            }
            proofs.pop()
        } else {
            None
        };
        if pool.exhausted.load(Ordering::Relaxed) {
            break;
        }
        let start = Instant::now();
        if start >= measure_to {
            break;
        }
        let outcome = async {
            let request = credentials.request(Method::GET, &url, proof.as_deref(), None)?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        }
        .await;
        let end = Instant::now();
        result.total += 1;
        let in_window = start >= measure_from && end <= measure_to;
        match outcome {
            Ok(status) if status == http::StatusCode::OK => {
                if in_window {
                    result.measured += 1;
                    let micros = end.duration_since(start).as_micros() as u64;
                    let _ = histogram.record(micros.max(1));
                }
            }
            Ok(status) => {
                *result
                    .errors
                    .entry(format!("http {}", status.as_u16()))
                    .or_default() += 1;
            }
            Err(err) => {
                *result.errors.entry(format!("transport: {err}")).or_default() += 1;
                match client::connect(server, None).await {
                    Ok(fresh) => sender = fresh,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
    }
    result
}
