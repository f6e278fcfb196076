//! The scheduler (SPEC §16): in every process with workers, a pass every
//! `workers.scheduler_interval_seconds` over the scheduled profiles makes each one's due
//! fire (`FireTimes::due`: the latest fire not yet made, never one from before the
//! schedule was first seen) through the API's own creation path, and the store keeps it
//! to one run per fire whichever replica gets there first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use export_core::{ErrorCode, Profile, ProfileId, RunId, Trigger};
use export_store::{FireCreation, StoreError};
use tokio_util::sync::CancellationToken;

use crate::catalog;
use crate::creation;
use crate::error::ApiError;
use crate::state::AppState;

/// Counter of schedule fires by `outcome`: `created` (this process made the run),
/// `already_fired` (another process had), `refused` (the request cannot be planned any
/// more: logged once per fire and not retried), `failed` (the store or a key could not be
/// read; retried at the next pass).
pub const SCHEDULE_FIRES_METRIC: &str = "export_schedule_fires_total";

/// The profiles the scheduler fires, of every tenant: the one place it reads profiles,
/// those of the configuration file and the active ones of the API (archived profiles
/// take no runs), each at its newest revision.
pub async fn scheduled_profiles(app: &AppState) -> Result<Vec<Profile>, StoreError> {
    let active = catalog::active_profiles(app.store.as_ref(), &app.profiles).await?;
    Ok(active
        .into_iter()
        .filter(|profile| profile.definition.schedule.is_some())
        .collect())
}

/// What one pass did for one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    Created(RunId),
    AlreadyFired(RunId),
    /// The fire's request is refused now (a key or the egress rules changed, a delta has
    /// no base): the problem is logged and the fire is not tried again.
    Refused {
        fire: DateTime<Utc>,
        detail: String,
    },
}

pub struct Scheduler {
    app: AppState,
    /// Per profile, the last fire this process found refused, so that it is logged and
    /// counted once rather than at every pass until the next fire.
    refused: Mutex<HashMap<ProfileId, DateTime<Utc>>>,
}

impl Scheduler {
    pub fn new(app: AppState) -> Self {
        Self {
            app,
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Passes every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.pass().await;
        }
    }

    /// One pass over every scheduled profile at the clock's time; wakes the workers when
    /// it made a run.
    pub async fn pass(&self) -> Vec<FireOutcome> {
        let mut outcomes = Vec::new();
        let profiles = match scheduled_profiles(&self.app).await {
            Ok(profiles) => profiles,
            Err(err) => {
                metrics::counter!(SCHEDULE_FIRES_METRIC, "outcome" => "failed").increment(1);
                tracing::warn!(error = ?err, "the scheduled profiles could not be read; retried at the next pass");
                return outcomes;
            }
        };
        for profile in profiles {
            match self.fire(&profile).await {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) => {}
                Err(err) => {
                    metrics::counter!(SCHEDULE_FIRES_METRIC, "outcome" => "failed").increment(1);
                    tracing::warn!(
                        tenant.id = %profile.id.tenant, profile.id = %profile.id,
                        error = ?err.source, "schedule of profile {} not fired: {}", profile.id, err.detail
                    );
                }
            }
        }
        if outcomes
            .iter()
            .any(|outcome| matches!(outcome, FireOutcome::Created(_)))
        {
            (self.app.wake_workers)();
        }
        outcomes
    }

    /// The due fire of `profile`, if any, made through the API's creation path.
    async fn fire(&self, profile: &Profile) -> Result<Option<FireOutcome>, ApiError> {
        let Some(schedule) = &profile.definition.schedule else {
            return Ok(None);
        };
        let times = schedule
            .fire_times()
            .map_err(|err| ApiError::invalid_field(err.field, err.message))?;
        let (app, tenant) = (&self.app, &profile.id.tenant);
        let now = app.clock.now();
        let state = app
            .store
            .observe_schedule(tenant, &profile.id, &schedule.cron, &schedule.timezone, now)
            .await?;
        let Some(fire) = times.due(now, state.last_fire, state.since) else {
            return Ok(None);
        };
        if self.refused_before(&profile.id) == Some(fire) {
            return Ok(None);
        }
        let trigger = Trigger::Schedule { at: fire };
        let new_run = match creation::new_run(
            app,
            tenant,
            None,
            &profile.id.to_string(),
            // The revision whose schedule fired, even if a newer one was recorded since.
            Some(&profile.revision),
            schedule.request.clone(),
            trigger,
        )
        .await
        {
            Ok(new_run) => new_run,
            Err(err) if err.code == ErrorCode::Internal => return Err(err),
            Err(err) => return Ok(Some(self.refuse(profile, fire, &err))),
        };
        Ok(Some(
            match app.store.create_scheduled_run(tenant, new_run).await? {
                FireCreation::Created(run) => {
                    metrics::counter!(SCHEDULE_FIRES_METRIC, "outcome" => "created").increment(1);
                    tracing::info!(
                        tenant.id = %tenant, run.id = %run.id, profile.id = %profile.id, fire = %fire,
                        "queued run {} for the schedule of profile {} at {fire}", run.id, profile.id
                    );
                    FireOutcome::Created(run.id)
                }
                FireCreation::AlreadyFired(run_id) => {
                    metrics::counter!(SCHEDULE_FIRES_METRIC, "outcome" => "already_fired").increment(1);
                    tracing::debug!(
                        tenant.id = %tenant, run.id = %run_id, profile.id = %profile.id, fire = %fire,
                        "the fire at {fire} of profile {} already has run {run_id}", profile.id
                    );
                    FireOutcome::AlreadyFired(run_id)
                }
            },
        ))
    }

    fn refused_before(&self, profile: &ProfileId) -> Option<DateTime<Utc>> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(profile)
            .copied()
    }

    fn refuse(&self, profile: &Profile, fire: DateTime<Utc>, err: &ApiError) -> FireOutcome {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(profile.id.clone(), fire);
        metrics::counter!(SCHEDULE_FIRES_METRIC, "outcome" => "refused").increment(1);
        let fields: Vec<&str> = err.errors.iter().map(|error| error.field.as_str()).collect();
        let detail = match fields.as_slice() {
            [] => err.detail.clone(),
            fields => format!("schedule.request.{}: {}", fields.join(", "), err.detail),
        };
        tracing::warn!(
            tenant.id = %profile.id.tenant, profile.id = %profile.id, fire = %fire, code = %err.code,
            "the schedule of profile {} cannot fire at {fire}: {detail}", profile.id
        );
        FireOutcome::Refused { fire, detail }
    }
}
