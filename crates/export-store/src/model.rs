//! Rows the store reads and writes, in domain types.

use chrono::{DateTime, NaiveDate, Utc};
use export_core::{
    DocumentFormat, ErrorCode, ImportedState, Kind, MirrorMode, OutputKind, Priority, Profile,
    ProfileDefinition, ProfileId, ProjectId, RunId, RunPlan, RunStatus, Sha256Digest, SourceName, Trigger,
    TriggerKind, MANIFEST_DSSE_PATH, MANIFEST_PATH,
};
use serde::{Deserialize, Serialize};

/// A parsed document about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvidence {
    pub source: SourceName,
    pub kind: Kind,
    pub format: DocumentFormat,
    pub id: String,
    pub modified: Option<String>,
    pub aliases: Vec<String>,
    /// SHA-256 of `document`.
    pub digest: Sha256Digest,
    /// RFC 8785 canonical JSON.
    pub document: Vec<u8>,
    pub ingested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A (source, id) without a current version (new, or removed earlier), stored with
    /// this ingestion sequence.
    Inserted { seq: i64 },
    /// A new version of an existing (source, id).
    Replaced { seq: i64 },
    /// Identical to the current version, which keeps its sequence.
    Unchanged { seq: i64 },
}

/// The point a run's snapshot is taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPoint {
    /// The tenant's newest change (a stored version or a removal): its ingestion
    /// sequence, 0 when the tenant has no evidence.
    pub watermark: i64,
    /// When the change at `watermark` was ingested (a removal: when it was made).
    pub at: Option<DateTime<Utc>>,
}

/// A verified mirror bundle about to be applied to a sealed site's store
/// (`Store::apply_mirror_import`), as its `mirror.json` and manifest describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMirrorImport {
    pub mode: MirrorMode,
    /// The connected site's watermark: what the next delta's base names.
    pub watermark: i64,
    /// Of the bundle's `manifest.json`, the other half of the state a delta continues.
    pub manifest_digest: Sha256Digest,
    pub snapshot_time: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Also the `ingested_at` of the versions and the `removed_at` of the tombstones the
    /// import writes, so the sealed site's snapshot time says when its data arrived.
    pub imported_at: DateTime<Utc>,
}

/// A mirror bundle applied to a tenant's store, numbered 1, 2, 3 … per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorImport {
    pub generation: i64,
    pub mode: MirrorMode,
    pub watermark: i64,
    pub manifest_digest: Sha256Digest,
    pub snapshot_time: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub imported_at: DateTime<Utc>,
    /// Items inserted: new, or back after a removal.
    pub added: u64,
    /// Items replaced by a new version.
    pub changed: u64,
    /// Items identical to their current version.
    pub unchanged: u64,
    /// Tombstones written.
    pub removed: u64,
    /// The sealed store's own snapshot point after the import (its local sequence), which
    /// has nothing to do with the connected site's `watermark`.
    pub local_watermark: i64,
}

impl MirrorImport {
    /// The state the next bundle of the chain must continue from (`check_chain`).
    pub fn state(&self) -> ImportedState {
        ImportedState {
            watermark: self.watermark,
            manifest_digest: self.manifest_digest,
        }
    }
}

/// The identity and fingerprint of an idempotent request (SPEC §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The caller's `sub`.
    pub subject: String,
    pub method: String,
    pub path: String,
    pub key: String,
    /// SHA-256 of the canonical request body.
    pub fingerprint: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key is ours: go on and create the run.
    Started,
    /// The same request already created this run.
    Replay(RunId),
    /// The same request is being handled right now; its claim lasts until `until`.
    InFlight { until: DateTime<Utc> },
    /// The key was used with another body.
    Mismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub profile_id: ProfileId,
    pub project: Option<ProjectId>,
    pub plan: RunPlan,
    /// The snapshot the run reads.
    pub watermark: i64,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub items_total: u64,
    pub estimate_seconds: u64,
    pub created_at: DateTime<Utc>,
    /// A request to the API, or a schedule's fire (at most one run per fire).
    pub trigger: Trigger,
}

impl NewRun {
    /// The UTC day whose sequence numbers the run takes.
    pub fn day(&self) -> NaiveDate {
        self.created_at.date_naive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunWarning {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub message: String,
}

/// One published file of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutput {
    /// The target kind for data files, else `trivy-db`, `manifest`, `checksums`,
    /// `provenance`, `bundle`.
    #[serde(rename = "type")]
    pub kind: OutputKind,
    /// The target (`advisory:osv-go`) or the output's name.
    pub id: String,
    pub format: String,
    /// The file name inside the run (`advisory.ndjson`).
    pub path: String,
    pub sha256: Sha256Digest,
    pub bytes: u64,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub profile_id: ProfileId,
    pub project: Option<ProjectId>,
    pub status: RunStatus,
    pub plan: RunPlan,
    pub watermark: i64,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub items_total: u64,
    pub items_completed: u64,
    pub estimate_seconds: u64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub cancel_requested: bool,
    pub error: Option<RunError>,
    pub warnings: Vec<RunWarning>,
    /// Sorted by (type, id, format, path).
    pub outputs: Vec<RunOutput>,
    /// Where a succeeded run was published beyond our own artifact store: the pushed
    /// reference with its digest for an OCI distribution (`host/repo@sha256:…`).
    pub published_ref: Option<String>,
    pub trigger: Trigger,
}

impl Run {
    pub fn priority(&self) -> Priority {
        self.plan.priority
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only runs of this project.
    pub project: Option<ProjectId>,
    pub status: Option<RunStatus>,
    pub profile_id: Option<ProfileId>,
    /// Only runs made this way (`?trigger=api|schedule`).
    pub trigger: Option<TriggerKind>,
    /// Page size, 1-200.
    pub limit: u32,
    /// Continue after this run (exclusive), in newest-first order.
    pub after: Option<RunId>,
}

/// What creating the run of a schedule's fire came to (`Store::create_scheduled_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireCreation {
    Created(Box<Run>),
    /// A run for this fire exists already (another process made it): nothing was written.
    AlreadyFired(RunId),
}

/// What the store knows of a profile's schedule (`Store::observe_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleState {
    /// When a scheduler of any process first saw this schedule (its cron and time zone).
    pub since: DateTime<Utc>,
    /// The latest fire time a run of the profile was made for, by any schedule.
    pub last_fire: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// The last run of this page when more follow.
    pub next: Option<RunId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued and is now cancelled.
    Cancelled,
    /// The run is running; its worker will stop it.
    Requested,
    /// The run had already ended with this status.
    AlreadyFinished(RunStatus),
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// False when another worker took the run over (this worker must stop).
    pub owned: bool,
    pub cancel_requested: bool,
}

/// What [`crate::Store::finish_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The run ended as asked, with its terminal event.
    Recorded,
    /// The run had already ended; nothing was written.
    AlreadyEnded,
    /// A success was refused because a cancel was accepted (`202`) while the run ran:
    /// nothing was written, and the worker must delete the run's bytes and end it
    /// cancelled, so that an accepted cancel always ends in `cancelled`.
    CancelRequested,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded {
        expires_at: DateTime<Utc>,
        warnings: Vec<RunWarning>,
        /// See [`Run::published_ref`].
        published_ref: Option<String>,
    },
    Failed(RunError),
    Cancelled,
}

impl RunOutcome {
    pub fn status(&self) -> RunStatus {
        match self {
            Self::Succeeded { .. } => RunStatus::Succeeded,
            Self::Failed(_) => RunStatus::Failed,
            Self::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// Which runs had events appended since a watermark (`Store::runs_with_events_after`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventActivity {
    /// Where to ask from next time.
    pub watermark: i64,
    /// Each run once, in the order of its first new event.
    pub runs: Vec<RunId>,
    /// Whether `limit` events were looked at: more may be waiting.
    pub more: bool,
}

/// One stored event of a run (SPEC §7). `data` holds no signed URL: the stream signs
/// fresh links from the `path`s it names when it sends the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    /// 1, 2, 3 … per run: the SSE `id`.
    pub seq: i64,
    /// `started`, `progress`, `artifact_ready`, `completed`, `failed` or `cancelled`.
    pub event: String,
    pub data: serde_json::Value,
}

impl RunEvent {
    /// Whether the stream ends after this event.
    pub fn is_terminal(&self) -> bool {
        matches!(self.event.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// The event that ends a run's stream. The store appends it in the same transaction as
/// the run's end ([`crate::Store::finish_run`], and [`crate::Store::request_cancel`] for
/// a queued run), so no reader ever finds an ended run whose stream has not ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalEvent {
    /// `completed`, `failed` or `cancelled`.
    pub event: &'static str,
    pub data: serde_json::Value,
}

impl TerminalEvent {
    /// The event of `outcome` (SPEC §7). `completed` names the manifest's path, and the
    /// envelope's when the run is `signed`; the stream turns paths into signed URLs.
    pub fn of(run_id: &RunId, outcome: &RunOutcome, signed: bool) -> Self {
        let run_id = run_id.to_string();
        match outcome {
            RunOutcome::Succeeded { .. } => {
                let mut data = serde_json::json!({ "runId": run_id, "status": "succeeded", "manifestPath": MANIFEST_PATH });
                if signed {
                    data["manifestDssePath"] = serde_json::json!(MANIFEST_DSSE_PATH);
                }
                Self {
                    event: "completed",
                    data,
                }
            }
            RunOutcome::Failed(error) => {
                let mut data = serde_json::json!({
                    "runId": run_id,
                    "status": "failed",
                    "code": error.code,
                    "message": error.message,
                });
                if let Some(seconds) = error.retry_after_seconds {
                    data["retryAfterSeconds"] = serde_json::json!(seconds);
                }
                Self {
                    event: "failed",
                    data,
                }
            }
            RunOutcome::Cancelled => Self::cancelled(&run_id),
        }
    }

    /// The event of a cancelled run.
    pub fn cancelled(run_id: &impl std::fmt::Display) -> Self {
        Self {
            event: "cancelled",
            data: serde_json::json!({ "runId": run_id.to_string(), "status": "cancelled" }),
        }
    }
}

/// A profile created through the API (SPEC §16), at its newest revision. Profiles of the
/// configuration file are never stored: they are the configuration's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    /// The id, the newest revision's digest and its definition.
    pub profile: Profile,
    /// The newest revision's number: 1 when created, one more with each change.
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set once the profile is archived: it takes no new runs, and what it made stays.
    pub archived_at: Option<DateTime<Utc>>,
}

/// One immutable revision of a stored profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRevision {
    pub version: u32,
    /// `sha256:<hex>` of the definition's canonical JSON (`Profile::new`).
    pub revision: String,
    pub definition: ProfileDefinition,
    pub created_at: DateTime<Utc>,
    /// The token subject that wrote it.
    pub created_by: String,
}
