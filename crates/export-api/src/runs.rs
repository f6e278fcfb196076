//! `/export-center/runs`: create, read, list and cancel runs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use export_api_types::{CreateRunRequest, Problem, RunAccepted, RunList, RunStatusResponse};
use export_core::{ErrorCode, ProfileId, RunId, RunStatus, Sha256Digest, TenantId, Trigger, TriggerKind};
use export_store::{CancelOutcome, IdempotencyClaim, Run, RunQuery};
use serde::Deserialize;

use crate::body::{IdempotencyKey, JsonBody, Path, Query};
use crate::context::{Caller, Scope};
use crate::creation::{self, create_once, Creation};
use crate::error::ApiError;
use crate::links::Links;
use crate::presenter::{accepted, run_status};
use crate::rate_limit::RateLimited;
use crate::state::AppState;
use crate::status_cache::{CachedStatus, StatusCache};

/// Starts a run for the caller's tenant.
#[utoipa::path(
    post,
    path = "/export-center/runs",
    tag = "runs",
    request_body = CreateRunRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 printable ASCII characters; replays the first answer",
            min_length = 1, max_length = 255, pattern = "^[\\x20-\\x7e]+$"),
    ),
    responses(
        (status = 202, description = "Run queued (or, with `Idempotent-Replayed: true`, the first answer replayed)", body = RunAccepted,
            headers(
                ("Location" = String, description = "The run's status link"),
                ("Retry-After" = u64, description = "Seconds before the first poll"),
            )),
        (status = 400, description = "Invalid request", body = Problem),
        (status = 404, description = "Unknown profile", body = Problem),
        (status = 409, description = "Same idempotent request in flight", body = Problem),
        (status = 413, description = "Body, targets or outputs over the limits", body = Problem),
        (status = 415, description = "Content type is not JSON", body = Problem),
        (status = 422, description = "Idempotency key reused with another body", body = Problem),
        (status = 429, description = "The tenant is creating runs faster than its limit", body = Problem,
            headers(
                ("Retry-After" = u64, description = "Seconds until the next run may be created"),
                ("RateLimit" = String, description = "`limit=<burst>, remaining=0, reset=<seconds>`"),
                ("RateLimit-Policy" = String, description = "`<burst>;w=<seconds>`"),
            )),
    )
)]
pub(crate) async fn create_run(
    State(app): State<AppState>,
    RateLimited(caller): RateLimited,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<CreateRunRequest>,
) -> Result<Response, ApiError> {
    let JsonBody {
        value: request,
        fingerprint,
    } = body;
    let profile_id = request.profile_id.clone();
    let pinned = request.profile_revision.clone();
    let new_run = creation::new_run(
        &app,
        &caller.tenant,
        caller.project.as_ref(),
        &profile_id,
        pinned.as_deref(),
        request.into(),
        Trigger::Api,
    )
    .await?;
    let claim = key.map(|key| claim(&caller, key, fingerprint));
    match create_once(&app, &caller.tenant, new_run, claim.as_ref()).await? {
        Creation::Created(run) => {
            tracing::info!(tenant.id = %caller.tenant, run.id = %run.id, "queued run {}", run.id);
            (app.wake_workers)();
            Ok(accepted_response(&run))
        }
        Creation::Replay(run) => Ok(replayed(accepted_response(&run))),
        Creation::InFlight { until } => Err(in_flight(&app, until)),
        Creation::Mismatch => Err(ApiError::new(
            ErrorCode::IdempotencyMismatch,
            "this Idempotency-Key was used with a different request body",
        )),
    }
}

/// The claim of `key` (SPEC §2.2: tenant, caller, method, path and key).
fn claim(caller: &Caller, key: String, fingerprint: Sha256Digest) -> IdempotencyClaim {
    IdempotencyClaim {
        subject: caller.subject.clone(),
        method: "POST".to_owned(),
        path: "/export-center/runs".to_owned(),
        key,
        fingerprint,
    }
}

/// `409`: the key's first request is still being handled; retry after its lease.
fn in_flight(app: &AppState, until: DateTime<Utc>) -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::Conflict,
        "a request with this Idempotency-Key is still being processed",
    );
    let left = (until - app.clock.now()).num_seconds().max(0) as u64;
    error.retry_after = Some(left + 1);
    error
}

fn replayed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn accepted_response(run: &Run) -> Response {
    let body = accepted(run);
    let mut response = (StatusCode::ACCEPTED, Json(&body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&body.links.status) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(body.retry_after));
    response
}

/// Status, progress, outputs and errors of one run.
#[utoipa::path(
    get,
    path = "/export-center/runs/{runId}",
    tag = "runs",
    params(
        ("runId" = String, Path, description = "export-run::<tenant>::<YYYY-MM-DD>::<seq>"),
    ),
    responses(
        (status = 200, description = "The run", body = RunStatusResponse),
        (status = 404, description = "No such run for this tenant", body = Problem),
    )
)]
pub(crate) async fn get_run(
    State(app): State<AppState>,
    Extension(statuses): Extension<Arc<StatusCache>>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ExportRead)?;
    let id = visible_id(&caller, &run_id)?;
    let now = app.clock.now();
    // An ended run's status is served from memory, after the same visibility check as a
    // stored one; see `status_cache` for why it cannot be stale.
    if let Some(cached) = statuses.get(&id, now) {
        check_project(&caller, &cached.run, &run_id)?;
        return Ok(cached_status_response(&app, &cached, now));
    }
    let run = fetch_visible(&app, &caller, &id, &run_id).await?;
    if let Some(cached) = statuses.insert(&run, now) {
        return Ok(cached_status_response(&app, &cached, now));
    }
    let mut status = run_status(&Links::new(&app), &run, now);
    if run.status == RunStatus::Queued {
        status.queue_position = app.store.queue_position(&caller.tenant, &run.id).await?;
    }
    Ok(Json(status).into_response())
}

/// The status body of an ended run for the current link window, rendered once per window.
fn cached_status_response(app: &AppState, cached: &CachedStatus, now: DateTime<Utc>) -> Response {
    let links = Links::new(app);
    let links_expire = links
        .for_run_at(&cached.run.id, cached.run.expires_at, now)
        .expires();
    let body = match cached.body(links_expire) {
        Some(body) => body,
        None => {
            let status = run_status(&links, &cached.run, now);
            let body = Bytes::from(serde_json::to_vec(&status).unwrap_or_default());
            cached.set_body(links_expire, body.clone());
            body
        }
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// The caller's run with this id, or `404` for a malformed id, another tenant's or
/// another project's run: existence never leaks.
pub(crate) async fn visible_run(app: &AppState, caller: &Caller, run_id: &str) -> Result<Run, ApiError> {
    let id = visible_id(caller, run_id)?;
    fetch_visible(app, caller, &id, run_id).await
}

/// The id, if it is well formed and names a run of the caller's tenant.
fn visible_id(caller: &Caller, run_id: &str) -> Result<RunId, ApiError> {
    RunId::parse(run_id)
        .ok()
        .filter(|id| id.tenant == caller.tenant)
        .ok_or_else(|| not_found(run_id))
}

async fn fetch_visible(app: &AppState, caller: &Caller, id: &RunId, run_id: &str) -> Result<Run, ApiError> {
    let run = app
        .store
        .get_run(&caller.tenant, id)
        .await?
        .ok_or_else(|| not_found(run_id))?;
    check_project(caller, &run, run_id)?;
    Ok(run)
}

/// A caller narrowed to a project sees only that project's runs.
fn check_project(caller: &Caller, run: &Run, run_id: &str) -> Result<(), ApiError> {
    if caller.project.is_some() && run.project != caller.project {
        return Err(not_found(run_id));
    }
    Ok(())
}

fn not_found(run_id: &str) -> ApiError {
    ApiError::not_found(format!("run `{run_id}`"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ListRunsParams {
    /// Only runs with this status.
    #[param(pattern = "^(queued|running|succeeded|failed|cancelled|expired)$")]
    status: Option<String>,
    /// Only runs of this profile.
    #[param(pattern = "^export-profile::[a-z0-9-]{1,64}::[a-z0-9-]{1,64}$")]
    profile_id: Option<String>,
    /// Only runs made this way: `api` (a request) or `schedule` (a profile's schedule).
    #[param(pattern = "^(api|schedule)$")]
    trigger: Option<String>,
    /// Page size, 1-200 (default 50). Read as text, so a bad value is named.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's runs, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/export-center/runs",
    tag = "runs",
    params(ListRunsParams),
    responses(
        (status = 200, description = "One page of runs", body = RunList),
        (status = 400, description = "Invalid filter, limit or cursor", body = Problem),
    )
)]
pub(crate) async fn list_runs(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<ListRunsParams>,
) -> Result<Json<RunList>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let query = params.query(&caller)?;
    let page = app.store.list_runs(&caller.tenant, &query).await?;
    let (links, now) = (Links::new(&app), app.clock.now());
    Ok(Json(RunList {
        items: page.runs.iter().map(|run| run_status(&links, run, now)).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

impl ListRunsParams {
    /// The store query these parameters ask for, each bad one named.
    fn query(self, caller: &Caller) -> Result<RunQuery, ApiError> {
        let status = self
            .status
            .map(|text| {
                RunStatus::parse(&text)
                    .ok_or_else(|| ApiError::invalid_field("status", format!("unknown status `{text}`")))
            })
            .transpose()?;
        let profile_id = self
            .profile_id
            .map(|text| {
                ProfileId::parse(&text).map_err(|err| ApiError::invalid_field("profileId", err.to_string()))
            })
            .transpose()?;
        let trigger = self
            .trigger
            .map(|text| {
                TriggerKind::parse(&text).ok_or_else(|| {
                    ApiError::invalid_field(
                        "trigger",
                        format!("unknown trigger `{text}`, expected `api` or `schedule`"),
                    )
                })
            })
            .transpose()?;
        let limit = match self.limit {
            None => 50,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| ApiError::invalid_field("limit", "must be a whole number from 1 to 200"))?,
        };
        let after = self
            .cursor
            .map(|cursor| decode_cursor(&caller.tenant, &cursor))
            .transpose()?;
        Ok(RunQuery {
            project: caller.project.clone(),
            status,
            profile_id,
            trigger,
            limit,
            after,
        })
    }
}

fn encode_cursor(run_id: &RunId) -> String {
    URL_SAFE_NO_PAD.encode(run_id.to_string())
}

fn decode_cursor(tenant: &TenantId, cursor: &str) -> Result<RunId, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| RunId::parse(&text).ok())
        .filter(|run_id| &run_id.tenant == tenant)
        .ok_or_else(|| ApiError::invalid_field("cursor", "not a cursor returned by this endpoint"))
}

/// Cancels a queued or running run.
#[utoipa::path(
    post,
    path = "/export-center/runs/{runId}/cancel",
    tag = "runs",
    params(
        ("runId" = String, Path, description = "export-run::<tenant>::<YYYY-MM-DD>::<seq>"),
    ),
    responses(
        (status = 202, description = "Cancelled, or cancellation requested", body = RunStatusResponse),
        (status = 404, description = "No such run for this tenant", body = Problem),
        (status = 409, description = "The run has already ended", body = Problem),
    )
)]
pub(crate) async fn cancel_run(
    State(app): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<(StatusCode, Json<RunStatusResponse>), ApiError> {
    caller.require(Scope::ExportWrite)?;
    let run = visible_run(&app, &caller, &run_id).await?;
    let outcome = app
        .store
        .request_cancel(&caller.tenant, &run.id, app.clock.now())
        .await?;
    match outcome {
        // A queued run ended here, and the store appended `cancelled` to its stream.
        CancelOutcome::Cancelled => app.events.notify(&run.id),
        CancelOutcome::Requested => {}
        CancelOutcome::AlreadyFinished(status) => return Err(already_ended(&run_id, status)),
        CancelOutcome::NotFound => return Err(not_found(&run_id)),
    }
    tracing::info!(tenant.id = %caller.tenant, run.id = %run.id, "cancel requested for run {}", run.id);
    let run = visible_run(&app, &caller, &run_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(run_status(&Links::new(&app), &run, app.clock.now())),
    ))
}

/// `409`: a run that has ended cannot be cancelled.
fn already_ended(run_id: &str, status: RunStatus) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!("run `{run_id}` has already ended ({status})"),
    )
}
