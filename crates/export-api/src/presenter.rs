//! Turns stored runs into wire bodies, signing a download link for every output.

use chrono::{DateTime, Utc};
use export_api_types::{
    OutputResponse, Progress, RunAccepted, RunErrorBody, RunLinks, RunStatusResponse, RunWarningBody,
    TriggerBody,
};
// The manifest's DSSE envelope is shown as the manifest's `dsseUrl` rather than as an
// output of its own.
use export_core::{format_timestamp, OutputKind, RunId, RunStatus, MANIFEST_DSSE_PATH};
use export_store::Run;

use crate::links::{LinkWindow, Links};

pub(crate) fn run_links(run_id: &RunId) -> RunLinks {
    let status = format!("/export-center/runs/{run_id}");
    RunLinks {
        events: format!("{status}/events"),
        status,
    }
}

/// The `202` body; a pure function of the stored run, so an idempotent replay returns
/// the same bytes as the first answer.
pub(crate) fn accepted(run: &Run) -> RunAccepted {
    RunAccepted {
        run_id: run.id.to_string(),
        status: RunStatus::Queued.to_string(),
        estimate_seconds: run.estimate_seconds,
        links: run_links(&run.id),
        retry_after: retry_after(run.estimate_seconds),
    }
}

/// The suggested first poll delay: the estimate, capped at 5 seconds.
pub(crate) fn retry_after(estimate_seconds: u64) -> u64 {
    estimate_seconds.clamp(1, 5)
}

/// The status body of `run` with its links signed as of `now`.
pub(crate) fn run_status(links: &Links, run: &Run, now: DateTime<Utc>) -> RunStatusResponse {
    let links = links.for_run_at(&run.id, run.expires_at, now);
    let downloadable = matches!(run.status, RunStatus::Running | RunStatus::Succeeded);
    let outputs = if downloadable {
        outputs(&links, run)
    } else {
        Vec::new()
    };
    RunStatusResponse {
        run_id: run.id.to_string(),
        status: run.status.to_string(),
        profile_id: run.profile_id.to_string(),
        profile_revision: run.plan.profile_revision.clone(),
        project: run.project.as_ref().map(ToString::to_string),
        priority: run.plan.priority.to_string(),
        created_at: format_timestamp(run.created_at),
        started_at: run.started_at.map(format_timestamp),
        completed_at: run.completed_at.map(format_timestamp),
        expires_at: run.expires_at.map(format_timestamp),
        outputs,
        progress: progress(run),
        queue_position: None,
        trigger: TriggerBody {
            kind: run.trigger.kind().as_str().to_owned(),
            at: run.trigger.fire_time().map(format_timestamp),
        },
        warnings: run
            .warnings
            .iter()
            .map(|w| RunWarningBody {
                code: w.code.clone(),
                target: w.target.clone(),
                message: w.message.clone(),
            })
            .collect(),
        errors: run
            .error
            .iter()
            .map(|e| RunErrorBody {
                code: e.code.to_string(),
                message: e.message.clone(),
                retry_after_seconds: e.retry_after_seconds,
            })
            .collect(),
    }
}

/// The run's outputs with their links, sorted by (`type`, `id`, `format`, `url`); the
/// manifest's DSSE envelope is the manifest's `dsseUrl`.
fn outputs(links: &LinkWindow<'_>, run: &Run) -> Vec<OutputResponse> {
    let expires_at = format_timestamp(links.expires());
    let dsse_url = run
        .outputs
        .iter()
        .find(|output| output.path == MANIFEST_DSSE_PATH)
        .map(|output| links.url(&output.path));
    let mut outputs: Vec<OutputResponse> = run
        .outputs
        .iter()
        .filter(|output| output.path != MANIFEST_DSSE_PATH)
        .map(|output| OutputResponse {
            kind: output.kind.to_string(),
            id: output.id.clone(),
            format: output.format.clone(),
            url: links.url(&output.path),
            sha256: output.sha256.to_string(),
            bytes: output.bytes,
            dsse_url: (output.kind == OutputKind::Manifest)
                .then(|| dsse_url.clone())
                .flatten(),
            expires_at: expires_at.clone(),
        })
        .collect();
    outputs.sort_by(|a, b| (&a.kind, &a.id, &a.format, &a.url).cmp(&(&b.kind, &b.id, &b.format, &b.url)));
    outputs
}

/// `percent` = floor(100 × completed / total), 100 only once the run succeeded.
fn progress(run: &Run) -> Progress {
    let percent = match run.status {
        RunStatus::Succeeded | RunStatus::Expired => 100,
        _ if run.items_total == 0 => 0,
        _ => (run.items_completed.saturating_mul(100) / run.items_total).min(99) as u8,
    };
    Progress {
        percent,
        items_completed: run.items_completed,
        items_total: run.items_total,
    }
}
