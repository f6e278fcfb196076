//! The `Store` trait: everything Export Center keeps in its database (evidence, runs,
//! outputs, idempotency records), behind one interface, implemented once for SQL
//! databases (`sql`, feature `sql`, over the SQLite and PostgreSQL backends' dialects)
//! and checked by one conformance suite (`testing`, feature `testing`).
//!
//! Every method that touches tenant data takes the `&TenantId`, and backends put it in
//! every query. The only cross-tenant methods are the worker's (`claim_next_run`,
//! `queue_depth`), which hand back runs whose ids carry their tenant, the event
//! streams' `event_watermark` (a bare number) and `runs_with_events_after` (run ids),
//! the operator's `latest_mirror_imports` (each import with its tenant), the
//! notification outbox's `unprepared_notifications` and `claim_deliveries` (each row
//! with its tenant), and the DPoP proof records (`record_proof`, `prune_proofs`), which
//! name nothing.

mod error;
pub mod ingest_plan;
mod model;
mod outbox;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use export_core::{
    EvidenceRecord, ProfileDefinition, ProfileId, ProfileName, RetryPolicy, RunId, Secret, SourceName,
    Target, TenantId, WebhookId,
};
use futures::stream::BoxStream;

pub use error::StoreError;
pub use export_core::Tombstone;
pub use model::*;
pub use outbox::*;

/// How long an idempotency record is kept (SPEC §2.2).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The `kind` of the `StoreError::NotFound` that `create_run` returns when its
/// idempotency claim is not (or no longer) the caller's.
pub const IDEMPOTENCY_CLAIM: &str = "idempotency claim";

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- evidence -------------------------------------------------------------------
    //
    // Every change of a tenant's evidence (a new version of an item, or the removal of
    // one) takes the tenant's next ingestion sequence. The snapshot at a watermark W
    // holds each item (a source and id) in its newest version at or below W, unless its
    // newest change at or below W is its removal: versions changed or removed after W
    // stay readable to a run that reads at W.

    /// Stores a batch of documents in one transaction. Each new or changed document gets
    /// the tenant's next ingestion sequence; an identical one is left alone; a changed
    /// one supersedes the previous version of the same (source, id) for later snapshots.
    /// A document removed earlier comes back as new (`IngestOutcome::Inserted`).
    async fn ingest(
        &self,
        tenant: &TenantId,
        items: &[NewEvidence],
    ) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Removes the items of `source` that `present` does not name: each current item of
    /// the source (of any kind) whose id is not in `present` gets a tombstone with the
    /// tenant's next ingestion sequence, in bytewise order of their ids, all in one
    /// transaction. Snapshots at or after a tombstone's sequence no longer hold its item;
    /// earlier ones still do. `ingest --sync` calls it once all the given documents are
    /// stored, with their ids. Returns the tombstones in the order of their sequences
    /// (none: no sequence is taken).
    async fn remove_absent(
        &self,
        tenant: &TenantId,
        source: &SourceName,
        present: &BTreeSet<String>,
        removed_at: DateTime<Utc>,
    ) -> Result<Vec<Tombstone>, StoreError>;

    /// The tenant's current snapshot point: the sequence of its newest change (0 when
    /// the tenant has no evidence) and when that change was ingested (for a removal, when
    /// it was made).
    async fn snapshot_point(&self, tenant: &TenantId) -> Result<SnapshotPoint, StoreError>;

    /// How many items of `target` the snapshot at `watermark` holds.
    async fn count_items(
        &self,
        tenant: &TenantId,
        watermark: i64,
        target: &Target,
    ) -> Result<u64, StoreError>;

    /// The items of `target` in the snapshot at `watermark`, sorted by (id, source,
    /// digest) bytewise, streamed so memory stays flat whatever the count.
    fn stream_items<'a>(
        &'a self,
        tenant: &'a TenantId,
        watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<EvidenceRecord, StoreError>>;

    /// The items of `target` added or changed after `after_watermark` that the snapshot
    /// at `up_to_watermark` holds: those whose version there was ingested in the interval
    /// (`after_watermark`, `up_to_watermark`], an item that came back after a removal
    /// included. The items of a delta mirror bundle (SPEC §15); the same order and
    /// records as `stream_items`.
    fn stream_changes<'a>(
        &'a self,
        tenant: &'a TenantId,
        after_watermark: i64,
        up_to_watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<EvidenceRecord, StoreError>>;

    /// How many records `stream_changes` gives for the same arguments: a delta's count.
    async fn count_changes(
        &self,
        tenant: &TenantId,
        after_watermark: i64,
        up_to_watermark: i64,
        target: &Target,
    ) -> Result<u64, StoreError>;

    /// The items of `target` removed in the interval (`after_watermark`,
    /// `up_to_watermark`] that the snapshot at `up_to_watermark` does not hold: the
    /// tombstones of a delta mirror bundle (SPEC §15), each item once, with the kind its
    /// last removal removed, sorted by (id, kind, source) bytewise. An item that came
    /// back after its removal and is there at `up_to_watermark` is not listed (it is
    /// among `stream_changes`); one added and removed within the interval is (removing
    /// what is not there changes nothing). An item is its (source, id), whatever the kind
    /// of its versions.
    fn stream_removals<'a>(
        &'a self,
        tenant: &'a TenantId,
        after_watermark: i64,
        up_to_watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<Tombstone, StoreError>>;

    // --- mirror imports (SPEC §15) ---------------------------------------------------

    /// The tenant's applied mirror bundles, newest first (at most `limit`); the first is
    /// the state the next bundle must continue from.
    async fn mirror_imports(&self, tenant: &TenantId, limit: u32) -> Result<Vec<MirrorImport>, StoreError>;

    /// The newest applied bundle of every tenant that has one, sorted by tenant (for the
    /// operator's readiness details; spans tenants, like `queue_depth`).
    async fn latest_mirror_imports(&self) -> Result<Vec<(TenantId, MirrorImport)>, StoreError>;

    /// Applies one mirror bundle in one transaction, or nothing: every item of `items` is
    /// ingested as `ingest` would (new, changed or unchanged, each new or changed one
    /// under the tenant's next ingestion sequence, with `import.imported_at` as its
    /// `ingested_at`); then for a `Delta` each of `removals` whose item (source, id) is
    /// current gets a tombstone (one that is not current is skipped), and for a `Full`
    /// every current item of the tenant (any source, any kind) that `items` did not name
    /// gets a tombstone (a full bundle makes the tenant's evidence exactly its items);
    /// then the import is recorded with the next generation (1, 2, 3 … per tenant).
    ///
    /// If the tenant's newest recorded generation is not `expected_generation` (None = no
    /// import yet) once the transaction holds the ingest lock, nothing is written and
    /// the answer is `StoreError::Conflict` (another import got there first). An `Err`
    /// from `items` aborts everything and is returned as is. An item named twice: the
    /// same digest is applied once; different digests are a `StoreError::Conflict`
    /// naming the source and id, and nothing is written. `items` is read in batches, so
    /// memory holds one batch and the (source, id) of each item named, not the bundle.
    async fn apply_mirror_import(
        &self,
        tenant: &TenantId,
        expected_generation: Option<i64>,
        import: &NewMirrorImport,
        items: BoxStream<'_, Result<NewEvidence, StoreError>>,
        removals: &[Tombstone],
    ) -> Result<MirrorImport, StoreError>;

    // --- idempotency ----------------------------------------------------------------

    /// Claims an idempotency key before a run is created, for `lease`: until then a
    /// retry of the same request is told it is in flight. A claim whose lease ran out
    /// without a run (its process died, or its request failed) is taken over by the next
    /// request with that key, whatever its body, so no key stays claimed by a process
    /// that is gone. A record older than `IDEMPOTENCY_TTL` counts as absent.
    async fn begin_idempotency(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<IdempotencyBegin, StoreError>;

    // --- runs -----------------------------------------------------------------------

    /// Creates a queued run with the tenant's next sequence number of the run's UTC day.
    /// With `idempotency`, the claim is completed with the new run in the same
    /// transaction, so a key can never yield two runs: when the claim is no longer this
    /// request's (another request took it over after its lease, or completed it), the
    /// run is not created and the error is `StoreError::NotFound` of kind
    /// `IDEMPOTENCY_CLAIM`.
    async fn create_run(
        &self,
        tenant: &TenantId,
        run: NewRun,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<Run, StoreError>;

    /// Creates the run of a schedule's fire (`run.trigger` is `Trigger::Schedule`) with
    /// `create_run`'s transaction, at most once per (tenant, profile, fire time) across
    /// every process: a unique constraint on the fire makes a second attempt, concurrent
    /// or later, write nothing and answer `FireCreation::AlreadyFired` with the run that
    /// exists. (`create_run` refuses such a duplicate with `StoreError::Conflict`.)
    async fn create_scheduled_run(&self, tenant: &TenantId, run: NewRun) -> Result<FireCreation, StoreError>;

    /// The schedule's state for the scheduler's catch-up rule: when a schedule with this
    /// `cron` and `timezone` was first seen for the profile (recorded as `now` by the
    /// first caller of any process; later callers read that), and the latest fire time a
    /// run of the profile was made for.
    async fn observe_schedule(
        &self,
        tenant: &TenantId,
        profile: &ProfileId,
        cron: &str,
        timezone: &str,
        now: DateTime<Utc>,
    ) -> Result<ScheduleState, StoreError>;

    async fn get_run(&self, tenant: &TenantId, run_id: &RunId) -> Result<Option<Run>, StoreError>;

    /// Newest first (by day, then sequence), filtered, one page.
    async fn list_runs(&self, tenant: &TenantId, query: &RunQuery) -> Result<RunPage, StoreError>;

    /// Cancels a queued run at once, appending `TerminalEvent::cancelled` to its stream
    /// and writing its `run.cancelled` notification in the same transaction, or flags a
    /// running one for its worker to stop.
    async fn request_cancel(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError>;

    /// Atomically claims the next runnable run for `worker`: a queued run, or a running
    /// one whose lease expired. Picks fairly across tenants (the tenant with the fewest
    /// active runs first), then by priority, then by age; never exceeds
    /// `max_active_per_tenant` running runs of one tenant. The claim increments
    /// `attempts`, sets `started_at` if unset, and takes a lease until `now + lease`.
    async fn claim_next_run(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max_active_per_tenant: u32,
    ) -> Result<Option<Run>, StoreError>;

    /// Extends the lease of `worker`'s attempt number `attempt` (the run's `attempts` when
    /// it claimed it); tells whether that attempt still holds the run (no other worker, and
    /// no later attempt of its own, took it over) and whether a cancel was requested.
    async fn heartbeat(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        worker: &str,
        attempt: u32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<LeaseState, StoreError>;

    async fn set_progress(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        items_completed: u64,
        items_total: u64,
    ) -> Result<(), StoreError>;

    /// Records an output that is now published (replacing one of the same path).
    async fn add_output(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        output: &RunOutput,
    ) -> Result<(), StoreError>;

    async fn get_output(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        path: &str,
    ) -> Result<Option<RunOutput>, StoreError>;

    /// Ends a run and appends `event` to its stream, in one transaction, which also
    /// writes the run's notification (`run.succeeded`, `run.failed`, `run.cancelled`). A failed or
    /// cancelled run loses its output records (the runner has deleted their bytes); a
    /// succeeded one gets `completed_at`, `expires_at` and its warnings. A run that has
    /// already ended is left as it is, and gets no second terminal event. A success is
    /// refused ([`Finished::CancelRequested`]) once a cancel of the run was accepted: the
    /// check is made under the run's row lock, so no cancel answered `202` is lost to a
    /// run that was just finishing.
    async fn finish_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        outcome: RunOutcome,
        event: &TerminalEvent,
        now: DateTime<Utc>,
    ) -> Result<Finished, StoreError>;

    /// Appends an event to the run's stream with the next sequence number (1, 2, 3 …).
    async fn append_event(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        event: &str,
        data: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;

    /// The run's events after `after` (exclusive), in order, at most `limit`.
    async fn events_after(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<RunEvent>, StoreError>;

    /// A number that moves whenever an event of any run is appended, by any process
    /// using this database: where a process starts following appends with
    /// `runs_with_events_after`. Like `queue_depth` it spans tenants, and like it, it
    /// reveals a number only, never an event or a run.
    async fn event_watermark(&self) -> Result<i64, StoreError>;

    /// The runs that had events appended after `watermark` (a value of
    /// `event_watermark`, or of this method), each once, and the watermark to ask from
    /// next; at most `limit` events are looked at per call, so a backlog takes several.
    /// It spans tenants like the worker's methods, and names runs (whose ids carry their
    /// tenant), never their events: the event streams use it to wake only the feeders of
    /// runs that moved. A backend whose event numbering does not follow commit order
    /// may miss a run here; the feeders' own polling is the backstop.
    async fn runs_with_events_after(&self, watermark: i64, limit: u32) -> Result<EventActivity, StoreError>;

    /// A queued run's place in its tenant's queue, in claim order (1 = next); `None`
    /// for a run that is not queued.
    async fn queue_position(&self, tenant: &TenantId, run_id: &RunId) -> Result<Option<u64>, StoreError>;

    /// Items per second of the profile's recent succeeded runs: their items over their
    /// total run time (`started_at` to `completed_at`), so long runs weigh more than
    /// short ones; `None` without such a run.
    async fn profile_throughput(
        &self,
        tenant: &TenantId,
        profile_id: &ProfileId,
    ) -> Result<Option<f64>, StoreError>;

    /// Succeeded runs of all tenants whose retention ended at or before `now`, oldest
    /// expiry first, at most `limit` (for the retention janitor).
    async fn runs_due_for_expiry(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<RunId>, StoreError>;

    /// Marks a succeeded run `expired` once its bytes are deleted, and writes its
    /// `run.expired` notification in the same transaction. The run record and its output
    /// records (the manifest digest among them) are kept.
    async fn mark_expired(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Queued runs of all tenants (for `export_queue_depth`).
    async fn queue_depth(&self) -> Result<u64, StoreError>;

    // --- Profiles of the API (SPEC §16) -----------------------------------------------

    /// Records a new profile `name` of the tenant with `definition` as version 1.
    /// `Conflict` when the tenant has a profile of that name, archived or not: a name
    /// keeps meaning what its runs were made with.
    async fn create_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        definition: &ProfileDefinition,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredProfile, StoreError>;

    /// Records `definition` as the profile's next revision, or changes nothing when it
    /// is the newest revision's definition. `NotFound` without such a profile,
    /// `Conflict` when it is archived.
    async fn update_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        definition: &ProfileDefinition,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredProfile, StoreError>;

    /// Archives the profile (no new runs); archiving it again changes nothing.
    /// `NotFound` without such a profile.
    async fn archive_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        at: DateTime<Utc>,
    ) -> Result<StoredProfile, StoreError>;

    /// The tenant's profile `name` at its newest revision, archived or not.
    async fn get_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Option<StoredProfile>, StoreError>;

    /// The tenant's profiles, archived ones included, sorted by name.
    async fn list_profiles(&self, tenant: &TenantId) -> Result<Vec<StoredProfile>, StoreError>;

    /// Every revision of the tenant's profile `name`, oldest first; empty without such
    /// a profile.
    async fn profile_revisions(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Vec<ProfileRevision>, StoreError>;

    /// The profiles of every tenant that are not archived, for the scheduler; each
    /// carries its tenant in its id.
    async fn active_profiles(&self) -> Result<Vec<StoredProfile>, StoreError>;

    // --- webhooks and the notification outbox (SPEC §16) -----------------------------
    //
    // A run's end writes a notification in its own transaction (`finish_run`,
    // `request_cancel` of a queued run, `mark_expired`). A delivery task then renders
    // its body once (`prepare_notification`, which also makes its deliveries) and sends
    // each delivery under a lease (`claim_deliveries`, `record_delivery_attempt`).

    /// Registers a webhook. An id already taken is `StoreError::Conflict`.
    async fn create_webhook(&self, tenant: &TenantId, webhook: &NewWebhook) -> Result<Webhook, StoreError>;

    /// The tenant's webhooks, oldest first.
    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError>;

    async fn get_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<Option<Webhook>, StoreError>;

    /// Deletes the webhook with its deliveries and their attempts (pending ones are not
    /// sent); false when the tenant has no such webhook.
    async fn delete_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<bool, StoreError>;

    /// Replaces the webhook's secret: every attempt after this signs with `secret`.
    /// False when the tenant has no such webhook.
    async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        id: &WebhookId,
        secret: &Secret,
    ) -> Result<bool, StoreError>;

    /// The webhook's deliveries, newest event first (at most `limit`), each with its
    /// attempts; `StoreError::NotFound` when the tenant has no such webhook.
    async fn webhook_deliveries(
        &self,
        tenant: &TenantId,
        id: &WebhookId,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Notifications of every tenant whose body is not rendered yet, oldest first, at
    /// most `limit` (for the delivery task; each names its run, whose id carries the
    /// tenant).
    async fn unprepared_notifications(&self, limit: u32) -> Result<Vec<Notification>, StoreError>;

    /// Stores the rendered `body` of a notification and, in the same transaction, makes
    /// its deliveries: one per webhook of the tenant subscribed to its event, and one to
    /// NATS with `nats`, each due at once. A compare-and-set: true for the one call that
    /// stored the body; a notification already prepared (by another process) is left as
    /// it is.
    async fn prepare_notification(
        &self,
        tenant: &TenantId,
        notification_id: &str,
        body: &[u8],
        nats: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Claims up to `limit` deliveries of any tenant that are due (pending, their next
    /// attempt at or before `now`, and not under a live lease) for `owner` until `now +
    /// lease`, oldest due first. Until then no other claimant gets them; a claimant that
    /// dies leaves them to the next claim after the lease.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records the attempt of a claimed delivery and releases its lease: delivered, or
    /// due again after `retry`'s backoff, or dead-lettered when that falls outside its
    /// window. `None` when the claim is no longer the caller's (its lease lapsed and
    /// another claim took the delivery, or its webhook was deleted): nothing is recorded.
    async fn record_delivery_attempt(
        &self,
        tenant: &TenantId,
        delivery: &ClaimedDelivery,
        result: &AttemptResult,
        retry: &RetryPolicy,
    ) -> Result<Option<DeliveryState>, StoreError>;

    // --- DPoP proofs ------------------------------------------------------------------

    /// Records a DPoP proof id (the SHA-256 of its `jti`) as seen until `until`: true if
    /// it is new, or its earlier record had expired by `now`; false if it was seen and
    /// its record still holds. Replicas on one database share the records, so a proof
    /// replayed to another replica is refused. A proof id is no tenant's data: it names
    /// nothing and reveals nothing.
    async fn record_proof(
        &self,
        jti_hash: &[u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets the proof records that expired by `now`; how many.
    async fn prune_proofs(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
