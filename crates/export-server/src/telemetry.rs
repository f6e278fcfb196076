//! Logging set-up: `tracing` to stderr, as text or JSON, filtered by the configured
//! level or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::LoggingConfig;

pub fn init(logging: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, the demo) keeps the first subscriber.
    let _ = if logging.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
