//! The `export-center` binary: `serve`, `ingest` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use export_core::{SourceName, SystemClock, TenantId};
use export_server::{ingest, telemetry, App, Config, Role};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "export-center",
    version,
    about = "Deterministic, signed, verifiable exports of security evidence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the HTTP API and the workers.
    Serve {
        /// TOML configuration; without it, built-in defaults over ./export-center-data.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Stores evidence documents (OSV, CSAF 2.0, OpenVEX, CycloneDX VEX, policies).
    Ingest {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        tenant: String,
        /// The feed the documents come from, e.g. `osv-go`.
        #[arg(long)]
        source: String,
        /// Files and directories (read recursively: *.json, *.yaml, *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Shows the whole flow on the embedded defaults: starts a server on a temporary
    /// data directory, ingests the sample evidence, runs an export over HTTP, downloads
    /// every output through its signed URL and checks it against the manifest.
    Demo {
        /// Keep the data in this directory instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The sample evidence (default: the repository's fixtures/evidence).
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, role } => {
            let config = Config::load(config.as_deref())?;
            telemetry::init(&config.logging);
            let app = App::build(config).await?;
            let listener = app.bind().await?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight requests and runs");
                signal.cancel();
            });
            app.serve(listener, role, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            config,
            tenant,
            source,
            paths,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let source = SourceName::parse(&source).context("--source")?;
            let config = Config::load(config.as_deref())?;
            telemetry::init(&config.logging);
            let app = App::build(config).await?;
            let report =
                ingest::ingest_paths(app.state.store.as_ref(), &SystemClock, &tenant, &source, &paths)
                    .await?;
            for rejection in &report.rejected {
                eprintln!("rejected {rejection}");
            }
            println!(
                "ingested into {tenant}/{source}: {} new, {} replaced, {} unchanged, {} rejected, {} skipped (not .json/.yaml/.yml)",
                report.inserted,
                report.replaced,
                report.unchanged,
                report.rejected.len(),
                report.skipped.len()
            );
            Ok(if report.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Demo { data_dir, fixtures } => export_server::demo::run(data_dir, fixtures).await,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
