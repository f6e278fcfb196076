//! Every [`Dialect`] is a [`Store`]: the trait's methods, each the one implementation of
//! its logic in `export_store::sql`.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use export_core::{
    EvidenceRecord, ProfileDefinition, ProfileId, ProfileName, RetryPolicy, RunId, Secret, SourceName,
    Target, TenantId, WebhookId,
};
use futures::stream::BoxStream;

use crate::sql::database::query;
use crate::sql::dialect::Dialect;
use crate::sql::{events, evidence, idempotency, mirror, notifications, profiles, proofs, runs, schedules};
use crate::{
    AttemptResult, CancelOutcome, ClaimedDelivery, DeliveryRecord, DeliveryState, EventActivity, Finished,
    FireCreation, IdempotencyBegin, IdempotencyClaim, IngestOutcome, LeaseState, MirrorImport, NewEvidence,
    NewMirrorImport, NewRun, NewWebhook, Notification, ProfileRevision, Run, RunEvent, RunOutcome, RunOutput,
    RunPage, RunQuery, ScheduleState, SnapshotPoint, Store, StoreError, StoredProfile, TerminalEvent,
    Tombstone, Webhook,
};

#[async_trait]
impl<D: Dialect> Store for D {
    async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    async fn ingest(
        &self,
        tenant: &TenantId,
        items: &[NewEvidence],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        evidence::ingest(self, tenant, items).await
    }

    async fn remove_absent(
        &self,
        tenant: &TenantId,
        source: &SourceName,
        present: &BTreeSet<String>,
        removed_at: DateTime<Utc>,
    ) -> Result<Vec<Tombstone>, StoreError> {
        evidence::remove_absent(self, tenant, source, present, removed_at).await
    }

    async fn snapshot_point(&self, tenant: &TenantId) -> Result<SnapshotPoint, StoreError> {
        evidence::snapshot_point(self, tenant).await
    }

    async fn count_items(
        &self,
        tenant: &TenantId,
        watermark: i64,
        target: &Target,
    ) -> Result<u64, StoreError> {
        evidence::count_items(self, tenant, watermark, target).await
    }

    async fn count_changes(
        &self,
        tenant: &TenantId,
        after_watermark: i64,
        up_to_watermark: i64,
        target: &Target,
    ) -> Result<u64, StoreError> {
        evidence::count_changes(self, tenant, after_watermark, up_to_watermark, target).await
    }

    fn stream_items<'a>(
        &'a self,
        tenant: &'a TenantId,
        watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
        evidence::stream_items(self, tenant, watermark, target)
    }

    fn stream_changes<'a>(
        &'a self,
        tenant: &'a TenantId,
        after_watermark: i64,
        up_to_watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
        evidence::stream_changes(self, tenant, after_watermark, up_to_watermark, target)
    }

    fn stream_removals<'a>(
        &'a self,
        tenant: &'a TenantId,
        after_watermark: i64,
        up_to_watermark: i64,
        target: &'a Target,
    ) -> BoxStream<'a, Result<Tombstone, StoreError>> {
        evidence::stream_removals(self, tenant, after_watermark, up_to_watermark, target)
    }

    async fn mirror_imports(&self, tenant: &TenantId, limit: u32) -> Result<Vec<MirrorImport>, StoreError> {
        mirror::imports(self, tenant, limit).await
    }

    async fn latest_mirror_imports(&self) -> Result<Vec<(TenantId, MirrorImport)>, StoreError> {
        mirror::latest_imports(self).await
    }

    async fn apply_mirror_import(
        &self,
        tenant: &TenantId,
        expected_generation: Option<i64>,
        import: &NewMirrorImport,
        items: BoxStream<'_, Result<NewEvidence, StoreError>>,
        removals: &[Tombstone],
    ) -> Result<MirrorImport, StoreError> {
        mirror::apply(self, tenant, expected_generation, import, items, removals).await
    }

    async fn begin_idempotency(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<IdempotencyBegin, StoreError> {
        idempotency::begin(self, tenant, claim, now, lease).await
    }

    async fn create_run(
        &self,
        tenant: &TenantId,
        run: NewRun,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<Run, StoreError> {
        match runs::create(self, tenant, run, idempotency).await? {
            FireCreation::Created(run) => Ok(*run),
            FireCreation::AlreadyFired(run_id) => Err(StoreError::conflict(
                "schedule fire",
                format!("run `{run_id}` was made for this fire"),
            )),
        }
    }

    async fn create_scheduled_run(&self, tenant: &TenantId, run: NewRun) -> Result<FireCreation, StoreError> {
        if run.trigger.fire_time().is_none() {
            return Err(StoreError::conflict("schedule fire", "the run has no fire time"));
        }
        runs::create(self, tenant, run, None).await
    }

    async fn observe_schedule(
        &self,
        tenant: &TenantId,
        profile: &ProfileId,
        cron: &str,
        timezone: &str,
        now: DateTime<Utc>,
    ) -> Result<ScheduleState, StoreError> {
        schedules::observe(self, tenant, profile, cron, timezone, now).await
    }

    async fn get_run(&self, tenant: &TenantId, run_id: &RunId) -> Result<Option<Run>, StoreError> {
        runs::get(self, tenant, run_id).await
    }

    async fn list_runs(&self, tenant: &TenantId, query: &RunQuery) -> Result<RunPage, StoreError> {
        runs::list(self, tenant, query).await
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        runs::request_cancel(self, tenant, run_id, now).await
    }

    async fn claim_next_run(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max_active_per_tenant: u32,
    ) -> Result<Option<Run>, StoreError> {
        runs::claim_next(self, worker, now, lease, max_active_per_tenant).await
    }

    async fn heartbeat(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        worker: &str,
        attempt: u32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<LeaseState, StoreError> {
        runs::heartbeat(self, tenant, run_id, worker, attempt, now, lease).await
    }

    async fn set_progress(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        items_completed: u64,
        items_total: u64,
    ) -> Result<(), StoreError> {
        runs::set_progress(self, tenant, run_id, items_completed, items_total).await
    }

    async fn add_output(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        output: &RunOutput,
    ) -> Result<(), StoreError> {
        runs::add_output(self, tenant, run_id, output).await
    }

    async fn get_output(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        path: &str,
    ) -> Result<Option<RunOutput>, StoreError> {
        runs::get_output(self, tenant, run_id, path).await
    }

    async fn finish_run(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        outcome: RunOutcome,
        event: &TerminalEvent,
        now: DateTime<Utc>,
    ) -> Result<Finished, StoreError> {
        runs::finish(self, tenant, run_id, outcome, event, now).await
    }

    async fn append_event(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        event: &str,
        data: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        events::append_event(self, tenant, run_id, event, data, now).await
    }

    async fn events_after(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<RunEvent>, StoreError> {
        events::events_after(self, tenant, run_id, after, limit).await
    }

    async fn event_watermark(&self) -> Result<i64, StoreError> {
        events::event_watermark(self).await
    }

    async fn runs_with_events_after(&self, watermark: i64, limit: u32) -> Result<EventActivity, StoreError> {
        events::runs_with_events_after(self, watermark, limit).await
    }

    async fn queue_position(&self, tenant: &TenantId, run_id: &RunId) -> Result<Option<u64>, StoreError> {
        runs::queue_position(self, tenant, run_id).await
    }

    async fn profile_throughput(
        &self,
        tenant: &TenantId,
        profile_id: &ProfileId,
    ) -> Result<Option<f64>, StoreError> {
        runs::profile_throughput(self, tenant, profile_id).await
    }

    async fn runs_due_for_expiry(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<RunId>, StoreError> {
        runs::due_for_expiry(self, now, limit).await
    }

    async fn mark_expired(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        runs::mark_expired(self, tenant, run_id, now).await
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        runs::queue_depth(self).await
    }

    async fn create_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        definition: &ProfileDefinition,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredProfile, StoreError> {
        profiles::create(self, tenant, name, definition, by, at).await
    }

    async fn update_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        definition: &ProfileDefinition,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredProfile, StoreError> {
        profiles::update(self, tenant, name, definition, by, at).await
    }

    async fn archive_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        at: DateTime<Utc>,
    ) -> Result<StoredProfile, StoreError> {
        profiles::archive(self, tenant, name, at).await
    }

    async fn get_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Option<StoredProfile>, StoreError> {
        profiles::current(self.pool(), tenant, name).await
    }

    async fn list_profiles(&self, tenant: &TenantId) -> Result<Vec<StoredProfile>, StoreError> {
        profiles::list(self, Some(tenant)).await
    }

    async fn profile_revisions(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Vec<ProfileRevision>, StoreError> {
        profiles::revisions(self, tenant, name).await
    }

    async fn active_profiles(&self) -> Result<Vec<StoredProfile>, StoreError> {
        profiles::list(self, None).await
    }

    async fn record_proof(
        &self,
        jti_hash: &[u8; 32],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        proofs::record(self, jti_hash, until, now).await
    }

    async fn prune_proofs(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        proofs::prune(self, now).await
    }

    async fn create_webhook(&self, tenant: &TenantId, webhook: &NewWebhook) -> Result<Webhook, StoreError> {
        notifications::create_webhook(self, tenant, webhook).await
    }

    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError> {
        notifications::webhooks(self, tenant).await
    }

    async fn get_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        notifications::get_webhook(self, tenant, id).await
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<bool, StoreError> {
        notifications::delete_webhook(self, tenant, id).await
    }

    async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        id: &WebhookId,
        secret: &Secret,
    ) -> Result<bool, StoreError> {
        notifications::rotate_secret(self, tenant, id, secret).await
    }

    async fn webhook_deliveries(
        &self,
        tenant: &TenantId,
        id: &WebhookId,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        notifications::deliveries(self, tenant, id, limit).await
    }

    async fn unprepared_notifications(&self, limit: u32) -> Result<Vec<Notification>, StoreError> {
        notifications::unprepared(self, limit).await
    }

    async fn prepare_notification(
        &self,
        tenant: &TenantId,
        notification_id: &str,
        body: &[u8],
        nats: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        notifications::prepare(self, tenant, notification_id, body, nats, now).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        notifications::claim(self, owner, now, lease, limit).await
    }

    async fn record_delivery_attempt(
        &self,
        tenant: &TenantId,
        delivery: &ClaimedDelivery,
        result: &AttemptResult,
        retry: &RetryPolicy,
    ) -> Result<Option<DeliveryState>, StoreError> {
        notifications::record_attempt(self, tenant, delivery, result, retry).await
    }
}
