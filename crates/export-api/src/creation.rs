//! Run creation behind `POST /export-center/runs`: the checks a plan must pass before it
//! is recorded, the snapshot and estimate, and the idempotent create (SPEC §2.1, §2.2).

use std::time::Duration;

use chrono::{DateTime, Utc};
use export_core::{
    MirrorBase, MirrorMode, OutputKind, PlannedDistribution, ProfileId, ProjectId, RunPlan, RunRequest,
    RunStatus, TenantId, Trigger, MANIFEST_PATH,
};
use export_store::{
    IdempotencyBegin, IdempotencyClaim, NewRun, Run, RunQuery, StoreError, IDEMPOTENCY_CLAIM,
};

use crate::catalog;
use crate::error::ApiError;
use crate::state::AppState;

/// Items per second assumed for a profile without finished runs.
const DEFAULT_THROUGHPUT: f64 = 2_000.0;

/// The run `request` asks of `tenant`'s profile `profile_id` (at its newest revision, or
/// the `pinned` one), checked in the order of
/// SPEC §2.1 from step 3 on (profile, plan, keys, egress), with its snapshot point and
/// estimate. The one creation path: the API's requests (`Trigger::Api`, with the
/// caller's project) and the scheduler's fires (no project) both come through here.
pub(crate) async fn new_run(
    app: &AppState,
    tenant: &TenantId,
    project: Option<&ProjectId>,
    profile_id: &str,
    pinned: Option<&str>,
    request: RunRequest,
    trigger: Trigger,
) -> Result<NewRun, ApiError> {
    let profile = catalog::for_run(app, tenant, profile_id, pinned).await?;
    let mut plan = RunPlan::parse(&profile, request, &app.config.limits)?;
    resolve_mirror_base(app, tenant, &mut plan).await?;
    check_keys(app, tenant, &plan).await?;
    check_egress(app, tenant, &plan)?;
    let mut new_run = plan_run(app, tenant, plan).await?;
    new_run.project = project.cloned();
    new_run.trigger = trigger;
    Ok(new_run)
}

/// What creating a run under an optional `Idempotency-Key` came to (SPEC §2.2).
pub(crate) enum Creation {
    Created(Box<Run>),
    /// The key's first request created this run: its answer is replayed.
    Replay(Box<Run>),
    InFlight {
        until: DateTime<Utc>,
    },
    Mismatch,
}

/// Creates `new_run`, at most once per idempotency key: the key is claimed for a short
/// lease, and the run's creation completes the claim in the same transaction. A request
/// that dies in between leaves a claim that its retry takes over once the lease lapses;
/// a request that outlived its lease and lost the key to a retry answers as that retry
/// would (usually the replay of its run).
///
/// A store failure after the claim is returned (a `5xx`, logged with its cause) and the
/// claim lapses with its lease, after which a retry takes the key over: nothing needs
/// releasing, so nothing can stay "in flight" past the lease.
pub(crate) async fn create_once(
    app: &AppState,
    tenant: &TenantId,
    new_run: NewRun,
    claim: Option<&IdempotencyClaim>,
) -> Result<Creation, ApiError> {
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
            IdempotencyBegin::Replay(run_id) => {
                let run = app.store.get_run(tenant, &run_id).await?.ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("idempotent replay of missing run {run_id}"))
                })?;
                Creation::Replay(Box::new(run))
            }
            IdempotencyBegin::Mismatch => Creation::Mismatch,
            IdempotencyBegin::InFlight { until } => Creation::InFlight { until },
            // The key lapsed again with no run: ours now, but this request is done.
            IdempotencyBegin::Started => Creation::InFlight {
                until: app.clock.now() + lease,
            },
        },
    )
}

/// Fixes a delta mirror run's base (SPEC §15): the run the request named, or else the
/// newest succeeded mirror run of the profile. The base must be a mirror run of the same
/// profile and targets that wrote a manifest; its watermark and the manifest's digest are
/// what the sealed site recorded when it imported it. No such run is
/// `400 ERR_EXPORT_BASE_MISSING` naming `mirror.baseRunId`.
async fn resolve_mirror_base(app: &AppState, tenant: &TenantId, plan: &mut RunPlan) -> Result<(), ApiError> {
    let targets = plan.targets.clone();
    let Some(mirror) = plan
        .mirror
        .as_mut()
        .filter(|mirror| mirror.mode == MirrorMode::Delta)
    else {
        return Ok(());
    };
    let base = match &mirror.base_run_id {
        Some(run_id) => app
            .store
            .get_run(tenant, run_id)
            .await?
            .ok_or_else(|| ApiError::base_missing(format!("run `{run_id}` not found")))?,
        None => newest_mirror_run(app, tenant, &plan.profile_id)
            .await?
            .ok_or_else(|| {
                ApiError::base_missing(format!(
                    "profile `{}` has no succeeded mirror run to continue from; make a `full` one first",
                    plan.profile_id
                ))
            })?,
    };
    let refuse = |reason: &str| Err(ApiError::base_missing(format!("run `{}` {reason}", base.id)));
    if !matches!(base.status, RunStatus::Succeeded | RunStatus::Expired) {
        return refuse(&format!("is {}, not succeeded", base.status));
    }
    if base.profile_id != plan.profile_id || base.plan.mirror.is_none() {
        return refuse(&format!("is no mirror run of profile `{}`", plan.profile_id));
    }
    if base.plan.targets != targets {
        return refuse("mirrored other targets; a delta continues a mirror of the same targets");
    }
    let Some(manifest) = base
        .outputs
        .iter()
        .find(|output| output.kind == OutputKind::Manifest && output.path == MANIFEST_PATH)
    else {
        return refuse("has no manifest to continue from");
    };
    mirror.base_run_id = Some(base.id.clone());
    mirror.base = Some(MirrorBase {
        watermark: base.watermark,
        manifest_digest: manifest.sha256,
    });
    Ok(())
}

/// The newest succeeded mirror run of `profile`, looking through the profile's
/// succeeded runs newest first.
async fn newest_mirror_run(
    app: &AppState,
    tenant: &TenantId,
    profile: &ProfileId,
) -> Result<Option<Run>, ApiError> {
    let mut query = RunQuery {
        status: Some(RunStatus::Succeeded),
        profile_id: Some(profile.clone()),
        limit: 50,
        ..RunQuery::default()
    };
    loop {
        let page = app.store.list_runs(tenant, &query).await?;
        if let Some(run) = page.runs.into_iter().find(|run| run.plan.mirror.is_some()) {
            return Ok(Some(run));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(None),
        }
    }
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
async fn plan_run(app: &AppState, tenant: &TenantId, plan: RunPlan) -> Result<NewRun, ApiError> {
    let snapshot = app.store.snapshot_point(tenant).await?;
    let mut items_total = 0;
    for target in &plan.targets {
        items_total += match plan.mirror_base() {
            Some(base) => {
                app.store
                    .count_changes(tenant, base.watermark, snapshot.watermark, target)
                    .await?
            }
            None => app.store.count_items(tenant, snapshot.watermark, target).await?,
        };
    }
    let throughput = app
        .store
        .profile_throughput(tenant, &plan.profile_id)
        .await?
        .unwrap_or(DEFAULT_THROUGHPUT);
    let estimate_seconds = ((items_total as f64 / throughput.max(1.0)).ceil() as u64).max(1);
    Ok(NewRun {
        profile_id: plan.profile_id.clone(),
        project: None,
        plan,
        watermark: snapshot.watermark,
        snapshot_at: snapshot.at,
        items_total,
        estimate_seconds,
        created_at: app.clock.now(),
        trigger: Trigger::Api,
    })
}
