//! `exportctl runs …`: one function per subcommand.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use export_api_types::{
    CreateRunRequest, DistributionBody, DistributionResponse, MirrorBody, RunAccepted, RunList,
    RunStatusResponse,
};
use export_verify::{render_text, Verdict, VerifyOptions, EXIT_ERROR};
use reqwest::Method;

use crate::api::{self, Api};
use crate::backoff::RetryPolicy;
use crate::download::{self, Downloaded};
use crate::events::EventPrinter;
use crate::{print_json, profile_id, pull, table, watch, Done};

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
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
        /// the run's sequence number, or to `2`, the tag Trivy pulls, for a run with a
        /// `trivy-db` output).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// A mirror bundle for a sealed site (profiles with `mirror` only): `full`, or
        /// `delta`, what changed since its base (default: the profile's mode).
        #[arg(long, value_parser = ["full", "delta"], value_name = "MODE")]
        mirror: Option<String>,
        /// With `--mirror delta`: the run the delta continues from (default: the newest
        /// succeeded mirror run of the profile).
        #[arg(long, value_name = "RUN_ID")]
        base: Option<String>,
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
        /// Only runs made this way: `api` (a request) or `schedule` (a profile's schedule).
        #[arg(long, value_parser = ["api", "schedule"])]
        trigger: Option<String>,
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
        #[arg(long, value_name = "PATH", conflicts_with = "verify")]
        only: Vec<String>,
        /// Then verify the directory offline as `export-center verify` does: checksums,
        /// the manifest's signature by `--key`, the provenance; exit code 5 if it fails.
        #[arg(long, requires = "key")]
        verify: bool,
        /// The trusted public key (SPKI PEM) the run must be signed with.
        #[arg(long, value_name = "FILE", requires = "verify")]
        key: Option<PathBuf>,
        /// An age identity file, to verify the contents of an encrypted bundle too.
        #[arg(long, value_name = "FILE", requires = "verify")]
        identity: Option<PathBuf>,
    },
}

/// Runs one `runs` subcommand.
pub(crate) async fn run(api: &Api, command: RunsCommand, json: bool) -> anyhow::Result<Done> {
    match command {
        RunsCommand::Create {
            profile,
            targets,
            formats,
            priority,
            retention_days,
            distribution,
            reference,
            mirror,
            base,
            idempotency_key,
            follow,
        } => {
            let mirror = mirror_body(mirror, base)?;
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
                mirror,
                ..CreateRunRequest::default()
            };
            create(api, &request, idempotency_key.as_deref(), follow, json).await
        }
        RunsCommand::Get { run_id } => get(api, &run_id, json).await,
        RunsCommand::List {
            status,
            profile,
            trigger,
            limit,
            cursor,
            all,
        } => {
            let mut query: Vec<(&'static str, String)> = Vec::new();
            query.extend(status.map(|status| ("status", status)));
            query.extend(profile.map(|profile| ("profileId", profile_id(api.tenant(), &profile))));
            query.extend(trigger.map(|trigger| ("trigger", trigger)));
            query.extend(limit.map(|limit| ("limit", limit.to_string())));
            list(api, query, cursor, all, json).await
        }
        RunsCommand::Cancel { run_id } => cancel(api, &run_id, json).await,
        RunsCommand::Watch { run_id } => {
            let mut printer = EventPrinter::new(json);
            let outcome = watch::follow(api, &run_id, &mut printer, RetryPolicy::from_env()).await?;
            Ok(Done::Followed(outcome))
        }
        RunsCommand::Distribution { run_id } => {
            let distribution = distribution_of(api, &run_id).await?;
            if json {
                print_json(&distribution);
            } else {
                print!("{}", table::distribution(&distribution));
            }
            Ok(Done::Ok)
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
            print_files(&dir, &files, "pulled", None, json);
            Ok(Done::Ok)
        }
        RunsCommand::Download {
            run_id,
            out,
            only,
            verify,
            key,
            identity,
        } => {
            let dir = out.unwrap_or_else(|| download::default_dir(&run_id));
            let files = download::download(api, &run_id, &dir, &only).await?;
            let checks = match (verify, key) {
                (true, Some(key)) => Some(verify_directory(&dir, key, identity)),
                _ => None,
            };
            print_files(&dir, &files, "downloaded", checks.as_ref(), json);
            let done = checks.map_or(Done::Ok, verified);
            if done != Done::Ok {
                eprintln!(
                    "error: the files in {} did not verify (see the checks)",
                    dir.display()
                );
            }
            Ok(done)
        }
    }
}

/// The request's `mirror` object from `--mirror` and `--base`: nothing without `--mirror`
/// (the profile's mode applies), and `--base` only with a delta, refused before any
/// request.
fn mirror_body(mode: Option<String>, base: Option<String>) -> anyhow::Result<Option<MirrorBody>> {
    match (mode.as_deref(), &base) {
        (None, None) => Ok(None),
        (None, Some(_)) => {
            bail!("`--base` names the run a delta continues from: use it with `--mirror delta`")
        }
        (Some("full"), Some(_)) => {
            bail!("`--base` is only for `--mirror delta`: a full mirror bundle has no base")
        }
        (Some(_), _) => Ok(Some(MirrorBody {
            mode,
            base_run_id: base,
        })),
    }
}

/// `runs create`: posts the request, then prints the run's id or follows it to its end.
async fn create(
    api: &Api,
    request: &CreateRunRequest,
    idempotency_key: Option<&str>,
    follow: bool,
    json: bool,
) -> anyhow::Result<Done> {
    let accepted: RunAccepted = api
        .json(Method::POST, "/export-center/runs", |request_builder| {
            let builder = request_builder.json(request);
            match idempotency_key {
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
        return Ok(Done::Ok);
    }
    let mut printer = EventPrinter::new(json);
    let header = if json {
        serde_json::to_string(&accepted).context("encoding the run")?
    } else {
        accepted.run_id.clone()
    };
    printer.header(&header);
    let outcome = watch::follow(api, &accepted.run_id, &mut printer, RetryPolicy::from_env()).await?;
    Ok(Done::Followed(outcome))
}

/// `runs get`.
async fn get(api: &Api, run_id: &str, json: bool) -> anyhow::Result<Done> {
    let run: RunStatusResponse = api.get(&api::run_path(run_id)?).await?;
    if json {
        print_json(&run);
    } else {
        print!("{}", table::run(&run));
    }
    Ok(Done::Ok)
}

/// `runs list`: one page, or every page from `cursor` on with `all`.
async fn list(
    api: &Api,
    query: Vec<(&'static str, String)>,
    mut cursor: Option<String>,
    all: bool,
    json: bool,
) -> anyhow::Result<Done> {
    let mut items = Vec::new();
    let next_cursor = loop {
        let mut page_query = query.clone();
        page_query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
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
    Ok(Done::Ok)
}

/// `runs cancel`.
async fn cancel(api: &Api, run_id: &str, json: bool) -> anyhow::Result<Done> {
    let path = format!("{}/cancel", api::run_path(run_id)?);
    let run: RunStatusResponse = api.json(Method::POST, &path, |request| request).await?;
    if json {
        print_json(&run);
    } else if run.status == "cancelled" {
        println!("cancelled {}", run.run_id);
    } else {
        println!("cancellation requested for {} ({})", run.run_id, run.status);
    }
    Ok(Done::Ok)
}

/// The distribution of a run (`export-dist::…` of `export-run::…`).
async fn distribution_of(api: &Api, run_id: &str) -> anyhow::Result<DistributionResponse> {
    api::run_path(run_id)?;
    let id = run_id.replacen("export-run::", "export-dist::", 1);
    api.get(&format!("/export-center/distributions/{id}")).await
}

/// Verifies a downloaded run's directory with the library `export-center verify` uses.
fn verify_directory(dir: &Path, key: PathBuf, identity: Option<PathBuf>) -> Verdict {
    export_verify::verify(&VerifyOptions {
        target: dir.to_owned(),
        keys: vec![key],
        identity,
        ..VerifyOptions::default()
    })
}

/// What a verdict makes of a download: an operational error (an unreadable key, say)
/// is an error like any other; a failed checksum or signature check is `Unverified`.
fn verified(verdict: Verdict) -> Done {
    match verdict.exit_code {
        0 => Done::Ok,
        EXIT_ERROR => Done::Error,
        _ => Done::Unverified,
    }
}

/// The files written, then the verdict if there is one.
fn print_files(dir: &Path, files: &[Downloaded], verb: &str, verdict: Option<&Verdict>, json: bool) {
    if json {
        let mut body = serde_json::json!({ "directory": dir, "files": files });
        if let Some(verdict) = verdict {
            body["verification"] = serde_json::json!(verdict);
        }
        print_json(&body);
        return;
    }
    for file in files {
        println!(
            "{:<28} {:>10} bytes  sha256:{}",
            file.path,
            file.bytes,
            table::short_digest(&file.sha256)
        );
    }
    println!("{verb} {} files to {}", files.len(), dir.display());
    if let Some(verdict) = verdict {
        print!("{}", render_text(verdict));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(mode: Option<&str>, base: Option<&str>) -> anyhow::Result<Option<MirrorBody>> {
        mirror_body(mode.map(str::to_owned), base.map(str::to_owned))
    }

    #[test]
    fn mirror_flags_make_the_request_mirror_object() {
        assert_eq!(body(None, None).unwrap(), None, "the profile's mode applies");
        assert_eq!(
            body(Some("full"), None).unwrap(),
            Some(MirrorBody {
                mode: Some("full".to_owned()),
                base_run_id: None
            })
        );
        assert_eq!(
            body(Some("delta"), None).unwrap(),
            Some(MirrorBody {
                mode: Some("delta".to_owned()),
                base_run_id: None
            })
        );
        assert_eq!(
            body(Some("delta"), Some("export-run::t::2025-01-01::0001")).unwrap(),
            Some(MirrorBody {
                mode: Some("delta".to_owned()),
                base_run_id: Some("export-run::t::2025-01-01::0001".to_owned())
            })
        );
    }

    #[test]
    fn a_base_without_a_delta_is_a_usage_error_naming_the_flag() {
        for mode in [None, Some("full")] {
            let err = body(mode, Some("export-run::t::2025-01-01::0001")).unwrap_err();
            assert!(err.to_string().contains("`--base`"), "{err}");
            assert!(err.to_string().contains("`--mirror delta`"), "{err}");
        }
    }
}
