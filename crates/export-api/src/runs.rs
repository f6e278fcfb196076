//! `/export-center/runs`: create, read, list and cancel runs.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use export_api_types::{CreateRunRequest, Problem, RunAccepted, RunList, RunStatusResponse};
use export_core::{ErrorCode, PlannedDistribution, ProfileId, RunId, RunPlan, RunStatus, TenantId};
use export_store::{
    CancelOutcome, IdempotencyBegin, IdempotencyClaim, NewRun, Run, RunQuery, StoreError, IDEMPOTENCY_CLAIM,
};
use serde::Deserialize;

use crate::body::{IdempotencyKey, JsonBody};
use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::presenter::{accepted, links_expiry, run_status};
use crate::state::AppState;
use crate::status_cache::{CachedStatus, StatusCache};

/// Items per second assumed for a profile without finished runs.
const DEFAULT_THROUGHPUT: f64 = 2_000.0;

/// Starts a run for the caller's tenant.
#[utoipa::path(
    post,
    path = "/export-center/runs",
    tag = "runs",
    request_body = CreateRunRequest,
    params(
        ("X-StellaOps-Tenant" = String, Header, description = "The caller's tenant"),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 printable ASCII characters; replays the first answer"),
    ),
    responses(
        (status = 202, description = "Run queued", body = RunAccepted),
        (status = 400, description = "Invalid request", body = Problem),
        (status = 404, description = "Unknown profile", body = Problem),
        (status = 409, description = "Same idempotent request in flight", body = Problem),
        (status = 413, description = "Body, targets or outputs over the limits", body = Problem),
        (status = 415, description = "Content type is not JSON", body = Problem),
        (status = 422, description = "Idempotency key reused with another body", body = Problem),
    )
)]
pub(crate) async fn create_run(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<CreateRunRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ExportWrite)?;
    let rate = app.rate_limiter.acquire(&caller.tenant);
    if !rate.allowed {
        let mut error = ApiError::new(
            ErrorCode::RateLimit,
            format!(
                "tenant `{}` is creating runs faster than its limit",
                caller.tenant
            ),
        )
        .with_header("ratelimit", app.rate_limiter.header(&rate))
        .with_header("ratelimit-policy", app.rate_limiter.policy());
        error.retry_after = Some(rate.reset_seconds);
        return Err(error);
    }
    let JsonBody {
        value: request,
        fingerprint,
    } = body;
    let profile = ProfileId::parse(&request.profile_id)
        .ok()
        .and_then(|id| app.profiles.get(&caller.tenant, &id))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ProfileNotFound,
                format!("profile `{}` not found", request.profile_id),
            )
        })?;
    let plan = RunPlan::parse(profile, request.into(), &app.config.limits)?;
    check_keys(&app, &caller.tenant, &plan).await?;
    check_egress(&app, &caller.tenant, &plan)?;

    let new_run = plan_run(&app, &caller, plan).await?;
    let claim = key.map(|key| IdempotencyClaim {
        subject: caller.subject.clone(),
        method: "POST".to_owned(),
        path: "/export-center/runs".to_owned(),
        key,
        fingerprint,
    });
    let run = match create(&app, &caller.tenant, new_run, claim.as_ref()).await? {
        Creation::Created(run) => run,
        Creation::Replay(run_id) => {
            let run = app.store.get_run(&caller.tenant, &run_id).await?.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("idempotent replay of missing run {run_id}"))
            })?;
            let mut response = accepted_response(&run);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Creation::InFlight { until } => {
            let mut error = ApiError::new(
                ErrorCode::Conflict,
                "a request with this Idempotency-Key is still being processed",
            );
            let left = (until - app.clock.now()).num_seconds().max(0) as u64;
            error.retry_after = Some(left + 1);
            return Err(error);
        }
        Creation::Mismatch => {
            return Err(ApiError::new(
                ErrorCode::IdempotencyMismatch,
                "this Idempotency-Key was used with a different request body",
            ))
        }
    };
    tracing::info!(tenant.id = %caller.tenant, run.id = %run.id, "queued run {}", run.id);
    (app.wake_workers)();
    Ok(accepted_response(&run))
}

/// What creating a run under an optional `Idempotency-Key` came to (SPEC §2.2).
enum Creation {
    Created(Box<Run>),
    Replay(RunId),
    InFlight { until: DateTime<Utc> },
    Mismatch,
}

/// Creates `new_run`, at most once per idempotency key: the key is claimed for a short
/// lease, and the run's creation completes the claim in the same transaction. A request
/// that dies in between leaves a claim that its retry takes over once the lease lapses;
/// a request that outlived its lease and lost the key to a retry answers as that retry
/// would (usually the replay of its run).
async fn create(
    app: &AppState,
    tenant: &TenantId,
    new_run: NewRun,
    claim: Option<&IdempotencyClaim>,
) -> Result<Creation, StoreError> {
    let Some(claim) = claim else {
        let run = app.store.create_run(tenant, new_run, None).await?;
        return Ok(Creation::Created(Box::new(run)));
    };
    let lease = Duration::from_secs(app.config.limits.idempotency_lease_seconds);
    let begun = app
        .store
        .begin_idempotency(tenant, claim, app.clock.now(), lease)
        .await?;
    if begun == IdempotencyBegin::Started {
        fail::fail_point!("create-run-after-idempotency-claim");
        match app.store.create_run(tenant, new_run, Some(claim)).await {
            Err(StoreError::NotFound { kind, .. }) if kind == IDEMPOTENCY_CLAIM => {}
            created => return Ok(Creation::Created(Box::new(created?))),
        }
    }
    Ok(
        match app
            .store
            .begin_idempotency(tenant, claim, app.clock.now(), lease)
            .await?
        {
            IdempotencyBegin::Replay(run_id) => Creation::Replay(run_id),
            IdempotencyBegin::Mismatch => Creation::Mismatch,
            IdempotencyBegin::InFlight { until } => Creation::InFlight { until },
            // The key lapsed again with no run: ours now, but this request is done.
            IdempotencyBegin::Started => Creation::InFlight {
                until: app.clock.now() + lease,
            },
        },
    )
}

/// Refuses, at creation rather than as a failure later, a run whose signing or
/// encryption key cannot be used, and an unsigned run on a sealed site. Key files are
/// read on a blocking thread; the answer names the reference, the log the file.
async fn check_keys(app: &AppState, tenant: &TenantId, plan: &RunPlan) -> Result<(), ApiError> {
    if app.config.sealed && !plan.signing.enabled {
        return Err(ApiError::invalid_field(
            "distribution.signing.enabled",
            "signing is mandatory on a sealed site",
        ));
    }
    let (keyring, tenant) = (app.keyring.clone(), tenant.clone());
    let (key_ref, kms_key) = (plan.signing.key_ref.clone(), plan.encryption.kms_key.clone());
    let checked = tokio::task::spawn_blocking(move || {
        if let Some(key_ref) = &key_ref {
            keyring
                .signing_key(&tenant, key_ref)
                .map_err(|err| ("distribution.signing.keyRef", err))?;
        }
        if let Some(kms_key) = &kms_key {
            keyring
                .age_recipient(&tenant, kms_key)
                .map_err(|err| ("encryption.kmsKey", err))?;
        }
        Ok(())
    })
    .await
    .map_err(|err| ApiError::internal(anyhow::anyhow!("checking keys: {err}")))?;
    checked.map_err(|(field, err)| {
        tracing::warn!(field, file = ?err.path(), "refused a run's key: {err}");
        ApiError::invalid_field(field, err.to_string())
    })
}

/// Refuses a distribution that the egress rules forbid (SPEC §11, §17) or that lies
/// outside the tenant's repositories, and an `object` distribution on a server without
/// object storage. Connections are checked again when they are made.
fn check_egress(app: &AppState, tenant: &TenantId, plan: &RunPlan) -> Result<(), ApiError> {
    let egress = &app.config.egress;
    let (field, authority) = match &plan.distribution {
        PlannedDistribution::Http => return Ok(()),
        PlannedDistribution::Oci { reference } => {
            app.config
                .repository_prefixes
                .check(tenant, reference)
                .map_err(|reason| ApiError::egress_blocked("distribution.ref", reason))?;
            ("distribution.ref", reference.registry.clone())
        }
        PlannedDistribution::Object => {
            let endpoint = app
                .object
                .as_ref()
                .map(|object| object.authority().to_owned())
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "distribution.type",
                        "this server has no object storage configured for `object` distributions",
                    )
                })?;
            ("distribution.type", endpoint)
        }
    };
    egress
        .check_authority(&authority)
        .map_err(|refusal| ApiError::egress_blocked(field, refusal.to_string()))
}

/// Takes the snapshot point and estimates the run from the profile's past throughput.
async fn plan_run(app: &AppState, caller: &Caller, plan: RunPlan) -> Result<NewRun, ApiError> {
    let tenant = &caller.tenant;
    let snapshot = app.store.snapshot_point(tenant).await?;
    let mut items_total = 0;
    for target in &plan.targets {
        items_total += app.store.count_items(tenant, snapshot.watermark, target).await?;
    }
    let throughput = app
        .store
        .profile_throughput(tenant, &plan.profile_id)
        .await?
        .unwrap_or(DEFAULT_THROUGHPUT);
    let estimate_seconds = ((items_total as f64 / throughput.max(1.0)).ceil() as u64).max(1);
    Ok(NewRun {
        profile_id: plan.profile_id.clone(),
        project: caller.project.clone(),
        plan,
        watermark: snapshot.watermark,
        snapshot_at: snapshot.at,
        items_total,
        estimate_seconds,
        created_at: app.clock.now(),
    })
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
        ("X-StellaOps-Tenant" = String, Header, description = "The caller's tenant"),
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
    let mut status = run_status(&app, &run, now);
    if run.status == RunStatus::Queued {
        status.queue_position = app.store.queue_position(&caller.tenant, &run.id).await?;
    }
    Ok(Json(status).into_response())
}

/// The status body of an ended run for the current link window, rendered once per window.
fn cached_status_response(app: &AppState, cached: &CachedStatus, now: DateTime<Utc>) -> Response {
    let links_expire = links_expiry(app, &cached.run, now);
    let body = match cached.body(links_expire) {
        Some(body) => body,
        None => {
            let status = run_status(app, &cached.run, now);
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
    status: Option<String>,
    /// Only runs of this profile.
    profile_id: Option<String>,
    /// Page size, 1-200 (default 50).
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's runs, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/export-center/runs",
    tag = "runs",
    params(ListRunsParams, ("X-StellaOps-Tenant" = String, Header, description = "The caller's tenant")),
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
    let status = params
        .status
        .map(|text| {
            RunStatus::parse(&text)
                .ok_or_else(|| ApiError::invalid_field("status", format!("unknown status `{text}`")))
        })
        .transpose()?;
    let profile_id = params
        .profile_id
        .map(|text| {
            ProfileId::parse(&text).map_err(|err| ApiError::invalid_field("profileId", err.to_string()))
        })
        .transpose()?;
    let limit = match params.limit {
        None => 50,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::invalid_field("limit", "must be a whole number from 1 to 200"))?,
    };
    let after = params
        .cursor
        .map(|cursor| decode_cursor(&caller.tenant, &cursor))
        .transpose()?;
    let query = RunQuery {
        project: caller.project.clone(),
        status,
        profile_id,
        limit,
        after,
    };
    let page = app.store.list_runs(&caller.tenant, &query).await?;
    let now = app.clock.now();
    Ok(Json(RunList {
        items: page.runs.iter().map(|run| run_status(&app, run, now)).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
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
        ("X-StellaOps-Tenant" = String, Header, description = "The caller's tenant"),
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
    match app
        .store
        .request_cancel(&caller.tenant, &run.id, app.clock.now())
        .await?
    {
        // A queued run ended here, and the store appended `cancelled` to its stream.
        CancelOutcome::Cancelled => app.events.notify(&run.id),
        CancelOutcome::Requested => {}
        CancelOutcome::AlreadyFinished(status) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("run `{run_id}` has already ended ({status})"),
            ))
        }
        CancelOutcome::NotFound => return Err(ApiError::not_found(format!("run `{run_id}`"))),
    }
    tracing::info!(tenant.id = %caller.tenant, run.id = %run.id, "cancel requested for run {}", run.id);
    let run = visible_run(&app, &caller, &run_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(run_status(&app, &run, app.clock.now())),
    ))
}
