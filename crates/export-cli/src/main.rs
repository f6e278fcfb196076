//! `exportctl`, the Export Center client: profiles, runs, live progress and verified
//! downloads, over HTTP only.
#![doc = include_str!("../README.md")]

mod api;
mod backoff;
mod download;
mod events;
mod pull;
mod sse;
mod table;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use export_api_types::{
    CreateRunRequest, DistributionBody, DistributionResponse, ProfileList, RunAccepted, RunList,
    RunStatusResponse,
};
use reqwest::Method;
use serde::Serialize;

use crate::api::{Api, Connection, ProblemError, Unreachable};
use crate::backoff::RetryPolicy;
use crate::events::{EventPrinter, Outcome};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (`runs watch` and `runs create --follow`: the run succeeded)
  1  usage or other error, including an error answered by the server
     (printed as `error: <code>: <detail>`, and as JSON on stdout with --json)
  2  the run failed
  3  the run was cancelled
  4  the server is unreachable (connection refused or timed out; `watch` first retries)";

#[derive(Debug, Parser)]
#[command(
    name = "exportctl",
    version,
    about = "Client of the Export Center service: profiles, runs, live progress, verified downloads",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The server's public base URL.
    #[arg(
        long,
        env = "EXPORTCTL_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// The tenant; defaults to the tenant of the token.
    #[arg(long, env = "EXPORTCTL_TENANT", global = true)]
    tenant: Option<String>,
    /// The JSON printed by `export-center token` (access token and DPoP proof key).
    #[arg(long, env = "EXPORTCTL_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust besides the operating system's.
    #[arg(long, env = "EXPORTCTL_CA_FILE", global = true, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Print JSON (the server's bodies; one event per line when following a run).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the tenant's export profiles.
    Profiles,
    /// Creates, inspects, follows, cancels and downloads runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Starts a run of a profile and prints its id.
    Create {
        /// The profile's name (`daily-vex`) or id (`export-profile::<tenant>::<name>`).
        #[arg(long)]
        profile: String,
        /// A target, e.g. `vex` or `advisory:osv-go` (repeatable; default: the profile's).
        #[arg(long = "target", value_name = "TARGET")]
        targets: Vec<String>,
        /// `json` or `ndjson` (repeatable; default: the profile's).
        #[arg(long = "format", value_name = "FORMAT")]
        formats: Vec<String>,
        #[arg(long, value_parser = ["low", "normal", "high"])]
        priority: Option<String>,
        #[arg(long, value_name = "DAYS")]
        retention_days: Option<i64>,
        /// Where the run is published besides signed URLs: `http`, `oci` or `object`
        /// (default: the profile's first).
        #[arg(long, value_parser = ["http", "oci", "object"])]
        distribution: Option<String>,
        /// For `--distribution oci`: `host[:port]/repository[:tag]` (the tag defaults to
        /// the run's sequence number).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Makes the request safe to retry: the same key and body give the same run.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Follow the run to its end, like `runs watch`.
        #[arg(long)]
        follow: bool,
    },
    /// Shows a run: status, progress, outputs, warnings and errors.
    Get { run_id: String },
    /// Lists runs, newest first.
    List {
        /// queued, running, succeeded, failed, cancelled or expired.
        #[arg(long)]
        status: Option<String>,
        /// The profile's name or id.
        #[arg(long)]
        profile: Option<String>,
        /// Runs per page (1-200).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: Option<u32>,
        /// Start at this `nextCursor` of a previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `nextCursor` to the last page.
        #[arg(long)]
        all: bool,
    },
    /// Cancels a queued or running run.
    Cancel { run_id: String },
    /// Follows a run's events to its end.
    ///
    /// Draws a progress bar on a terminal and prints one line per event otherwise;
    /// reconnects with Last-Event-ID after a dropped connection (backing off 1 s, 2 s,
    /// 4 s … 30 s) and polls the run's status on a server without the event stream.
    Watch { run_id: String },
    /// Shows where a run was published: type, status, pushed reference, signed links.
    Distribution { run_id: String },
    /// Pulls an OCI-distributed run from its registry into a directory (each file
    /// checked against its digest), ready for `export-center verify <dir>`.
    Pull {
        run_id: String,
        /// The directory (default: ./<run id with :: replaced by _>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Speak plain HTTP to the registry (a registry on a trusted network only).
        #[arg(long)]
        insecure: bool,
        /// Registry user name; the password comes from EXPORTCTL_REGISTRY_PASSWORD.
        #[arg(long, env = "EXPORTCTL_REGISTRY_USERNAME")]
        registry_username: Option<String>,
    },
    /// Downloads the outputs of a succeeded run, checking each one's sha256.
    Download {
        run_id: String,
        /// The directory (default: ./<run id with :: replaced by _>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only this file, e.g. `manifest.json` (repeatable).
        #[arg(long, value_name = "PATH")]
        only: Vec<String>,
    },
}

fn main() -> ExitCode {
    // Usage errors exit 1, never clap's 2: 2 means the run failed.
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
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(outcome) => ExitCode::from(exit_code(outcome)),
        Err(err) => report(&err, json),
    }
}

/// Prints a command's error and picks its exit code.
fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    eprintln!("error: {err:#}");
    if let Some(ProblemError(problem)) = err.downcast_ref::<ProblemError>() {
        for field in &problem.errors {
            eprintln!("  {}: {}", field.field, field.message);
        }
        if problem.code == "ERR_UNAUTHENTICATED" && problem.detail.contains("htu") {
            eprintln!("hint: --server must be the server's public base URL, which DPoP proofs name");
        }
        if json {
            print_json(problem);
        }
    }
    if err.is::<Unreachable>() {
        ExitCode::from(4)
    } else {
        ExitCode::from(1)
    }
}

fn exit_code(outcome: Option<Outcome>) -> u8 {
    match outcome {
        None | Some(Outcome::Succeeded) => 0,
        Some(Outcome::Failed) => 2,
        Some(Outcome::Cancelled) => 3,
    }
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("error: encoding JSON: {err}"),
    }
}

/// `NAME_OR_ID` → a profile id of the tenant.
fn profile_id(tenant: &str, name_or_id: &str) -> String {
    if name_or_id.contains("::") {
        name_or_id.to_owned()
    } else {
        format!("export-profile::{tenant}::{name_or_id}")
    }
}

/// Runs one command; `Some(outcome)` when it followed a run to its end.
async fn run(cli: Cli) -> anyhow::Result<Option<Outcome>> {
    let api = Api::connect(&Connection {
        server: cli.server,
        tenant: cli.tenant,
        token_file: cli.token_file,
        ca_file: cli.ca_file,
    })?;
    let json = cli.json;
    match cli.command {
        Command::Profiles => {
            let profiles: ProfileList = api.get("/export-center/profiles").await?;
            if json {
                print_json(&profiles);
            } else {
                print!("{}", table::profiles(&profiles.items));
            }
            Ok(None)
        }
        Command::Runs { command } => runs(&api, command, json).await,
    }
}

async fn runs(api: &Api, command: RunsCommand, json: bool) -> anyhow::Result<Option<Outcome>> {
    match command {
        RunsCommand::Create {
            profile,
            targets,
            formats,
            priority,
            retention_days,
            distribution,
            reference,
            idempotency_key,
            follow,
        } => {
            let distribution = (distribution.is_some() || reference.is_some()).then(|| DistributionBody {
                kind: distribution,
                reference,
                ..DistributionBody::default()
            });
            let request = CreateRunRequest {
                profile_id: profile_id(api.tenant(), &profile),
                targets: (!targets.is_empty()).then_some(targets),
                formats: (!formats.is_empty()).then_some(formats),
                retention_days,
                priority,
                distribution,
                ..CreateRunRequest::default()
            };
            let accepted: RunAccepted = api
                .json(Method::POST, "/export-center/runs", |request_builder| {
                    let builder = request_builder.json(&request);
                    match &idempotency_key {
                        Some(key) => builder.header("Idempotency-Key", key),
                        None => builder,
                    }
                })
                .await?;
            if !follow {
                if json {
                    print_json(&accepted);
                } else {
                    println!("{}", accepted.run_id);
                }
                return Ok(None);
            }
            let mut printer = EventPrinter::new(json);
            let header = if json {
                serde_json::to_string(&accepted).context("encoding the run")?
            } else {
                accepted.run_id.clone()
            };
            printer.header(&header);
            let outcome = watch::follow(api, &accepted.run_id, &mut printer, RetryPolicy::from_env()).await?;
            Ok(Some(outcome))
        }
        RunsCommand::Get { run_id } => {
            let run: RunStatusResponse = api.get(&api::run_path(&run_id)?).await?;
            if json {
                print_json(&run);
            } else {
                print!("{}", table::run(&run));
            }
            Ok(None)
        }
        RunsCommand::List {
            status,
            profile,
            limit,
            cursor,
            all,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(status) = status {
                query.push(("status", status));
            }
            if let Some(profile) = profile {
                query.push(("profileId", profile_id(api.tenant(), &profile)));
            }
            if let Some(limit) = limit {
                query.push(("limit", limit.to_string()));
            }
            let mut cursor = cursor;
            let mut items = Vec::new();
            let next_cursor = loop {
                let mut page_query = query.clone();
                if let Some(cursor) = &cursor {
                    page_query.push(("cursor", cursor.clone()));
                }
                let page: RunList = api
                    .json(Method::GET, "/export-center/runs", |request| {
                        request.query(&page_query)
                    })
                    .await?;
                items.extend(page.items);
                match page.next_cursor {
                    Some(next) if all => cursor = Some(next),
                    next => break next,
                }
            };
            let list = RunList { items, next_cursor };
            if json {
                print_json(&list);
            } else {
                print!("{}", table::runs(&list.items));
                if let Some(next) = &list.next_cursor {
                    eprintln!("more runs: --cursor {next} (or --all)");
                }
            }
            Ok(None)
        }
        RunsCommand::Cancel { run_id } => {
            let path = format!("{}/cancel", api::run_path(&run_id)?);
            let run: RunStatusResponse = api.json(Method::POST, &path, |request| request).await?;
            if json {
                print_json(&run);
            } else if run.status == "cancelled" {
                println!("cancelled {}", run.run_id);
            } else {
                println!("cancellation requested for {} ({})", run.run_id, run.status);
            }
            Ok(None)
        }
        RunsCommand::Watch { run_id } => {
            let mut printer = EventPrinter::new(json);
            let outcome = watch::follow(api, &run_id, &mut printer, RetryPolicy::from_env()).await?;
            Ok(Some(outcome))
        }
        RunsCommand::Distribution { run_id } => {
            let distribution = distribution_of(api, &run_id).await?;
            if json {
                print_json(&distribution);
            } else {
                print!("{}", table::distribution(&distribution));
            }
            Ok(None)
        }
        RunsCommand::Pull {
            run_id,
            out,
            insecure,
            registry_username,
        } => {
            let distribution = distribution_of(api, &run_id).await?;
            let dir = out.unwrap_or_else(|| download::default_dir(&run_id));
            let password = std::env::var("EXPORTCTL_REGISTRY_PASSWORD").ok();
            let files = pull::pull(&distribution, &dir, insecure, registry_username, password).await?;
            if json {
                print_json(&serde_json::json!({ "directory": dir, "files": files }));
            } else {
                for file in &files {
                    println!(
                        "{:<28} {:>10} bytes  sha256:{}",
                        file.path,
                        file.bytes,
                        table::short_digest(&file.sha256)
                    );
                }
                println!("pulled {} files to {}", files.len(), dir.display());
            }
            Ok(None)
        }
        RunsCommand::Download { run_id, out, only } => {
            let dir = out.unwrap_or_else(|| download::default_dir(&run_id));
            let files = download::download(api, &run_id, &dir, &only).await?;
            if json {
                print_json(&serde_json::json!({ "directory": dir, "files": files }));
            } else {
                for file in &files {
                    println!(
                        "{:<28} {:>10} bytes  sha256:{}",
                        file.path,
                        file.bytes,
                        table::short_digest(&file.sha256)
                    );
                }
                println!("downloaded {} files to {}", files.len(), dir.display());
            }
            Ok(None)
        }
    }
}

/// The distribution of a run (`export-dist::…` of `export-run::…`).
async fn distribution_of(api: &Api, run_id: &str) -> anyhow::Result<DistributionResponse> {
    api::run_path(run_id)?;
    let id = run_id.replacen("export-run::", "export-dist::", 1);
    api.get(&format!("/export-center/distributions/{id}")).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn profile_names_become_ids_of_the_tenant() {
        assert_eq!(profile_id("acme", "daily"), "export-profile::acme::daily");
        assert_eq!(
            profile_id("acme", "export-profile::acme::x"),
            "export-profile::acme::x"
        );
    }

    #[test]
    fn followed_runs_map_to_exit_codes() {
        assert_eq!(exit_code(None), 0);
        assert_eq!(exit_code(Some(Outcome::Succeeded)), 0);
        assert_eq!(exit_code(Some(Outcome::Failed)), 2);
        assert_eq!(exit_code(Some(Outcome::Cancelled)), 3);
    }
}
