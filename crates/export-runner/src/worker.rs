//! Workers: claim a run, hold its lease with a heartbeat, execute it under a timeout,
//! and record how it ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use export_artifacts::{ArtifactError, ArtifactStore};
use export_core::{Clock, ErrorCode, RunStatus};
use export_distribution::ObjectPublisher;
use export_oci::OciPublisher;
use export_signing::Keyring;
use export_store::{Finished, Run, RunError, RunOutcome, Store, StoreError, TerminalEvent};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::events::{EventNotifier, EventSink};
use crate::export::{execute_export, ExportContext, ExportError};

/// How long a run over its job timeout may take to stop after it is told to.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Names this process in leases; unique per process.
    pub worker_id: String,
    /// Runs executed at the same time by this process.
    pub concurrency: usize,
    /// How long an idle worker waits before looking for work again (it is also woken
    /// at once when this process creates a run).
    pub poll_interval: Duration,
    pub lease: Duration,
    pub heartbeat_interval: Duration,
    pub max_active_per_tenant: u32,
    /// The attempt after this many fails the run for good.
    pub max_attempts: u32,
    pub job_timeout: Duration,
    /// Where `kms://` signing and encryption keys live.
    pub keyring: Keyring,
    /// A bundle larger than this fails the run with `ERR_EXPORT_TOO_LARGE`.
    pub max_bundle_bytes: u64,
    /// How often the retention janitor looks for expired runs.
    pub janitor_interval: Duration,
    /// Registries that `oci` distributions push to.
    pub oci: OciPublisher,
    /// The bucket that `object` distributions upload to, if the server has one.
    pub object: Option<ObjectPublisher>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", std::process::id()),
            concurrency: 2,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            max_active_per_tenant: 4,
            max_attempts: 3,
            job_timeout: Duration::from_secs(60 * 60),
            keyring: Keyring::new("keyrings"),
            max_bundle_bytes: 500 * 1024 * 1024,
            janitor_interval: Duration::from_secs(60),
            oci: OciPublisher::default(),
            object: None,
        }
    }
}

/// The run engine of one process. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    artifacts: ArtifactStore,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    export: ExportContext,
    wake: Notify,
}

impl Runner {
    pub fn new(
        store: Arc<dyn Store>,
        artifacts: ArtifactStore,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
        notify: EventNotifier,
    ) -> Self {
        let export = ExportContext {
            store: store.clone(),
            artifacts: artifacts.clone(),
            keyring: config.keyring.clone(),
            max_bundle_bytes: config.max_bundle_bytes,
            events: EventSink::new(store.clone(), clock.clone(), notify),
            oci: config.oci.clone(),
            object: config.object.clone(),
        };
        Self {
            inner: Arc::new(Inner {
                store,
                artifacts,
                clock,
                config,
                export,
                wake: Notify::new(),
            }),
        }
    }

    /// Wakes an idle worker: called when a run was just queued.
    pub fn notify(&self) {
        self.inner.wake.notify_one();
    }

    /// Claims and executes runs until none is left to claim; returns how many ran.
    /// Tests use it to drain the queue on demand, so timing never decides an outcome.
    pub async fn run_pending(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        while self.run_one().await? {
            count += 1;
        }
        Ok(count)
    }

    /// Claims one run and executes it; false when there was nothing to claim.
    pub async fn run_one(&self) -> anyhow::Result<bool> {
        let config = &self.inner.config;
        let claimed = self
            .inner
            .store
            .claim_next_run(
                &config.worker_id,
                self.inner.clock.now(),
                config.lease,
                config.max_active_per_tenant,
            )
            .await?;
        match claimed {
            Some(run) => {
                let span = tracing::info_span!("run", tenant.id = %run.id.tenant, run.id = %run.id, attempt = run.attempts);
                self.execute(run).instrument(span).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Deletes the bytes of every succeeded run past its retention and marks it
    /// `expired`; the run record and its manifest digest stay. Returns how many expired.
    pub async fn expire_due(&self) -> anyhow::Result<usize> {
        let inner = &self.inner;
        let mut expired = 0;
        loop {
            let due = inner.store.runs_due_for_expiry(inner.clock.now(), 100).await?;
            if due.is_empty() {
                return Ok(expired);
            }
            for run_id in due {
                let deleted = inner.artifacts.delete_run(&run_id).await?;
                inner
                    .store
                    .mark_expired(&run_id.tenant, &run_id, inner.clock.now())
                    .await?;
                tracing::info!(tenant.id = %run_id.tenant, run.id = %run_id, "run {run_id} expired; deleted {deleted} artifacts");
                expired += 1;
            }
        }
    }

    /// Starts `concurrency` worker loops and the retention janitor; they run until
    /// `shutdown` is cancelled, each worker finishing the run in hand before it exits.
    pub fn spawn(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = (0..self.inner.config.concurrency.max(1))
            .map(|_| {
                let runner = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { runner.work_loop(shutdown).await })
            })
            .collect();
        let janitor = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(err) = janitor.expire_due().await {
                    tracing::error!(error = format!("{err:#}"), "the retention janitor failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(janitor.inner.config.janitor_interval) => {}
                }
            }
        }));
        tasks
    }

    async fn work_loop(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let worked = match self.run_one().await {
                Ok(worked) => worked,
                Err(err) => {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "worker could not claim or finish a run"
                    );
                    false
                }
            };
            if !worked {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.inner.wake.notified() => {}
                    _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
                }
            }
        }
    }

    async fn execute(&self, run: Run) -> anyhow::Result<()> {
        let inner = &self.inner;
        let profile = run.profile_id.to_string();

        if run.attempts > inner.config.max_attempts {
            let error = RunError {
                code: ErrorCode::Internal,
                message: format!(
                    "the run was abandoned after {} attempts",
                    inner.config.max_attempts
                ),
                retry_after_seconds: None,
            };
            tracing::error!(
                "run {} gave up after {} attempts",
                run.id,
                inner.config.max_attempts
            );
            inner.artifacts.delete_run(&run.id).await?;
            self.finish(&run, RunOutcome::Failed(error), inner.clock.now())
                .await?;
            metrics::counter!("export_runs_total", "status" => "failed", "profile" => profile).increment(1);
            return Ok(());
        }

        // A restarted run starts from a clean slate: whatever an earlier attempt left is
        // rewritten byte for byte, so nothing of it needs to be kept.
        inner.artifacts.delete_run(&run.id).await?;
        tracing::info!("starting run {} (attempt {})", run.id, run.attempts);
        if run.attempts == 1 {
            inner.export.events.started(&run.id).await;
        }

        let cancel = CancellationToken::new();
        let lease_lost = Arc::new(AtomicBool::new(false));
        if run.cancel_requested {
            cancel.cancel();
        }
        let heartbeat = self.spawn_heartbeat(&run, cancel.clone(), lease_lost.clone());
        let started = Instant::now();
        let export = execute_export(&inner.export, &run, &cancel);
        tokio::pin!(export);
        let result = match tokio::time::timeout(inner.config.job_timeout, &mut export).await {
            Ok(result) => Ok(result),
            Err(elapsed) => {
                // Stopped through its token rather than dropped, so that its writers abort
                // their uploads and no blocking write of theirs lands after the cleanup
                // below; dropped only if it does not stop within the grace period.
                cancel.cancel();
                let _ = tokio::time::timeout(STOP_GRACE, &mut export).await;
                Err(elapsed)
            }
        };
        heartbeat.abort();

        // Only the attempt that still holds the run may end it or delete its bytes: a
        // worker whose lease lapsed (a stalled process, a database that was away) while
        // another took the run over would otherwise fail that worker's attempt under its
        // feet. An attempt that cannot tell (the database is still away) ends nothing:
        // its lease lapses and the run is tried again.
        if lease_lost.load(Ordering::SeqCst) || !self.still_holds(&run).await? {
            tracing::warn!(
                "run {} was taken over by another worker; leaving it to that worker",
                run.id
            );
            return Ok(());
        }
        if let Ok(Err(ExportError::Internal(err))) = &result {
            if backend_failure(err) {
                // Not the run's fault: the database or the artifact store went away
                // mid-run. The attempt is left to lapse and the run tried again, up to
                // `max_attempts`, from a clean slate.
                anyhow::bail!("run {} stopped, to be tried again: {err:#}", run.id);
            }
        }
        let now = inner.clock.now();
        let outcome = match result {
            Ok(Ok(exported)) => {
                let expires_at = now + chrono::Duration::days(i64::from(run.plan.retention_days));
                RunOutcome::Succeeded {
                    expires_at,
                    warnings: exported.warnings,
                    published_ref: exported.published_ref,
                }
            }
            Ok(Err(ExportError::Cancelled)) => RunOutcome::Cancelled,
            Ok(Err(ExportError::Failed {
                code,
                message,
                retry_after_seconds,
            })) => RunOutcome::Failed(RunError {
                code,
                message,
                retry_after_seconds,
            }),
            Ok(Err(ExportError::Internal(err))) => {
                tracing::error!(error = format!("{err:#}"), "run {} failed", run.id);
                RunOutcome::Failed(match storage_full(&err) {
                    Some(reason) => RunError {
                        code: ErrorCode::StorageFull,
                        message: format!(
                            "{reason}; nothing of the run was kept: retry it once space is freed"
                        ),
                        retry_after_seconds: Some(STORAGE_FULL_RETRY_SECONDS),
                    },
                    None => RunError {
                        code: ErrorCode::Internal,
                        message:
                            "the export failed unexpectedly; the server log has the cause under this run id"
                                .to_owned(),
                        retry_after_seconds: Some(60),
                    },
                })
            }
            Err(_elapsed) => RunOutcome::Failed(RunError {
                code: ErrorCode::Timeout,
                message: format!(
                    "the run exceeded the job timeout of {} s",
                    inner.config.job_timeout.as_secs()
                ),
                retry_after_seconds: None,
            }),
        };
        if !matches!(outcome, RunOutcome::Succeeded { .. }) {
            inner.artifacts.delete_run(&run.id).await?;
        }
        let mut status = outcome.status();
        if self.finish(&run, outcome, now).await? == Finished::CancelRequested {
            // A cancel was accepted after the export's last look at its token: the
            // cancel wins, as its `202` promised.
            inner.artifacts.delete_run(&run.id).await?;
            status = RunStatus::Cancelled;
            self.finish(&run, RunOutcome::Cancelled, inner.clock.now())
                .await?;
        }
        tracing::info!(
            "run {} finished {status} in {:.3} s",
            run.id,
            started.elapsed().as_secs_f64()
        );
        metrics::counter!("export_runs_total", "status" => status.as_str(), "profile" => profile.clone())
            .increment(1);
        metrics::histogram!("export_run_duration_seconds", "profile" => profile)
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Whether this attempt still holds `run`: its lease renewed just now, so no other
    /// attempt can claim the run for a lease period.
    async fn still_holds(&self, run: &Run) -> anyhow::Result<bool> {
        let inner = &self.inner;
        let state = inner
            .store
            .heartbeat(
                &run.id.tenant,
                &run.id,
                &inner.config.worker_id,
                run.attempts,
                inner.clock.now(),
                inner.config.lease,
            )
            .await?;
        Ok(state.owned)
    }

    /// Records how the run ended, with the terminal event of its stream in the same
    /// write, and wakes this process's listeners. Download links are signed by the
    /// stream from the paths the event names.
    async fn finish(&self, run: &Run, outcome: RunOutcome, now: DateTime<Utc>) -> anyhow::Result<Finished> {
        let event = TerminalEvent::of(&run.id, &outcome, run.plan.signing.enabled);
        let finished = self
            .inner
            .store
            .finish_run(&run.id.tenant, &run.id, outcome, &event, now)
            .await?;
        self.inner.export.events.stored(&run.id);
        Ok(finished)
    }

    /// Renews the lease while the run executes and watches for a cancel request: the
    /// request is noticed within `CANCEL_POLL`, the lease renewed every heartbeat
    /// interval. Cancels the run when a cancel was requested or the lease went to
    /// another worker.
    fn spawn_heartbeat(
        &self,
        run: &Run,
        cancel: CancellationToken,
        lease_lost: Arc<AtomicBool>,
    ) -> JoinHandle<()> {
        let inner = self.inner.clone();
        let tenant = run.id.tenant.clone();
        let run_id = run.id.clone();
        let attempt = run.attempts;
        tokio::spawn(async move {
            let config = &inner.config;
            let mut last_beat = Instant::now();
            loop {
                tokio::time::sleep(CANCEL_POLL.min(config.heartbeat_interval)).await;
                if last_beat.elapsed() < config.heartbeat_interval {
                    if let Ok(Some(current)) = inner.store.get_run(&tenant, &run_id).await {
                        if current.cancel_requested {
                            cancel.cancel();
                        }
                    }
                    continue;
                }
                last_beat = Instant::now();
                let state = inner
                    .store
                    .heartbeat(
                        &tenant,
                        &run_id,
                        &config.worker_id,
                        attempt,
                        inner.clock.now(),
                        config.lease,
                    )
                    .await;
                match state {
                    Ok(state) if !state.owned => {
                        lease_lost.store(true, Ordering::SeqCst);
                        cancel.cancel();
                        return;
                    }
                    Ok(state) if state.cancel_requested => cancel.cancel(),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "heartbeat for run {run_id} failed"),
                }
            }
        })
    }
}

/// Why storage with no room stopped an export, if it did: the artifact store refused an
/// output (`ArtifactError::StorageFull`) or the database a write (`StoreError::StorageFull`),
/// anywhere in the error's chain.
fn storage_full(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(ArtifactError::StorageFull { reason, .. }) = cause.downcast_ref() {
            return Some(reason.to_string());
        }
        match cause.downcast_ref() {
            Some(StoreError::StorageFull(_)) => Some("the database is full".to_owned()),
            _ => None,
        }
    })
}

/// When a run that failed for want of storage may be tried again.
const STORAGE_FULL_RETRY_SECONDS: u64 = 300;

/// How soon a running run notices a cancel request.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// Whether `err` comes from the database or the artifact store failing a request (a
/// restart, a dropped connection) rather than from the run itself.
fn backend_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<export_store::StoreError>(),
            Some(export_store::StoreError::Backend(_))
        ) || matches!(
            cause.downcast_ref::<export_artifacts::ArtifactError>(),
            Some(export_artifacts::ArtifactError::Backend(_))
        )
    })
}
