//! Logging and metrics set-up: `tracing` to stderr, as text or JSON, filtered by the
//! configured level or `RUST_LOG`; the metrics' help texts, buckets and upkeep.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

pub fn init(logging: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, the demo) keeps the first subscriber.
    let _ = if logging.format == LogFormat::Json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Histogram buckets of every `*_seconds` metric: from a cached status read (a few
/// milliseconds) to a long export (ten minutes).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];

/// How often the process metrics are read and the recorder's histograms are drained.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The help text of every metric the service records (`# HELP` in `/metrics`).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (to its response head for streams), by method, route and status."
    );
    describe_counter!("export_runs_total", "Runs finished, by final status and profile.");
    describe_counter!(
        export_api::SCHEDULE_FIRES_METRIC,
        "Schedule fires seen by this process, by outcome: created, already_fired (another process made the run), refused (the request cannot be planned; not retried), failed (retried)."
    );
    describe_histogram!(
        "export_run_duration_seconds",
        Unit::Seconds,
        "Time from a worker's claim of a run to its end, by profile."
    );
    describe_counter!("export_items_total", "Evidence items written into data files.");
    describe_counter!(
        "export_bytes_total",
        Unit::Bytes,
        "Bytes of outputs written to the artifact store."
    );
    describe_gauge!(
        "export_queue_depth",
        "Runs queued and not yet claimed, over all tenants."
    );
    metrics_process::Collector::default().describe();
}

/// Until `shutdown`: every few seconds reads the process metrics (CPU, resident memory,
/// open files, threads, start time) and runs the recorder's upkeep, which drains its
/// histograms, so that memory stays bounded whether or not anybody scrapes.
pub async fn metrics_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let collector = metrics_process::Collector::default();
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                collector.collect();
                handle.run_upkeep();
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
