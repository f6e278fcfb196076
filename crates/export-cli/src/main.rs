//! `exportctl`, the Export Center client: profiles, runs, live progress and verified
//! downloads, over HTTP only.
#![doc = include_str!("../README.md")]

mod api;
mod backoff;
mod download;
mod events;
mod profiles;
mod pull;
mod runs;
mod sse;
mod table;
mod watch;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::api::{Api, Connection, ProblemError, Unreachable};
use crate::events::Outcome;
use crate::profiles::ProfilesCommand;
use crate::runs::RunsCommand;
use crate::webhooks::WebhooksCommand;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (`runs watch` and `runs create --follow`: the run succeeded)
  1  usage or other error, including an error answered by the server
     (printed as `error: <code>: <detail>`, and as JSON on stdout with --json)
  2  the run failed
  3  the run was cancelled
  4  the server is unreachable (connection refused or timed out; `watch` first retries)
  5  `runs download --verify`: the files did not verify (a checksum, file or signature check failed)";

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
    /// Lists the tenant's export profiles; creates, changes and archives those of the API.
    Profiles {
        #[command(subcommand)]
        command: Option<ProfilesCommand>,
    },
    /// Creates, inspects, follows, cancels and downloads runs.
    Runs {
        // Boxed: `runs create` has many flags, and `Command` would be mostly padding.
        #[command(subcommand)]
        command: Box<RunsCommand>,
    },
    /// Registers, lists, shows and deletes webhooks; lists their deliveries.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
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

/// How a command that did not fail with an error ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Ok,
    /// It followed a run to its end.
    Followed(Outcome),
    /// It downloaded a run whose files did not verify.
    Unverified,
    /// An error it has already printed (a verdict that could not check).
    Error,
}

fn exit_code(done: Done) -> u8 {
    match done {
        Done::Ok | Done::Followed(Outcome::Succeeded) => 0,
        Done::Error => 1,
        Done::Followed(Outcome::Failed) => 2,
        Done::Followed(Outcome::Cancelled) => 3,
        Done::Unverified => 5,
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

/// Runs one command.
async fn run(cli: Cli) -> anyhow::Result<Done> {
    let api = Api::connect(&Connection {
        server: cli.server,
        tenant: cli.tenant,
        token_file: cli.token_file,
        ca_file: cli.ca_file,
    })?;
    let json = cli.json;
    match cli.command {
        Command::Profiles { command } => {
            profiles::run(&api, command.unwrap_or(ProfilesCommand::List), json).await
        }
        Command::Runs { command } => runs::run(&api, *command, json).await,
        Command::Webhooks { command } => webhooks::run(&api, command, json).await,
    }
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
        assert_eq!(exit_code(Done::Ok), 0);
        assert_eq!(exit_code(Done::Followed(Outcome::Succeeded)), 0);
        assert_eq!(exit_code(Done::Error), 1);
        assert_eq!(exit_code(Done::Followed(Outcome::Failed)), 2);
        assert_eq!(exit_code(Done::Followed(Outcome::Cancelled)), 3);
        assert_eq!(exit_code(Done::Unverified), 5);
    }
}
