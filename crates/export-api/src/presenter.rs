//! Turns stored runs into wire bodies, signing a download link for every output.

use chrono::{DateTime, Utc};
use export_api_types::{
    OutputResponse, Progress, RunAccepted, RunErrorBody, RunLinks, RunStatusResponse, RunWarningBody,
};
// The manifest's DSSE envelope is shown as the manifest's `dsseUrl` rather than as an
// output of its own.
use export_core::{format_timestamp, RunId, RunStatus, MANIFEST_DSSE_PATH};
use export_distribution::link_expiry;
use export_store::{Run, RunOutput};

use crate::state::AppState;

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

/// When links signed at `now` for `run` expire: the link window of its status.
pub(crate) fn links_expiry(state: &AppState, run: &Run, now: DateTime<Utc>) -> DateTime<Utc> {
    link_expiry(now, chrono_duration(state.config.link_lifetime), run.expires_at)
}

pub(crate) fn run_status(state: &AppState, run: &Run, now: DateTime<Utc>) -> RunStatusResponse {
    let links_expire = links_expiry(state, run, now);
    let downloadable = matches!(run.status, RunStatus::Running | RunStatus::Succeeded);
    let mut outputs: Vec<OutputResponse> = if downloadable {
        let dsse_url = run
            .outputs
            .iter()
            .find(|output| output.path == MANIFEST_DSSE_PATH)
            .map(|output| signed_url(state, &run.id, output, links_expire));
        run.outputs
            .iter()
            .filter(|output| output.path != MANIFEST_DSSE_PATH)
            .map(|output| OutputResponse {
                kind: output.kind.clone(),
                id: output.id.clone(),
                format: output.format.clone(),
                url: signed_url(state, &run.id, output, links_expire),
                sha256: output.sha256.to_string(),
                bytes: output.bytes,
                dsse_url: (output.kind == "manifest").then(|| dsse_url.clone()).flatten(),
                expires_at: format_timestamp(links_expire),
            })
            .collect()
    } else {
        Vec::new()
    };
    outputs.sort_by(|a, b| (&a.kind, &a.id, &a.format, &a.url).cmp(&(&b.kind, &b.id, &b.format, &b.url)));

    RunStatusResponse {
        run_id: run.id.to_string(),
        status: run.status.to_string(),
        profile_id: run.profile_id.to_string(),
        project: run.project.as_ref().map(ToString::to_string),
        priority: run.plan.priority.to_string(),
        created_at: format_timestamp(run.created_at),
        started_at: run.started_at.map(format_timestamp),
        completed_at: run.completed_at.map(format_timestamp),
        expires_at: run.expires_at.map(format_timestamp),
        outputs,
        progress: progress(run),
        queue_position: None,
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

fn signed_url(state: &AppState, run_id: &RunId, output: &RunOutput, expires: DateTime<Utc>) -> String {
    format!(
        "{}{}",
        state.config.public_base_url,
        state.urls.sign(run_id, &output.path, expires)
    )
}

pub(crate) fn chrono_duration(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::hours(6))
}
