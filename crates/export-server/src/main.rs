//! The `export-center` binary: `serve`, `ingest` and `demo`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use export_auth::client::DpopKey;
use export_auth::dev::DevIssuer;
use export_auth::Alg;
use export_core::{SourceName, SystemClock, TenantId};
use export_server::config::AuthMode;
use export_server::{import, ingest, keys, telemetry, App, Config, Role};
use export_verify as verify;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of glibc's malloc, for the whole process: the Rust allocations through
/// this global allocator, and SQLite's, zstd's and libc's through `malloc` and `free`,
/// which tikv-jemalloc-sys defines in this binary (`override_allocator_on_supported_platforms`).
/// glibc spread a busy server's short-lived buffers over up to 8 arenas per core, each of
/// which kept the most it ever held, so resident memory crept up for as long as the soak
/// ran (docs/reliability.md, "Four more runs"); and an export's rows, allocated by SQLite
/// on its connection thread and freed on the runtime's, queued both threads on an arena
/// lock for every value (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// The paths are the source's complete current state: once they are stored, every
        /// document of the source (of this tenant) that they lack is removed from later
        /// snapshots (a tombstone each). Nothing is removed when a file is rejected.
        #[arg(long)]
        sync: bool,
    },
    /// Applies a mirror bundle to this site's store, offline (SPEC §15): the bundle must
    /// verify with the given keys alone, continue the tenant's chain of imports (a full
    /// bundle newer than the last import, or a delta from exactly the last import, before
    /// its `expiresAt`), and is applied in one transaction or not at all. Importing the
    /// bundle last applied again changes nothing.
    ///
    /// Exit codes: 0 applied (or already applied), 2 integrity (checksum, missing or extra
    /// file, a record that is not one), 3 signature invalid or key not trusted, 4 chain
    /// (nothing to continue, wrong base, rollback, expired), 1 usage or other.
    Import {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        tenant: String,
        /// A trusted public key (PEM); repeat to trust several.
        #[arg(long = "key", required_unless_present = "status")]
        keys: Vec<PathBuf>,
        /// The mirror bundle (`bundle.tar.zst`, `.tar.gz` or `.zip`).
        #[arg(required_unless_present = "status", conflicts_with = "status")]
        bundle: Option<PathBuf>,
        /// Print the tenant's import state (last applied bundle and history) instead.
        #[arg(long)]
        status: bool,
        /// With --status, print JSON.
        #[arg(long, requires = "status")]
        json: bool,
    },
    /// Mints a DPoP-bound access token from the dev issuer (auth.mode = "dev") and prints
    /// it as JSON with the proof key the client must sign its DPoP proofs with.
    Token {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        tenant: String,
        /// Space-separated scopes.
        #[arg(long, default_value = "export:read export:write export:admin")]
        scopes: String,
        #[arg(long, default_value = "dev-user")]
        subject: String,
        #[arg(long, default_value_t = 3600)]
        lifetime_seconds: u64,
    },
    /// Manages signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Checks a downloaded run (a directory or a bundle file) fully offline: checksums,
    /// the manifest signature, the rerun hash and the provenance.
    ///
    /// Archives are read without extracting them, within limits, and every file must be
    /// named by the signed manifest.
    ///
    /// Exit codes: 0 verified, 2 checksum mismatch, missing or extra file (or an archive
    /// entry that is a link, a device, or an absolute, `..` or duplicate path), 3 signature
    /// invalid or key not trusted, 1 usage or other error (an archive past the limits too).
    Verify {
        /// The run's directory, or a bundle file (.tar.zst, .tar.gz, .zip, or .age).
        target: PathBuf,
        /// A trusted public key (PEM); repeat `--key` to trust several: the manifest must
        /// be signed by one of them.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// The provenance envelope, when it is not beside the target.
        #[arg(long)]
        provenance: Option<PathBuf>,
        /// An age identity file to decrypt an encrypted bundle.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
        /// Refuse an archive with more entries than this.
        #[arg(long, default_value_t = verify::Limits::default().max_entries)]
        max_entries: usize,
        /// Refuse an archive that expands past this many bytes.
        #[arg(long, default_value_t = verify::Limits::default().max_bytes)]
        max_bytes: u64,
        /// Refuse an archive that expands past this many times its own size (below 1 MiB,
        /// any archive may expand).
        #[arg(long, default_value_t = verify::Limits::default().max_ratio)]
        max_ratio: u64,
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

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Writes a PKCS#8 private key `<name>.pem` (mode 0600) and its public key
    /// `<name>.pub.pem`, and prints the key id.
    Generate {
        /// `ed25519` or `p256`.
        #[arg(long, default_value = "ed25519")]
        alg: String,
        /// The directory, e.g. the tenant's keyring `<keyring_dir>/<tenant>`.
        #[arg(long)]
        out: PathBuf,
        /// The key's name: `kms://<tenant>/<name>` in a keyring.
        #[arg(long, default_value = "signer")]
        name: String,
    },
}

fn main() -> ExitCode {
    // Before anything creates a file: the data directory, database, artifacts and keys
    // are owner-only whatever umask the process was started with (SPEC §17).
    export_server::data_dir::restrict_umask();
    // The one rustls provider (ring) before any HTTP client is built.
    export_egress::install_crypto_provider();
    // Only in builds with the `failpoints` feature (the test suite's): reads `FAILPOINTS`.
    let _failpoints = fail::FailScenario::setup();
    // Usage errors exit 1, never 2: `verify` reserves 2 for a checksum mismatch.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A blocking write of a run left behind after the shutdown grace period (its lease
    // lapses, another worker takes the run over) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
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
            let listeners = app.bind().await?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!(
                    "shutting down: finishing in-flight requests and runs within the grace period"
                );
                signal.cancel();
            });
            app.serve(listeners, role, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            config,
            tenant,
            source,
            paths,
            sync,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let source = SourceName::parse(&source).context("--source")?;
            let config = Config::load(config.as_deref())?;
            telemetry::init(&config.logging);
            let app = App::build(config).await?;
            let mode = if sync {
                ingest::IngestMode::Sync
            } else {
                ingest::IngestMode::Add
            };
            let store = app.state.store.as_ref();
            let report = ingest::ingest_paths(store, &SystemClock, &tenant, &source, &paths, mode).await?;
            for rejection in &report.rejected {
                eprintln!("rejected {rejection}");
            }
            if sync && !report.rejected.is_empty() {
                eprintln!(
                    "--sync removed nothing from {tenant}/{source}: it removes documents only when every file is read, and {} rejected; fix or drop them and sync again",
                    match report.rejected.len() {
                        1 => "1 file was".to_owned(),
                        n => format!("{n} files were"),
                    }
                );
            }
            // Only a sync removes, so only its summary counts removals: the line of a plain
            // ingest stays as scripts read it.
            let removed = if sync {
                format!(" {} removed,", report.removed)
            } else {
                String::new()
            };
            println!(
                "ingested into {tenant}/{source}: {} new, {} replaced, {} unchanged,{removed} {} rejected, {} skipped (not .json/.yaml/.yml)",
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
        Command::Import {
            config,
            tenant,
            keys,
            bundle,
            status,
            json,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let config = Config::load(config.as_deref())?;
            telemetry::init(&config.logging);
            let app = App::build(config).await?;
            let store = app.state.store.as_ref();
            if status {
                let imports = store.mirror_imports(&tenant, 50).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&import::status_json(&tenant, &imports))?
                    );
                } else {
                    print!("{}", import::render_status(&tenant, &imports));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let options = import::ImportOptions {
                bundle: bundle.context("the bundle to import")?,
                keys,
                limits: verify::Limits::default(),
            };
            eprintln!("import: verifying {}", options.bundle.display());
            // Never a panic: a closed stderr (`2>&1 | head`) must not stop the reader.
            let progress = |read| {
                let _ = writeln!(std::io::stderr(), "import: {read} items read");
            };
            match import::import_bundle(store, &SystemClock, &tenant, &options, progress).await {
                Ok(import::Imported::Applied(applied)) => {
                    println!(
                        "imported {} bundle into {tenant}: generation {}, watermark {}: {} added, {} changed, {} unchanged, {} removed",
                        applied.mode,
                        applied.generation,
                        applied.watermark,
                        applied.added,
                        applied.changed,
                        applied.unchanged,
                        applied.removed
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok(import::Imported::AlreadyApplied(last)) => {
                    println!(
                        "already applied: {tenant} is at generation {} (watermark {}); nothing changed",
                        last.generation, last.watermark
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("import refused, nothing changed: {err:#}");
                    Ok(ExitCode::from(err.exit_code()))
                }
            }
        }
        Command::Token {
            config,
            tenant,
            scopes,
            subject,
            lifetime_seconds,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let config = Config::load(config.as_deref())?;
            if config.auth.mode != AuthMode::Dev {
                anyhow::bail!(
                    "auth.mode is `{}`: tokens are minted only by the dev issuer",
                    config.auth.mode.name()
                );
            }
            let issuer = DevIssuer::load_or_create(&config.server.data_dir)
                .context("loading the dev issuer key")?
                .with_issuer(config.auth.issuer.clone(), config.auth.audience.clone());
            let key = DpopKey::generate(Alg::ES256);
            let scopes: Vec<&str> = scopes.split_whitespace().collect();
            let lifetime = std::time::Duration::from_secs(lifetime_seconds);
            let token = issuer.mint(&tenant, &scopes, &subject, key.jwk_thumbprint(), lifetime);
            let pem = key
                .to_pkcs8_pem()
                .map_err(|err| anyhow::anyhow!("encoding the proof key: {err}"))?;
            let minted = serde_json::json!({
                "accessToken": token,
                "tokenType": "DPoP",
                "expiresIn": lifetime_seconds,
                "dpopKey": pem.as_str(),
            });
            println!("{}", serde_json::to_string_pretty(&minted)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Generate { alg, out, name },
        } => {
            let alg: export_signing::KeyAlgorithm =
                alg.parse().map_err(|err| anyhow::anyhow!("--alg: {err}"))?;
            let key = keys::generate_keys(alg, &out, &name)?;
            println!("private key: {}", key.private_path.display());
            println!("public key:  {}", key.public_path.display());
            println!("keyid:       {}", key.keyid);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            target,
            keys,
            provenance,
            identity,
            json,
            max_entries,
            max_bytes,
            max_ratio,
        } => {
            let verdict = verify::verify(&verify::VerifyOptions {
                target,
                keys,
                provenance,
                identity,
                limits: verify::Limits {
                    max_entries,
                    max_bytes,
                    max_ratio,
                    ..verify::Limits::default()
                },
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&verdict)?);
            } else {
                print!("{}", verify::render_text(&verdict));
            }
            Ok(ExitCode::from(verdict.exit_code))
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
