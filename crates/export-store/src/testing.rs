//! The conformance suite every `Store` backend passes: plain async functions that each
//! take a fresh, empty store and check one behaviour a user would notice, plus
//! `conformance_tests!`, which turns every one of them into a test of a backend:
//!
//! ```ignore
//! async fn fresh_store() -> Box<dyn export_store::Store> { /* a new, empty database */ }
//!
//! export_store::conformance_tests!(fresh_store);
//! ```
//!
//! Time never passes by itself here: every call gets an explicit `now`, so leases,
//! expiry and ordering are decided by the test, not by the machine's speed.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use export_core::{
    canonical_json, DocumentFormat, ErrorCode, EvidenceRecord, ImportedState, Kind, Limits, MirrorMode,
    Priority, Profile, ProfileId, ProfileName, ProjectId, RunId, RunPlan, RunRequest, RunStatus,
    Sha256Digest, SourceName, Target, TenantId, Trigger,
};
use futures::{StreamExt, TryStreamExt};

mod schedules;
pub use schedules::*;
mod notifications;

pub use notifications::*;

use crate::{
    CancelOutcome, EventActivity, Finished, IdempotencyBegin, IdempotencyClaim, IngestOutcome, LeaseState,
    MirrorImport, NewEvidence, NewMirrorImport, NewRun, Run, RunError, RunOutcome, RunOutput, RunQuery,
    RunWarning, SnapshotPoint, Store, StoreError, TerminalEvent, Tombstone, IDEMPOTENCY_TTL,
};

/// Expands into one `#[test]` per conformance function, each running on a fresh store
/// from `$factory`: an async function (or closure) returning `Box<dyn Store>` or
/// `Arc<dyn Store>`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::conformance_tests!(@each $factory;
            ping_answers,
            ingest_numbers_new_documents_per_tenant,
            reingesting_an_identical_document_changes_nothing,
            changed_document_replaces_it_and_older_snapshots_keep_the_old_version,
            a_batch_may_carry_several_versions_of_one_document,
            snapshot_point_is_the_latest_ingestion,
            items_are_counted_and_streamed_per_target,
            items_stream_in_bytewise_id_source_digest_order,
            a_large_batch_ingests_in_one_call,
            a_removed_item_leaves_later_snapshots_and_stays_in_earlier_ones,
            an_item_ingested_again_after_its_removal_comes_back_at_a_new_sequence,
            removals_touch_only_their_tenant_and_source,
            changes_and_removals_are_read_per_interval,
            a_full_mirror_import_into_an_empty_tenant_stores_exactly_its_items,
            a_delta_mirror_import_adds_changes_and_removes,
            a_full_mirror_import_removes_every_item_the_bundle_lacks,
            a_mirror_import_that_expected_another_generation_conflicts_and_changes_nothing,
            an_error_in_a_mirror_bundles_items_aborts_the_whole_import,
            mirror_imports_are_per_tenant,
            an_item_named_twice_in_a_mirror_bundle_is_applied_once_or_conflicts,
            tenants_never_see_each_others_data,
            run_ids_are_numbered_per_tenant_per_utc_day,
            get_run_returns_every_field_as_created,
            list_runs_is_newest_first_and_filters,
            list_runs_pages_through_every_run_once,
            idempotent_create_replays_the_first_run,
            idempotency_key_with_another_body_is_a_mismatch,
            idempotency_claim_still_in_flight_is_reported,
            lapsed_idempotency_claim_is_taken_over_and_a_live_one_is_not,
            idempotency_records_expire_after_the_ttl,
            idempotency_keys_are_scoped_by_tenant_subject_method_path_and_key,
            create_run_needs_a_begun_idempotency_claim,
            claim_finds_nothing_when_no_run_is_queued,
            claim_starts_the_run_under_a_lease,
            claimed_run_is_not_claimed_again_while_its_lease_holds,
            run_whose_lease_expired_is_claimed_again,
            claims_take_higher_priority_first_then_older,
            claims_are_fair_across_tenants,
            claims_respect_the_active_run_limit_per_tenant,
            heartbeat_extends_the_lease_of_its_owner,
            heartbeat_reports_a_cancel_request,
            cancelling_a_queued_run_cancels_it_at_once,
            cancelling_a_running_run_asks_its_worker_to_stop,
            cancelling_a_finished_run_reports_how_it_ended,
            cancelling_an_unknown_run_is_not_found,
            progress_is_recorded,
            outputs_are_replaced_by_path_and_listed_in_order,
            succeeded_run_records_its_completion,
            failed_run_keeps_its_error_and_drops_its_outputs,
            cancelled_run_drops_its_outputs,
            finished_run_keeps_its_first_outcome,
            a_runs_end_and_its_terminal_event_are_stored_together,
            profile_throughput_comes_from_succeeded_runs,
            queue_depth_counts_queued_runs_of_every_tenant,
            succeeded_runs_past_retention_are_due_and_expire_keeping_their_records,
            run_events_are_numbered_per_run_and_read_after_an_id,
            queued_runs_know_their_place_in_the_tenants_queue,
            event_watermark_moves_with_every_appended_event,
            runs_with_events_after_names_each_run_that_moved_once,
            get_run_reads_runs_with_and_without_outputs,
            proof_ids_are_accepted_once_until_their_record_expires,
            a_created_profile_is_version_one_of_its_definition,
            a_profile_name_is_taken_once_even_when_archived,
            each_changed_definition_is_a_new_immutable_revision,
            an_archived_profile_takes_no_new_revision_and_stays_readable,
            updating_or_archiving_an_unknown_profile_is_not_found,
            profiles_are_per_tenant_and_active_profiles_span_tenants,
            a_schedule_fire_makes_one_run_and_a_second_attempt_nothing,
            list_runs_filters_by_trigger,
            a_schedule_keeps_its_first_sighting_and_reads_its_latest_fire,
            a_runs_end_writes_one_notification_with_its_terminal_event,
            preparing_a_notification_makes_a_delivery_per_subscriber,
            a_claimed_delivery_is_taken_over_only_after_its_lease,
            failed_deliveries_back_off_then_are_dead_lettered_after_a_day,
            webhooks_and_deliveries_are_per_tenant,
            a_deleted_webhook_gets_no_more_deliveries,
        );

        $crate::conformance_tests!(@shared $factory;
            concurrent_claimers_claim_every_run_exactly_once,
            concurrent_claimers_keep_each_tenants_active_run_limit,
            concurrent_appends_number_a_runs_events_without_gaps,
            concurrent_run_creation_numbers_a_days_runs_once_each,
            concurrent_ingests_of_one_tenant_store_every_version_once,
            concurrent_removals_of_one_tenant_remove_each_item_once,
            concurrent_mirror_imports_of_one_tenant_apply_one,
            concurrent_takeovers_of_a_lapsed_idempotency_claim_start_one_request,
            concurrent_updates_of_a_profile_number_every_revision_once,
            concurrent_creators_of_one_fire_make_one_run,
            concurrent_claimers_claim_each_delivery_once,
        );
    };
    (@shared $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::block_on(async {
                    let store: ::std::sync::Arc<dyn $crate::Store> = ($factory)().await.into();
                    $crate::testing::$name(store).await;
                });
            }
        )*
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::block_on(async {
                    let store: ::std::sync::Arc<dyn $crate::Store> = ($factory)().await.into();
                    $crate::testing::$name(&*store).await;
                });
            }
        )*
    };
}

/// Runs one conformance test on a multi-threaded runtime of its own, so the suite works
/// in any crate without that crate naming tokio, and races between tasks are real.
#[doc(hidden)]
pub fn block_on<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("building the test runtime")
        .block_on(test)
}

// --- fixtures ---------------------------------------------------------------------------

/// The lease every test claims with.
pub const LEASE: Duration = Duration::from_secs(30);

/// A roomy active-run limit, for tests about something else.
const NO_LIMIT: u32 = 100;

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant name")
}

/// 2025-12-06T10:00:00Z plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    let start = Utc
        .with_ymd_and_hms(2025, 12, 6, 10, 0, 0)
        .single()
        .expect("valid start time");
    start + TimeDelta::seconds(seconds)
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("valid date")
}

/// A document `id` of `kind` from `source`; its content changes with `revision`.
pub fn document(source: &str, kind: Kind, id: &str, revision: u32) -> NewEvidence {
    let format = match kind {
        Kind::Advisory => DocumentFormat::Osv,
        Kind::Vex => DocumentFormat::Openvex,
        Kind::Policy => DocumentFormat::Policy,
    };
    let document = canonical_json(&serde_json::json!({
        "id": id,
        "revision": revision,
        "summary": format!("{id}, revision {revision}"),
    }));
    NewEvidence {
        source: SourceName::parse(source).expect("valid source name"),
        kind,
        format,
        id: id.to_owned(),
        modified: Some(format!("2025-01-{:02}T00:00:00Z", revision % 28 + 1)),
        aliases: vec![format!("alias-of-{id}")],
        digest: Sha256Digest::of(&document),
        document,
        ingested_at: at(0),
    }
}

fn advisory(id: &str, revision: u32) -> NewEvidence {
    document("osv-go", Kind::Advisory, id, revision)
}

/// What a run reads back for `item`.
pub fn record(item: &NewEvidence) -> EvidenceRecord {
    EvidenceRecord {
        kind: item.kind,
        source: item.source.clone(),
        format: item.format,
        id: item.id.clone(),
        modified: item.modified.clone(),
        digest: item.digest,
        document: item.document.clone(),
    }
}

fn target(text: &str) -> Target {
    Target::parse(text).expect("valid target")
}

pub fn profile_id(tenant: &TenantId, name: &str) -> ProfileId {
    ProfileId::new(
        tenant.clone(),
        ProfileName::parse(name).expect("valid profile name"),
    )
}

fn plan(profile: &ProfileId, request: RunRequest) -> RunPlan {
    let definition = serde_json::from_value(serde_json::json!({
        "targets": ["advisory", "vex", "policy"],
        "distributions": ["http", "oci"],
        "signing": { "enabled": true, "keys": ["kms://acme/signer"] },
        "encryption": { "recipients": ["age1examplerecipient"] },
        "retention": { "default_days": 7, "max_days": 30 },
    }))
    .expect("valid profile definition");
    RunPlan::parse(
        &Profile::new(profile.clone(), definition),
        request,
        &Limits::default(),
    )
    .expect("valid run request")
}

/// A run of profile `profile` of `tenant`, created at `created_at`.
pub fn new_run(tenant: &TenantId, profile: &str, created_at: DateTime<Utc>, priority: Priority) -> NewRun {
    let profile_id = profile_id(tenant, profile);
    let request = RunRequest {
        priority: Some(priority.as_str().to_owned()),
        ..RunRequest::default()
    };
    NewRun {
        plan: plan(&profile_id, request),
        profile_id,
        project: None,
        watermark: 0,
        snapshot_at: None,
        items_total: 0,
        estimate_seconds: 60,
        created_at,
        trigger: Trigger::Api,
    }
}

fn normal_run(tenant: &TenantId, created_at: DateTime<Utc>) -> NewRun {
    new_run(tenant, "daily", created_at, Priority::Normal)
}

/// The idempotency lease the suite claims keys for.
const KEY_LEASE: Duration = Duration::from_secs(10);

fn claim_for(key: &str, body: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        subject: "user-1".to_owned(),
        method: "POST".to_owned(),
        path: "/export-center/runs".to_owned(),
        key: key.to_owned(),
        fingerprint: Sha256Digest::of(body.as_bytes()),
    }
}

fn output(kind: &str, id: &str, format: &str, path: &str, content: &str) -> RunOutput {
    RunOutput {
        kind: export_core::OutputKind::parse(kind).expect("a known output type"),
        id: id.to_owned(),
        format: format.to_owned(),
        path: path.to_owned(),
        sha256: Sha256Digest::of(content.as_bytes()),
        bytes: content.len() as u64,
        media_type: "application/json".to_owned(),
        records: (kind != "manifest").then_some(3),
    }
}

fn unknown_run(tenant: &TenantId) -> RunId {
    RunId::new(tenant.clone(), day("2025-12-06"), 999)
}

async fn ingest(store: &dyn Store, tenant: &TenantId, items: &[NewEvidence]) -> Vec<IngestOutcome> {
    store.ingest(tenant, items).await.expect("ingest")
}

async fn stream(store: &dyn Store, tenant: &TenantId, watermark: i64, target: &str) -> Vec<EvidenceRecord> {
    let target = self::target(target);
    store
        .stream_items(tenant, watermark, &target)
        .try_collect()
        .await
        .expect("stream items")
}

async fn count(store: &dyn Store, tenant: &TenantId, watermark: i64, target: &str) -> u64 {
    store
        .count_items(tenant, watermark, &self::target(target))
        .await
        .expect("count items")
}

async fn create(store: &dyn Store, tenant: &TenantId, run: NewRun) -> Run {
    store.create_run(tenant, run, None).await.expect("create run")
}

async fn get(store: &dyn Store, tenant: &TenantId, run_id: &RunId) -> Run {
    store
        .get_run(tenant, run_id)
        .await
        .expect("get run")
        .expect("the run exists")
}

async fn claim(store: &dyn Store, worker: &str, now: DateTime<Utc>, max_active: u32) -> Option<Run> {
    store
        .claim_next_run(worker, now, LEASE, max_active)
        .await
        .expect("claim next run")
}

async fn claim_id(store: &dyn Store, now: DateTime<Utc>, max_active: u32) -> Option<RunId> {
    claim(store, "worker-1", now, max_active).await.map(|run| run.id)
}

/// Claims runs until none is left, at most `expected + 1` times, so a backend that
/// hands a run out twice fails the test instead of looping forever.
async fn claim_all(store: &dyn Store, now: DateTime<Utc>, max_active: u32, expected: usize) -> Vec<RunId> {
    let mut claimed = Vec::new();
    while claimed.len() <= expected {
        match claim_id(store, now, max_active).await {
            Some(run_id) => claimed.push(run_id),
            None => break,
        }
    }
    claimed
}

async fn list(store: &dyn Store, tenant: &TenantId, query: RunQuery) -> Vec<RunId> {
    let page = store.list_runs(tenant, &query).await.expect("list runs");
    page.runs.into_iter().map(|run| run.id).collect()
}

fn query(limit: u32) -> RunQuery {
    RunQuery {
        limit,
        ..RunQuery::default()
    }
}

async fn finish(
    store: &dyn Store,
    tenant: &TenantId,
    run_id: &RunId,
    outcome: RunOutcome,
    now: DateTime<Utc>,
) -> Finished {
    let event = TerminalEvent::of(run_id, &outcome, false);
    store
        .finish_run(tenant, run_id, outcome, &event, now)
        .await
        .expect("finish run")
}

fn succeeded(expires_at: DateTime<Utc>) -> RunOutcome {
    RunOutcome::Succeeded {
        expires_at,
        warnings: Vec::new(),
        published_ref: None,
    }
}

fn failure() -> RunError {
    RunError {
        code: ErrorCode::Timeout,
        message: "the run took longer than 3600 seconds".to_owned(),
        retry_after_seconds: Some(60),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected a not-found error, got {other:?}"),
    }
}

// --- evidence ---------------------------------------------------------------------------

pub async fn ping_answers(store: &dyn Store) {
    store.ping().await.expect("ping");
}

/// New documents take the tenant's next sequence numbers 1, 2, 3…; another tenant
/// counts from 1 on its own.
pub async fn ingest_numbers_new_documents_per_tenant(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let items = [
        advisory("GO-1", 1),
        advisory("GO-2", 1),
        document("csaf", Kind::Vex, "VEX-1", 1),
    ];
    assert_eq!(
        ingest(store, &acme, &items).await,
        [
            IngestOutcome::Inserted { seq: 1 },
            IngestOutcome::Inserted { seq: 2 },
            IngestOutcome::Inserted { seq: 3 }
        ]
    );
    assert_eq!(
        ingest(store, &acme, &[advisory("GO-3", 1)]).await,
        [IngestOutcome::Inserted { seq: 4 }]
    );
    assert_eq!(
        ingest(store, &globex, &items[..1]).await,
        [IngestOutcome::Inserted { seq: 1 }],
        "another tenant's identical document is new to it"
    );
    assert_eq!(store.snapshot_point(&acme).await.expect("snapshot").watermark, 4);
    assert_eq!(
        store.snapshot_point(&globex).await.expect("snapshot").watermark,
        1
    );
    assert_eq!(store.ingest(&acme, &[]).await.expect("empty batch"), []);
}

/// Re-ingesting the same bytes is a no-op: the item keeps its sequence and ingestion
/// time, and no sequence number is used up.
pub async fn reingesting_an_identical_document_changes_nothing(store: &dyn Store) {
    let acme = tenant("acme");
    let (first, second) = (advisory("GO-1", 1), advisory("GO-2", 1));
    ingest(store, &acme, &[first.clone(), second.clone()]).await;

    let mut again = first.clone();
    again.ingested_at = at(3600);
    assert_eq!(
        ingest(store, &acme, &[again]).await,
        [IngestOutcome::Unchanged { seq: 1 }]
    );
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 2,
            at: Some(at(0))
        }
    );
    assert_eq!(
        stream(store, &acme, 2, "advisory").await,
        [record(&first), record(&second)]
    );
    assert_eq!(
        ingest(store, &acme, &[advisory("GO-3", 1)]).await,
        [IngestOutcome::Inserted { seq: 3 }]
    );
}

/// A changed document replaces the previous version for later snapshots, while a
/// snapshot taken before the change still reads the old bytes.
pub async fn changed_document_replaces_it_and_older_snapshots_keep_the_old_version(store: &dyn Store) {
    let acme = tenant("acme");
    let (v1, other) = (advisory("GO-1", 1), advisory("GO-2", 1));
    ingest(store, &acme, &[v1.clone(), other.clone()]).await;

    let mut v2 = advisory("GO-1", 2);
    v2.ingested_at = at(60);
    assert_eq!(
        ingest(store, &acme, &[v2.clone()]).await,
        [IngestOutcome::Replaced { seq: 3 }]
    );
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 3,
            at: Some(at(60))
        }
    );
    assert_eq!(
        stream(store, &acme, 2, "advisory").await,
        [record(&v1), record(&other)],
        "the snapshot at the old watermark reads the old version"
    );
    assert_eq!(
        stream(store, &acme, 3, "advisory").await,
        [record(&v2), record(&other)],
        "the snapshot at the new watermark reads the new version"
    );
    assert_eq!(count(store, &acme, 0, "advisory").await, 0);
    assert_eq!(count(store, &acme, 1, "advisory").await, 1);
    assert_eq!(count(store, &acme, 2, "advisory").await, 2);
    assert_eq!(count(store, &acme, 3, "advisory").await, 2);
    assert_eq!(stream(store, &acme, 1, "advisory").await, [record(&v1)]);

    // Going back to the first content is one more version, not a return to seq 1.
    assert_eq!(
        ingest(store, &acme, std::slice::from_ref(&v1)).await,
        [IngestOutcome::Replaced { seq: 4 }]
    );
    assert_eq!(
        stream(store, &acme, 4, "advisory").await,
        [record(&v1), record(&other)]
    );
    assert_eq!(
        stream(store, &acme, 3, "advisory").await,
        [record(&v2), record(&other)]
    );
}

/// Items of one batch are applied in order, so a batch can carry the same document
/// twice or two versions of it.
pub async fn a_batch_may_carry_several_versions_of_one_document(store: &dyn Store) {
    let acme = tenant("acme");
    let (v1, v2) = (advisory("GO-1", 1), advisory("GO-1", 2));
    assert_eq!(
        ingest(store, &acme, &[v1.clone(), v1.clone(), v2.clone()]).await,
        [
            IngestOutcome::Inserted { seq: 1 },
            IngestOutcome::Unchanged { seq: 1 },
            IngestOutcome::Replaced { seq: 2 }
        ]
    );
    assert_eq!(stream(store, &acme, 1, "advisory").await, [record(&v1)]);
    assert_eq!(stream(store, &acme, 2, "advisory").await, [record(&v2)]);
}

pub async fn snapshot_point_is_the_latest_ingestion(store: &dyn Store) {
    let acme = tenant("acme");
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 0,
            at: None
        }
    );
    let mut first = advisory("GO-1", 1);
    first.ingested_at = at(10);
    let mut second = document("csaf", Kind::Vex, "VEX-1", 1);
    second.ingested_at = at(20);
    ingest(store, &acme, &[first]).await;
    ingest(store, &acme, &[second]).await;
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 2,
            at: Some(at(20))
        }
    );
}

/// A target is a kind, or a kind narrowed to one source; records come back with every
/// field as ingested.
pub async fn items_are_counted_and_streamed_per_target(store: &dyn Store) {
    let acme = tenant("acme");
    let go_1 = advisory("GO-1", 1);
    let go_2 = advisory("GO-2", 1);
    let pysec = document("osv-pypi", Kind::Advisory, "PYSEC-1", 1);
    let vex = document("osv-go", Kind::Vex, "VEX-1", 1);
    let policy = document("policies", Kind::Policy, "baseline", 1);
    ingest(
        store,
        &acme,
        &[
            pysec.clone(),
            go_2.clone(),
            vex.clone(),
            go_1.clone(),
            policy.clone(),
        ],
    )
    .await;

    for (target, expected) in [
        ("advisory", 3),
        ("advisory:osv-go", 2),
        ("advisory:osv-pypi", 1),
        ("advisory:policies", 0),
        ("advisory:unknown", 0),
        ("vex", 1),
        ("vex:osv-go", 1),
        ("vex:osv-pypi", 0),
        ("policy", 1),
    ] {
        assert_eq!(
            count(store, &acme, 5, target).await,
            expected,
            "count of {target}"
        );
    }
    assert_eq!(
        stream(store, &acme, 5, "advisory").await,
        [record(&go_1), record(&go_2), record(&pysec)]
    );
    assert_eq!(
        stream(store, &acme, 5, "advisory:osv-go").await,
        [record(&go_1), record(&go_2)]
    );
    assert_eq!(
        stream(store, &acme, 5, "advisory:osv-pypi").await,
        [record(&pysec)]
    );
    assert_eq!(stream(store, &acme, 5, "vex").await, [record(&vex)]);
    assert_eq!(stream(store, &acme, 5, "policy").await, [record(&policy)]);
    assert_eq!(stream(store, &acme, 5, "vex:osv-pypi").await, []);
}

/// Records stream sorted by (id, source, digest) compared as bytes: uppercase before
/// lowercase, a prefix before its extensions, non-ASCII last.
pub async fn items_stream_in_bytewise_id_source_digest_order(store: &dyn Store) {
    let acme = tenant("acme");
    let items = [
        ("osv-go", "B"),
        ("osv-go", "a"),
        ("osv-go", "A-1"),
        ("osv-go", "é"),
        ("osv-go", "A"),
        ("ghsa", "A"),
        ("osv-go", "Z"),
        ("ghsa", "a"),
    ]
    .map(|(source, id)| document(source, Kind::Advisory, id, 1));
    ingest(store, &acme, &items).await;

    let order = |records: Vec<EvidenceRecord>| -> Vec<(String, String)> {
        records
            .into_iter()
            .map(|record| (record.id, record.source.to_string()))
            .collect()
    };
    let expected = [
        ("A", "ghsa"),
        ("A", "osv-go"),
        ("A-1", "osv-go"),
        ("B", "osv-go"),
        ("Z", "osv-go"),
        ("a", "ghsa"),
        ("a", "osv-go"),
        ("é", "osv-go"),
    ]
    .map(|(id, source)| (id.to_owned(), source.to_owned()));
    assert_eq!(order(stream(store, &acme, 8, "advisory").await), expected);
    let narrowed: Vec<_> = expected
        .iter()
        .filter(|(_, source)| source == "osv-go")
        .cloned()
        .collect();
    assert_eq!(order(stream(store, &acme, 8, "advisory:osv-go").await), narrowed);
}

/// A batch of thousands of documents is one call, numbered in batch order, and streams
/// back complete and sorted.
pub async fn a_large_batch_ingests_in_one_call(store: &dyn Store) {
    let acme = tenant("acme");
    let n_items = 3000;
    let items: Vec<NewEvidence> = (0..n_items)
        .rev()
        .map(|idx| advisory(&format!("GO-{idx:05}"), 1))
        .collect();
    let outcomes = ingest(store, &acme, &items).await;
    let expected: Vec<_> = (1..=n_items).map(|seq| IngestOutcome::Inserted { seq }).collect();
    assert_eq!(outcomes, expected);
    assert_eq!(count(store, &acme, n_items, "advisory").await, n_items as u64);

    let records = stream(store, &acme, n_items, "advisory").await;
    let mut sorted: Vec<EvidenceRecord> = items.iter().map(record).collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(records == sorted, "the batch streams back complete and sorted");
}

// --- removals -----------------------------------------------------------------------------

fn source(name: &str) -> SourceName {
    SourceName::parse(name).expect("valid source name")
}

/// `remove_absent` of `source` with the ids of `present`.
async fn remove(
    store: &dyn Store,
    tenant: &TenantId,
    source: &str,
    present: &[&str],
    now: DateTime<Utc>,
) -> Vec<Tombstone> {
    let present: BTreeSet<String> = present.iter().map(|id| (*id).to_owned()).collect();
    store
        .remove_absent(tenant, &self::source(source), &present, now)
        .await
        .expect("remove absent items")
}

fn tombstone(id: &str, kind: Kind, source: &str) -> Tombstone {
    Tombstone {
        id: id.to_owned(),
        kind,
        source: self::source(source),
    }
}

async fn changes(
    store: &dyn Store,
    tenant: &TenantId,
    after: i64,
    up_to: i64,
    target: &str,
) -> Vec<EvidenceRecord> {
    let target = self::target(target);
    let records: Vec<EvidenceRecord> = store
        .stream_changes(tenant, after, up_to, &target)
        .try_collect()
        .await
        .expect("stream changes");
    let counted = store
        .count_changes(tenant, after, up_to, &target)
        .await
        .expect("count changes");
    assert_eq!(
        counted,
        records.len() as u64,
        "count_changes of {target} in ({after}, {up_to}]"
    );
    records
}

async fn removals(
    store: &dyn Store,
    tenant: &TenantId,
    after: i64,
    up_to: i64,
    target: &str,
) -> Vec<Tombstone> {
    let target = self::target(target);
    store
        .stream_removals(tenant, after, up_to, &target)
        .try_collect()
        .await
        .expect("stream removals")
}

/// The items of a source that a sync no longer names, of every kind, get tombstones at
/// new sequences: snapshots from a tombstone on lack its item, earlier ones still hold
/// it, and the snapshot point is the newest removal.
pub async fn a_removed_item_leaves_later_snapshots_and_stays_in_earlier_ones(store: &dyn Store) {
    let acme = tenant("acme");
    let (go_1, go_2, go_3) = (advisory("GO-1", 1), advisory("GO-2", 1), advisory("GO-3", 1));
    let vex = document("osv-go", Kind::Vex, "VEX-1", 1);
    ingest(
        store,
        &acme,
        &[go_3.clone(), go_2.clone(), go_1.clone(), vex.clone()],
    )
    .await;

    assert_eq!(
        remove(store, &acme, "osv-go", &["GO-2", "GO-9"], at(60)).await,
        [
            tombstone("GO-1", Kind::Advisory, "osv-go"),
            tombstone("GO-3", Kind::Advisory, "osv-go"),
            tombstone("VEX-1", Kind::Vex, "osv-go"),
        ],
        "every absent item of the source, in id order"
    );
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 7,
            at: Some(at(60))
        },
        "the newest change is the last removal, made at its time"
    );
    assert_eq!(
        stream(store, &acme, 4, "advisory").await,
        [record(&go_1), record(&go_2), record(&go_3)],
        "a snapshot before the removals still holds the items"
    );
    assert_eq!(
        stream(store, &acme, 5, "advisory").await,
        [record(&go_2), record(&go_3)],
        "GO-1's tombstone is sequence 5"
    );
    assert_eq!(stream(store, &acme, 7, "advisory").await, [record(&go_2)]);
    assert_eq!(stream(store, &acme, 6, "vex").await, [record(&vex)]);
    assert_eq!(stream(store, &acme, 7, "vex").await, []);
    for (watermark, advisories, vexes) in [(4, 3, 1), (5, 2, 1), (6, 1, 1), (7, 1, 0)] {
        assert_eq!(count(store, &acme, watermark, "advisory").await, advisories);
        assert_eq!(count(store, &acme, watermark, "vex:osv-go").await, vexes);
    }

    assert_eq!(
        remove(store, &acme, "osv-go", &["GO-2"], at(120)).await,
        [],
        "nothing is left to remove"
    );
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot").watermark,
        7,
        "a removal of nothing takes no sequence"
    );
    assert_eq!(
        ingest(store, &acme, &[advisory("GO-4", 1)]).await,
        [IngestOutcome::Inserted { seq: 8 }],
        "documents and removals share the tenant's sequence"
    );
}

/// A removed document ingested again is new: it comes back at a new sequence, the
/// snapshots in between still lack it, and it can be removed again.
pub async fn an_item_ingested_again_after_its_removal_comes_back_at_a_new_sequence(store: &dyn Store) {
    let acme = tenant("acme");
    let (go_1, go_2) = (advisory("GO-1", 1), advisory("GO-2", 1));
    ingest(store, &acme, &[go_1.clone(), go_2.clone()]).await;
    remove(store, &acme, "osv-go", &["GO-2"], at(60)).await;

    let mut again = go_1.clone();
    again.ingested_at = at(120);
    assert_eq!(
        ingest(store, &acme, &[again]).await,
        [IngestOutcome::Inserted { seq: 4 }],
        "the same bytes, no longer current, are stored again"
    );
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 4,
            at: Some(at(120))
        }
    );
    assert_eq!(
        stream(store, &acme, 2, "advisory").await,
        [record(&go_1), record(&go_2)]
    );
    assert_eq!(stream(store, &acme, 3, "advisory").await, [record(&go_2)]);
    assert_eq!(
        stream(store, &acme, 4, "advisory").await,
        [record(&go_1), record(&go_2)]
    );

    assert_eq!(
        remove(store, &acme, "osv-go", &["GO-2"], at(180)).await,
        [tombstone("GO-1", Kind::Advisory, "osv-go")]
    );
    let go_1_v2 = advisory("GO-1", 2);
    assert_eq!(
        ingest(store, &acme, std::slice::from_ref(&go_1_v2)).await,
        [IngestOutcome::Inserted { seq: 6 }]
    );
    assert_eq!(stream(store, &acme, 5, "advisory").await, [record(&go_2)]);
    assert_eq!(
        stream(store, &acme, 6, "advisory").await,
        [record(&go_1_v2), record(&go_2)]
    );
    assert_eq!(
        stream(store, &acme, 4, "advisory").await,
        [record(&go_1), record(&go_2)],
        "each return is a version of its own"
    );
}

/// A removal reaches only its own tenant's items of its own source: not the same ids
/// under another source of the tenant, nor anything of another tenant, whose sequence
/// does not move.
pub async fn removals_touch_only_their_tenant_and_source(store: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let pypi = document("osv-pypi", Kind::Advisory, "GO-1", 1);
    ingest(
        store,
        &acme,
        &[advisory("GO-1", 1), advisory("GO-2", 1), pypi.clone()],
    )
    .await;
    let theirs = [advisory("GO-1", 1), advisory("GO-2", 1)];
    ingest(store, &globex, &theirs).await;

    assert_eq!(
        remove(store, &acme, "osv-go", &[], at(60)).await,
        [
            tombstone("GO-1", Kind::Advisory, "osv-go"),
            tombstone("GO-2", Kind::Advisory, "osv-go"),
        ]
    );
    assert_eq!(stream(store, &acme, 5, "advisory").await, [record(&pypi)]);
    assert_eq!(
        store.snapshot_point(&globex).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 2,
            at: Some(at(0))
        }
    );
    assert_eq!(
        stream(store, &globex, 2, "advisory").await,
        theirs.iter().map(record).collect::<Vec<_>>()
    );
    assert_eq!(changes(store, &globex, 0, 5, "advisory").await.len(), 2);
    assert_eq!(removals(store, &globex, 0, 5, "advisory").await, []);
    assert_eq!(
        remove(store, &globex, "osv-pypi", &[], at(60)).await,
        [],
        "the other tenant has nothing of that source"
    );
    assert_eq!(
        ingest(store, &globex, &[advisory("GO-3", 1)]).await,
        [IngestOutcome::Inserted { seq: 3 }]
    );
    assert_eq!(stream(store, &acme, 5, "advisory").await, [record(&pypi)]);
    assert_eq!(
        removals(store, &acme, 0, 5, "advisory").await,
        [
            tombstone("GO-1", Kind::Advisory, "osv-go"),
            tombstone("GO-2", Kind::Advisory, "osv-go"),
        ]
    );
}

/// What a delta carries from one watermark to a later one: the items added or changed in
/// between that are there at its end, in the snapshot's order, and the items removed in
/// between that are not, once each, sorted by (id, kind, source). Applied to the snapshot
/// at the start, they give the snapshot at the end, for every interval.
pub async fn changes_and_removals_are_read_per_interval(store: &dyn Store) {
    let acme = tenant("acme");
    let go = |id: &str, revision| advisory(id, revision);
    let vex = |revision| document("osv-go", Kind::Vex, "VEX-1", revision);
    let pypi = document("osv-pypi", Kind::Advisory, "GO-C", 1);
    // 1-7: everything, in one batch.
    ingest(
        store,
        &acme,
        &[
            go("GO-A", 1),
            go("GO-B", 1),
            go("GO-C", 1),
            go("GO-D", 1),
            go("GO-E", 1),
            pypi,
            vex(1),
        ],
    )
    .await;
    // 8: GO-E removed; the interval starts after it.
    remove(
        store,
        &acme,
        "osv-go",
        &["GO-A", "GO-B", "GO-C", "GO-D", "VEX-1"],
        at(10),
    )
    .await;
    let after = 8;
    // 9-12: GO-B and VEX-1 changed, GO-F and GO-G added.
    ingest(
        store,
        &acme,
        &[go("GO-B", 2), vex(2), go("GO-F", 1), go("GO-G", 1)],
    )
    .await;
    // 13, 14: GO-C and GO-G (added in the interval) removed; 15: osv-pypi's GO-C removed.
    let kept = ["GO-A", "GO-B", "GO-D", "GO-F", "VEX-1"];
    remove(store, &acme, "osv-go", &kept, at(20)).await;
    remove(store, &acme, "osv-pypi", &[], at(20)).await;
    // 16, 17: GO-D removed and ingested again.
    remove(store, &acme, "osv-go", &["GO-A", "GO-B", "GO-F", "VEX-1"], at(30)).await;
    ingest(store, &acme, &[go("GO-D", 1)]).await;
    let up_to = 17;
    // 18, 19: after the interval, GO-B removed and GO-H added.
    remove(store, &acme, "osv-go", &["GO-A", "GO-D", "GO-F", "VEX-1"], at(40)).await;
    ingest(store, &acme, &[go("GO-H", 1)]).await;
    assert_eq!(store.snapshot_point(&acme).await.expect("snapshot").watermark, 19);

    assert_eq!(
        changes(store, &acme, after, up_to, "advisory").await,
        [
            record(&go("GO-B", 2)),
            record(&go("GO-D", 1)),
            record(&go("GO-F", 1))
        ]
    );
    assert_eq!(
        changes(store, &acme, after, up_to, "vex").await,
        [record(&vex(2))]
    );
    assert_eq!(changes(store, &acme, after, up_to, "advisory:osv-pypi").await, []);
    assert_eq!(
        removals(store, &acme, after, up_to, "advisory").await,
        [
            tombstone("GO-C", Kind::Advisory, "osv-go"),
            tombstone("GO-C", Kind::Advisory, "osv-pypi"),
            tombstone("GO-G", Kind::Advisory, "osv-go"),
        ]
    );
    assert_eq!(
        removals(store, &acme, after, up_to, "advisory:osv-pypi").await,
        [tombstone("GO-C", Kind::Advisory, "osv-pypi")]
    );
    assert_eq!(removals(store, &acme, after, up_to, "vex").await, []);
    assert_eq!(
        removals(store, &acme, after - 1, up_to, "advisory:osv-go").await,
        [
            tombstone("GO-C", Kind::Advisory, "osv-go"),
            tombstone("GO-E", Kind::Advisory, "osv-go"),
            tombstone("GO-G", Kind::Advisory, "osv-go"),
        ],
        "an interval that holds GO-E's removal"
    );
    assert_eq!(
        removals(store, &acme, after, 16, "advisory:osv-go").await,
        [
            tombstone("GO-C", Kind::Advisory, "osv-go"),
            tombstone("GO-D", Kind::Advisory, "osv-go"),
            tombstone("GO-G", Kind::Advisory, "osv-go"),
        ],
        "an interval that ends before GO-D came back"
    );
    assert_eq!(changes(store, &acme, up_to, up_to, "advisory").await, []);
    assert_eq!(removals(store, &acme, up_to, up_to, "advisory").await, []);

    // The start's snapshot, less the removals, with the changes, is the end's.
    for target in ["advisory", "advisory:osv-go", "advisory:osv-pypi", "vex"] {
        for start in 0..=19 {
            for end in start..=19 {
                let key = |record: &EvidenceRecord| (record.source.to_string(), record.id.clone());
                let mut applied: std::collections::BTreeMap<_, _> = stream(store, &acme, start, target)
                    .await
                    .into_iter()
                    .map(|record| (key(&record), record))
                    .collect();
                for removal in removals(store, &acme, start, end, target).await {
                    let removed = applied.remove(&(removal.source.to_string(), removal.id.clone()));
                    assert!(
                        removed.is_none_or(|record| record.kind == removal.kind),
                        "{target} ({start}, {end}]: {removal:?}"
                    );
                }
                for record in changes(store, &acme, start, end, target).await {
                    applied.insert(key(&record), record);
                }
                let mut applied: Vec<EvidenceRecord> = applied.into_values().collect();
                applied.sort_by(|a, b| (&a.id, &a.source).cmp(&(&b.id, &b.source)));
                assert_eq!(
                    applied,
                    stream(store, &acme, end, target).await,
                    "{target} ({start}, {end}]"
                );
            }
        }
    }
}

// --- mirror imports -----------------------------------------------------------------------

/// A bundle of the connected site at `watermark`, imported at `at(imported)`.
fn bundle(mode: MirrorMode, watermark: i64, imported: i64) -> NewMirrorImport {
    NewMirrorImport {
        mode,
        watermark,
        manifest_digest: Sha256Digest::of(format!("manifest at {watermark}").as_bytes()),
        snapshot_time: at(watermark),
        expires_at: at(watermark) + TimeDelta::days(30),
        imported_at: at(imported),
    }
}

/// `apply_mirror_import` with the items as a stream.
async fn import(
    store: &dyn Store,
    tenant: &TenantId,
    expected_generation: Option<i64>,
    bundle: &NewMirrorImport,
    items: Vec<Result<NewEvidence, StoreError>>,
    removals: &[Tombstone],
) -> Result<MirrorImport, StoreError> {
    let items = futures::stream::iter(items).boxed();
    store
        .apply_mirror_import(tenant, expected_generation, bundle, items, removals)
        .await
}

/// The tenant's first import: a full bundle of `items` at watermark 10, imported at
/// `at(100)`.
async fn first_import(store: &dyn Store, tenant: &TenantId, items: &[NewEvidence]) -> MirrorImport {
    let items = items.iter().cloned().map(Ok).collect();
    import(
        store,
        tenant,
        None,
        &bundle(MirrorMode::Full, 10, 100),
        items,
        &[],
    )
    .await
    .expect("first full import")
}

/// Every item the tenant's snapshot holds at `watermark`, of every kind, by (kind, id,
/// source).
async fn evidence_at(store: &dyn Store, tenant: &TenantId, watermark: i64) -> Vec<EvidenceRecord> {
    let mut held = Vec::new();
    for kind in Kind::ALL {
        held.extend(stream(store, tenant, watermark, kind.as_str()).await);
    }
    sorted(held)
}

/// Every item of the tenant's current snapshot.
async fn evidence(store: &dyn Store, tenant: &TenantId) -> Vec<EvidenceRecord> {
    let point = store.snapshot_point(tenant).await.expect("snapshot point");
    evidence_at(store, tenant, point.watermark).await
}

/// What a snapshot holding exactly `items` reads back, in `evidence`'s order.
fn holding(items: &[NewEvidence]) -> Vec<EvidenceRecord> {
    sorted(items.iter().map(record).collect())
}

fn sorted(mut records: Vec<EvidenceRecord>) -> Vec<EvidenceRecord> {
    records.sort_by(|a, b| (a.kind, &a.id, &a.source).cmp(&(b.kind, &b.id, &b.source)));
    records
}

async fn imports(store: &dyn Store, tenant: &TenantId) -> Vec<MirrorImport> {
    store.mirror_imports(tenant, 100).await.expect("mirror imports")
}

/// The tenant's evidence, snapshot point and imports, to tell that nothing changed.
async fn store_state(
    store: &dyn Store,
    tenant: &TenantId,
) -> (SnapshotPoint, Vec<EvidenceRecord>, Vec<MirrorImport>) {
    (
        store.snapshot_point(tenant).await.expect("snapshot point"),
        evidence(store, tenant).await,
        imports(store, tenant).await,
    )
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_what: &str) -> String {
    match result {
        Err(StoreError::Conflict { what, detail }) if what == expected_what => detail,
        other => panic!("expected a conflicting {expected_what}, got {other:?}"),
    }
}

/// A full bundle into a tenant without evidence stores its items, each under a sequence
/// of its own at the import's time, and is recorded as generation 1 with its counts and
/// the store's new snapshot point.
pub async fn a_full_mirror_import_into_an_empty_tenant_stores_exactly_its_items(store: &dyn Store) {
    let acme = tenant("acme");
    let items = vec![
        advisory("GO-2", 1),
        advisory("GO-1", 1),
        document("osv-pypi", Kind::Advisory, "GO-1", 1),
        document("osv-go", Kind::Vex, "VEX-1", 1),
        document("policies", Kind::Policy, "baseline", 3),
    ];
    let full = bundle(MirrorMode::Full, 40, 500);
    let applied = import(
        store,
        &acme,
        None,
        &full,
        items.iter().cloned().map(Ok).collect(),
        &[],
    )
    .await
    .expect("import");
    assert_eq!(
        applied,
        MirrorImport {
            generation: 1,
            mode: MirrorMode::Full,
            watermark: 40,
            manifest_digest: full.manifest_digest,
            snapshot_time: full.snapshot_time,
            expires_at: full.expires_at,
            imported_at: at(500),
            added: 5,
            changed: 0,
            unchanged: 0,
            removed: 0,
            local_watermark: 5,
        }
    );
    assert_eq!(
        applied.state(),
        ImportedState {
            watermark: 40,
            manifest_digest: full.manifest_digest
        }
    );
    assert_eq!(imports(store, &acme).await, std::slice::from_ref(&applied));
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot point"),
        SnapshotPoint {
            watermark: 5,
            at: Some(at(500))
        },
        "the items are ingested at the import's time"
    );
    assert_eq!(
        evidence_at(store, &acme, 5).await,
        holding(&items),
        "the bytes as given"
    );
    assert_eq!(
        ingest(store, &acme, &[advisory("GO-3", 1)]).await,
        [IngestOutcome::Inserted { seq: 6 }],
        "an import takes the tenant's own sequences"
    );
}

/// A delta adds and changes its items and removes each of its removals that is current,
/// skipping one that is not; earlier snapshots keep what it changed.
pub async fn a_delta_mirror_import_adds_changes_and_removes(store: &dyn Store) {
    let acme = tenant("acme");
    let (go_1, go_2, go_3) = (advisory("GO-1", 1), advisory("GO-2", 1), advisory("GO-3", 1));
    let first = vec![go_1.clone(), go_2.clone(), go_3.clone()];
    let full = first_import(store, &acme, &first).await;

    let (go_2_v2, go_4) = (advisory("GO-2", 2), advisory("GO-4", 1));
    let delta = bundle(MirrorMode::Delta, 20, 200);
    let removed = [
        tombstone("GO-3", Kind::Advisory, "osv-go"),
        tombstone("GO-3", Kind::Advisory, "osv-pypi"),
        tombstone("GO-9", Kind::Advisory, "osv-go"),
    ];
    let applied = import(
        store,
        &acme,
        Some(1),
        &delta,
        vec![Ok(go_4.clone()), Ok(go_2_v2.clone())],
        &removed,
    )
    .await
    .expect("delta import");
    assert_eq!(
        (applied.generation, applied.mode, applied.watermark),
        (2, MirrorMode::Delta, 20)
    );
    assert_eq!(
        (applied.added, applied.changed, applied.unchanged, applied.removed),
        (1, 1, 0, 1),
        "GO-4 added, GO-2 changed, GO-3 removed; the items that are not there are skipped"
    );
    assert_eq!(applied.local_watermark, 6);
    assert_eq!(
        store.snapshot_point(&acme).await.expect("snapshot point"),
        SnapshotPoint {
            watermark: 6,
            at: Some(at(200))
        },
        "the removal is the newest change, made at the import's time"
    );
    assert_eq!(
        evidence(store, &acme).await,
        holding(&[go_1.clone(), go_2_v2, go_4])
    );
    assert_eq!(
        evidence_at(store, &acme, full.local_watermark).await,
        holding(&first),
        "the snapshot of the full import still holds what the delta changed"
    );
    assert_eq!(
        removals(store, &acme, full.local_watermark, 6, "advisory").await,
        [tombstone("GO-3", Kind::Advisory, "osv-go")]
    );
    assert_eq!(imports(store, &acme).await, [applied.clone(), full]);
    assert_eq!(
        store.mirror_imports(&acme, 1).await.expect("mirror imports"),
        [applied],
        "newest first, at most the limit"
    );

    let nothing = import(
        store,
        &acme,
        Some(2),
        &bundle(MirrorMode::Delta, 30, 300),
        vec![Ok(go_1)],
        &[tombstone("GO-3", Kind::Advisory, "osv-go")],
    )
    .await
    .expect("a delta that changes nothing");
    assert_eq!(
        (
            nothing.generation,
            nothing.added,
            nothing.changed,
            nothing.unchanged,
            nothing.removed
        ),
        (3, 0, 0, 1, 0),
        "an identical item is unchanged, and a removed item is not removed again"
    );
    assert_eq!(nothing.local_watermark, 6, "it takes no sequence");
}

/// A full bundle after earlier imports and local ingests makes the tenant's evidence
/// exactly its items: every current item it lacks, of any source and kind, is removed,
/// page after page, and the snapshots before it keep them.
pub async fn a_full_mirror_import_removes_every_item_the_bundle_lacks(store: &dyn Store) {
    let acme = tenant("acme");
    let n_items = 2_100;
    let first: Vec<NewEvidence> = (0..n_items)
        .map(|idx| advisory(&format!("GO-{idx:05}"), 1))
        .collect();
    let full = first_import(store, &acme, &first).await;
    assert_eq!((full.added, full.local_watermark), (n_items as u64, n_items));
    let local = [
        document("local-policies", Kind::Policy, "baseline", 1),
        document("osv-go", Kind::Vex, "VEX-1", 1),
    ];
    ingest(store, &acme, &local).await;
    let before = evidence(store, &acme).await;

    // Every third item of the first bundle, one of them changed, and one new item.
    let mut second: Vec<NewEvidence> = first.iter().step_by(3).cloned().collect();
    second[1] = advisory("GO-00003", 2);
    second.push(document("osv-pypi", Kind::Advisory, "GO-00001", 1));
    let applied = import(
        store,
        &acme,
        Some(1),
        &bundle(MirrorMode::Full, 30, 300),
        second.iter().cloned().map(Ok).collect(),
        &[],
    )
    .await
    .expect("second full import");
    let lacking = n_items as u64 - 700 + local.len() as u64;
    assert_eq!(
        (applied.added, applied.changed, applied.unchanged, applied.removed),
        (1, 1, 699, lacking)
    );
    let point = store.snapshot_point(&acme).await.expect("snapshot point");
    assert_eq!(point.watermark, applied.local_watermark);
    assert_eq!(point.watermark, n_items + 2 + 2 + lacking as i64);
    assert_eq!(
        evidence(store, &acme).await,
        holding(&second),
        "the tenant's evidence is the bundle's, whatever was there"
    );
    assert_eq!(
        evidence_at(store, &acme, n_items + 2).await,
        before,
        "the snapshot before the import keeps everything"
    );
    assert_eq!(
        removals(store, &acme, n_items + 2, point.watermark, "policy").await,
        [tombstone("baseline", Kind::Policy, "local-policies")]
    );
}

/// An import that expected another generation than the tenant's newest writes nothing:
/// another import got there first.
pub async fn a_mirror_import_that_expected_another_generation_conflicts_and_changes_nothing(
    store: &dyn Store,
) {
    let acme = tenant("acme");
    let items = || vec![Ok(advisory("GO-1", 2)), Ok(advisory("GO-2", 1))];
    let detail = assert_conflict(
        import(
            store,
            &acme,
            Some(1),
            &bundle(MirrorMode::Full, 10, 100),
            items(),
            &[],
        )
        .await,
        "mirror import",
    );
    assert!(detail.contains("no import"), "{detail}");
    assert_eq!(
        store_state(store, &acme).await,
        (
            SnapshotPoint {
                watermark: 0,
                at: None
            },
            Vec::new(),
            Vec::new()
        )
    );

    first_import(store, &acme, &[advisory("GO-1", 1)]).await;
    let before = store_state(store, &acme).await;
    let removals = [tombstone("GO-1", Kind::Advisory, "osv-go")];
    for (expected, mode) in [
        (None, MirrorMode::Full),
        (Some(0), MirrorMode::Delta),
        (Some(2), MirrorMode::Delta),
    ] {
        let detail = assert_conflict(
            import(store, &acme, expected, &bundle(mode, 20, 200), items(), &removals).await,
            "mirror import",
        );
        assert!(detail.contains("generation 1"), "{detail}");
        assert_eq!(store_state(store, &acme).await, before, "expected {expected:?}");
    }
}

/// An error while the items are read (after several batches were written) aborts the
/// import: the caller gets that error, and the store is as it was, its sequences
/// included.
pub async fn an_error_in_a_mirror_bundles_items_aborts_the_whole_import(store: &dyn Store) {
    let acme = tenant("acme");
    first_import(store, &acme, &[advisory("GO-00001", 1), advisory("GO-00002", 1)]).await;
    let before = store_state(store, &acme).await;

    // Several batches of any batch size the store reads in (the SQL store's is 500).
    let mut items: Vec<Result<NewEvidence, StoreError>> = (0..1_600)
        .map(|idx| Ok(advisory(&format!("GO-{idx:05}"), 2)))
        .collect();
    items.push(Err(StoreError::corrupt("bundle", "a truncated data file")));
    items.push(Ok(advisory("GO-99999", 1)));
    for mode in [MirrorMode::Full, MirrorMode::Delta] {
        let removals = [tombstone("GO-00001", Kind::Advisory, "osv-go")];
        let result = import(
            store,
            &acme,
            Some(1),
            &bundle(mode, 20, 200),
            items.iter().map(clone_item).collect(),
            &removals,
        )
        .await;
        match result {
            Err(StoreError::Corrupt {
                what: "bundle",
                detail,
            }) if detail == "a truncated data file" => {}
            other => panic!("expected the stream's error, got {other:?}"),
        }
        assert_eq!(store_state(store, &acme).await, before, "{mode}");
    }
    assert_eq!(
        ingest(store, &acme, &[advisory("GO-3", 1)]).await,
        [IngestOutcome::Inserted { seq: 3 }],
        "no sequence was taken"
    );
}

fn clone_item(item: &Result<NewEvidence, StoreError>) -> Result<NewEvidence, StoreError> {
    match item {
        Ok(item) => Ok(item.clone()),
        Err(StoreError::Corrupt { what, detail }) => Err(StoreError::corrupt(what, detail)),
        Err(other) => panic!("the tests' streams fail with corrupt bundles only, not {other:?}"),
    }
}

/// Imports are a tenant's own: another tenant's list and evidence stay as they were, a
/// full bundle removes nothing of theirs, each tenant counts its own generations, and
/// the operator's list has each tenant's newest.
pub async fn mirror_imports_are_per_tenant(store: &dyn Store) {
    let (acme, globex, initech) = (tenant("acme"), tenant("globex"), tenant("initech"));
    let theirs = [advisory("GO-1", 7), advisory("GO-8", 1)];
    ingest(store, &globex, &theirs).await;
    let full = first_import(store, &acme, &[advisory("GO-1", 1)]).await;
    let delta = import(
        store,
        &acme,
        Some(1),
        &bundle(MirrorMode::Delta, 20, 200),
        vec![Ok(advisory("GO-2", 1))],
        &[tombstone("GO-8", Kind::Advisory, "osv-go")],
    )
    .await
    .expect("acme's delta");
    assert_eq!(delta.removed, 0, "GO-8 is another tenant's");

    assert_eq!(imports(store, &globex).await, []);
    assert_eq!(evidence(store, &globex).await, holding(&theirs));
    assert_eq!(
        store.snapshot_point(&globex).await.expect("snapshot point"),
        SnapshotPoint {
            watermark: 2,
            at: Some(at(0))
        }
    );
    assert_eq!(
        store.latest_mirror_imports().await.expect("latest imports"),
        [(acme.clone(), delta.clone())]
    );

    let theirs_applied = import(
        store,
        &globex,
        None,
        &bundle(MirrorMode::Full, 5, 300),
        vec![Ok(advisory("GO-1", 7))],
        &[],
    )
    .await
    .expect("globex's first import, whatever acme's generation");
    assert_eq!(
        (
            theirs_applied.generation,
            theirs_applied.unchanged,
            theirs_applied.removed
        ),
        (1, 1, 1)
    );
    assert_eq!(
        evidence(store, &acme).await,
        holding(&[advisory("GO-1", 1), advisory("GO-2", 1)])
    );
    assert_eq!(imports(store, &acme).await, [delta.clone(), full]);
    assert_eq!(imports(store, &initech).await, []);
    assert_eq!(
        store.latest_mirror_imports().await.expect("latest imports"),
        [(acme, delta), (globex, theirs_applied)],
        "each tenant's newest, by tenant"
    );
}

/// An item a bundle names twice with the same bytes is applied once; with other bytes
/// the bundle contradicts itself, and nothing of it is written, whichever batches the
/// two are in.
pub async fn an_item_named_twice_in_a_mirror_bundle_is_applied_once_or_conflicts(store: &dyn Store) {
    let acme = tenant("acme");
    let (go_1, go_2) = (advisory("GO-1", 1), advisory("GO-2", 1));
    let applied = first_import(store, &acme, &[go_1.clone(), go_2.clone(), go_1.clone()]).await;
    assert_eq!(
        (applied.added, applied.unchanged, applied.local_watermark),
        (2, 0, 2)
    );
    assert_eq!(evidence(store, &acme).await, holding(&[go_1, go_2]));
    let before = store_state(store, &acme).await;

    let mut items = vec![Ok(advisory("GO-2", 2))];
    items.extend((0..700).map(|idx| Ok(advisory(&format!("NEW-{idx:03}"), 1))));
    items.push(Ok(advisory("GO-2", 3)));
    let detail = assert_conflict(
        import(
            store,
            &acme,
            Some(1),
            &bundle(MirrorMode::Delta, 20, 200),
            items,
            &[],
        )
        .await,
        "mirror item",
    );
    assert!(
        detail.contains("`GO-2`") && detail.contains("`osv-go`"),
        "names the item: {detail}"
    );
    assert_eq!(store_state(store, &acme).await, before);
    let same_id_other_source = import(
        store,
        &acme,
        Some(1),
        &bundle(MirrorMode::Delta, 20, 200),
        vec![
            Ok(advisory("GO-2", 2)),
            Ok(document("osv-pypi", Kind::Advisory, "GO-2", 3)),
        ],
        &[],
    )
    .await
    .expect("one id in two sources is two items");
    assert_eq!((same_id_other_source.added, same_id_other_source.changed), (1, 1));
}

/// Two imports that continue from the same generation at once, from two connections:
/// one applies, the other is told another import got there first, and the store holds
/// the one that applied.
pub async fn concurrent_mirror_imports_of_one_tenant_apply_one(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let tasks: Vec<_> = (0..4u32)
        .map(|task| {
            let (store, acme) = (Arc::clone(&store), acme.clone());
            tokio::spawn(async move {
                let items: Vec<_> = (0..50)
                    .map(|idx| Ok(advisory(&format!("GO-{idx:02}"), task + 1)))
                    .collect();
                let bundle = bundle(MirrorMode::Full, 10 + i64::from(task), 100);
                (task, import(&*store, &acme, None, &bundle, items, &[]).await)
            })
        })
        .collect();
    let mut applied = Vec::new();
    for task in tasks {
        match task.await.expect("importing task") {
            (task, Ok(import)) => applied.push((task, import)),
            (_, result) => {
                assert_conflict(result, "mirror import");
            }
        }
    }
    let [(task, import)] = &applied[..] else {
        panic!("expected one import to apply, got {applied:?}");
    };
    assert_eq!(
        (import.generation, import.added, import.local_watermark),
        (1, 50, 50)
    );
    assert_eq!(imports(&*store, &acme).await, std::slice::from_ref(import));
    let expected: Vec<NewEvidence> = (0..50)
        .map(|idx| advisory(&format!("GO-{idx:02}"), task + 1))
        .collect();
    assert_eq!(evidence(&*store, &acme).await, holding(&expected));
}

// --- tenancy ----------------------------------------------------------------------------

/// Nothing of one tenant is visible to, or changeable by, another.
pub async fn tenants_never_see_each_others_data(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let item = advisory("GO-1", 1);
    ingest(store, &acme, &[item.clone(), advisory("GO-2", 1)]).await;
    let key = claim_for("key-1", "body");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
    let mut run = normal_run(&acme, at(0));
    run.items_total = 10;
    let run = store
        .create_run(&acme, run, Some(&key))
        .await
        .expect("create run");
    claim(store, "worker-1", at(1), NO_LIMIT)
        .await
        .expect("a run to claim");
    let manifest = output("manifest", "manifest", "json", "manifest.json", "{}");
    store
        .add_output(&acme, &run.id, &manifest)
        .await
        .expect("add output");
    let before = get(store, &acme, &run.id).await;
    // The other tenant's own first run has the same day and sequence: only the tenant
    // inside the run id tells them apart.
    let own = create(store, &globex, normal_run(&globex, at(0))).await;
    assert_eq!((own.id.date, own.id.seq), (run.id.date, run.id.seq));

    assert_eq!(
        store.snapshot_point(&globex).await.expect("snapshot"),
        SnapshotPoint {
            watermark: 0,
            at: None
        }
    );
    assert_eq!(count(store, &globex, 2, "advisory").await, 0);
    assert_eq!(stream(store, &globex, 2, "advisory").await, []);
    assert_eq!(store.get_run(&globex, &run.id).await.expect("get run"), None);
    assert_eq!(
        list(store, &globex, query(50)).await,
        std::slice::from_ref(&own.id)
    );
    assert_eq!(
        list(
            store,
            &globex,
            RunQuery {
                after: Some(run.id.clone()),
                ..query(50)
            }
        )
        .await,
        [],
        "a cursor of another tenant continues nothing"
    );
    assert_eq!(
        store
            .get_output(&globex, &run.id, "manifest.json")
            .await
            .expect("get output"),
        None
    );
    assert_eq!(
        store
            .request_cancel(&globex, &run.id, at(2))
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    );
    assert_not_found(
        store
            .heartbeat(&globex, &run.id, "worker-1", 1, at(2), LEASE)
            .await,
        "heartbeat",
    );
    assert_not_found(store.set_progress(&globex, &run.id, 5, 10).await, "set progress");
    assert_not_found(store.add_output(&globex, &run.id, &manifest).await, "add output");
    assert_not_found(
        store
            .finish_run(
                &globex,
                &run.id,
                RunOutcome::Cancelled,
                &TerminalEvent::cancelled(&run.id),
                at(2),
            )
            .await,
        "finish run",
    );
    assert_eq!(
        store
            .begin_idempotency(&globex, &key, at(2), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started,
        "idempotency keys are per tenant"
    );
    assert_eq!(
        store
            .profile_throughput(&globex, &run.profile_id)
            .await
            .expect("throughput"),
        None
    );
    assert_eq!(
        ingest(store, &globex, &[item]).await,
        [IngestOutcome::Inserted { seq: 1 }]
    );
    assert_eq!(
        get(store, &acme, &run.id).await,
        before,
        "the other tenant changed nothing"
    );
    assert_eq!(get(store, &globex, &own.id).await, own, "nor its own run");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(3), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Replay(run.id.clone())
    );
}

// --- runs -------------------------------------------------------------------------------

/// `export-run::<tenant>::<day>::<seq>`: the sequence counts per tenant per UTC day.
pub async fn run_ids_are_numbered_per_tenant_per_utc_day(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let next_day = Utc
        .with_ymd_and_hms(2025, 12, 7, 0, 0, 0)
        .single()
        .expect("valid time");
    let late = Utc
        .with_ymd_and_hms(2025, 12, 6, 23, 59, 59)
        .single()
        .expect("valid time");
    let mut ids = Vec::new();
    for (tenant, created_at) in [
        (&acme, at(0)),
        (&acme, at(60)),
        (&globex, at(120)),
        (&acme, next_day),
        (&acme, late),
        (&acme, next_day + TimeDelta::hours(5)),
    ] {
        ids.push(
            create(store, tenant, normal_run(tenant, created_at))
                .await
                .id
                .to_string(),
        );
    }
    assert_eq!(
        ids,
        [
            "export-run::acme::2025-12-06::0001",
            "export-run::acme::2025-12-06::0002",
            "export-run::globex::2025-12-06::0001",
            "export-run::acme::2025-12-07::0001",
            "export-run::acme::2025-12-06::0003",
            "export-run::acme::2025-12-07::0002",
        ]
    );
}

pub async fn get_run_returns_every_field_as_created(store: &dyn Store) {
    let acme = tenant("acme");
    let profile_id = profile_id(&acme, "weekly-vex");
    let request = RunRequest {
        targets: Some(vec!["vex".to_owned(), "advisory:osv-go".to_owned()]),
        formats: Some(vec!["ndjson".to_owned()]),
        distribution: Some(export_core::DistributionRequest {
            kind: Some("oci".to_owned()),
            reference: Some("registry.local/exports/weekly".to_owned()),
            signing: None,
        }),
        retention_days: Some(14),
        encryption: None,
        priority: Some("high".to_owned()),
        mirror: None,
    };
    let new = NewRun {
        plan: plan(&profile_id, request),
        profile_id: profile_id.clone(),
        project: Some(ProjectId::parse("web-Frontend.1").expect("valid project")),
        watermark: 42,
        snapshot_at: Some(at(-30)),
        items_total: 1234,
        estimate_seconds: 420,
        created_at: at(0),
        trigger: Trigger::Api,
    };
    let run = create(store, &acme, new.clone()).await;
    let expected = Run {
        id: RunId::new(acme.clone(), day("2025-12-06"), 1),
        profile_id,
        project: new.project.clone(),
        status: RunStatus::Queued,
        plan: new.plan.clone(),
        watermark: 42,
        snapshot_at: Some(at(-30)),
        items_total: 1234,
        items_completed: 0,
        estimate_seconds: 420,
        created_at: at(0),
        started_at: None,
        completed_at: None,
        expires_at: None,
        attempts: 0,
        cancel_requested: false,
        error: None,
        warnings: Vec::new(),
        outputs: Vec::new(),
        published_ref: None,
        trigger: Trigger::Api,
    };
    assert_eq!(run, expected);
    assert_eq!(run.priority(), Priority::High);
    assert_eq!(get(store, &acme, &run.id).await, expected);
    assert_eq!(
        store.get_run(&acme, &unknown_run(&acme)).await.expect("get run"),
        None
    );
}

/// Newest first (by day, then sequence), with the status, profile and project filters.
pub async fn list_runs_is_newest_first_and_filters(store: &dyn Store) {
    let acme = tenant("acme");
    let web = ProjectId::parse("web").expect("valid project");
    let mut runs = Vec::new();
    for (profile, project, created_at) in [
        ("daily", None, at(0)),
        ("weekly", Some(web.clone()), at(10)),
        ("daily", Some(web.clone()), at(20)),
        ("daily", None, at(86_400)),
    ] {
        let mut run = new_run(&acme, profile, created_at, Priority::Normal);
        run.project = project;
        runs.push(create(store, &acme, run).await.id);
    }
    let [r1, r2, r3, r4] = <[RunId; 4]>::try_from(runs).expect("four runs");
    claim(store, "worker-1", at(30), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(
        store.request_cancel(&acme, &r2, at(31)).await.expect("cancel"),
        CancelOutcome::Cancelled
    );

    let all = [r4.clone(), r3.clone(), r2.clone(), r1.clone()];
    assert_eq!(list(store, &acme, query(50)).await, all);
    let filtered = |status, profile: Option<&str>, project: Option<&ProjectId>| RunQuery {
        status,
        profile_id: profile.map(|name| profile_id(&acme, name)),
        project: project.cloned(),
        ..query(50)
    };
    assert_eq!(
        list(store, &acme, filtered(Some(RunStatus::Running), None, None)).await,
        std::slice::from_ref(&r1)
    );
    assert_eq!(
        list(store, &acme, filtered(Some(RunStatus::Queued), None, None)).await,
        [r4.clone(), r3.clone()]
    );
    assert_eq!(
        list(store, &acme, filtered(Some(RunStatus::Cancelled), None, None)).await,
        std::slice::from_ref(&r2)
    );
    assert_eq!(
        list(store, &acme, filtered(Some(RunStatus::Succeeded), None, None)).await,
        []
    );
    assert_eq!(
        list(store, &acme, filtered(None, Some("daily"), None)).await,
        [r4.clone(), r3.clone(), r1.clone()]
    );
    assert_eq!(
        list(store, &acme, filtered(None, None, Some(&web))).await,
        [r3.clone(), r2.clone()]
    );
    assert_eq!(
        list(store, &acme, filtered(None, Some("daily"), Some(&web))).await,
        std::slice::from_ref(&r3)
    );
    assert_eq!(
        list(
            store,
            &acme,
            filtered(Some(RunStatus::Queued), Some("weekly"), None)
        )
        .await,
        []
    );
    let page = store.list_runs(&acme, &query(50)).await.expect("list runs");
    assert_eq!(
        page.runs[3],
        get(store, &acme, &r1).await,
        "listed runs are whole runs"
    );
}

/// A cursor walks every run exactly once; `next` is set only when more runs follow.
pub async fn list_runs_pages_through_every_run_once(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let mut created = Vec::new();
    for idx in 0..7 {
        // Across a day boundary, so the order is by day first.
        let created_at = at(idx * 3 * 3600);
        created.push(create(store, &acme, normal_run(&acme, created_at)).await.id);
        create(store, &globex, normal_run(&globex, created_at)).await;
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_runs(
                &acme,
                &RunQuery {
                    after: after.clone(),
                    ..query(3)
                },
            )
            .await
            .expect("list runs");
        sizes.push(page.runs.len());
        seen.extend(page.runs.iter().map(|run| run.id.clone()));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), page.runs.last().map(|run| &run.id));
                after = Some(next);
            }
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, created);

    let whole = store.list_runs(&acme, &query(7)).await.expect("list runs");
    assert_eq!(whole.runs.len(), 7);
    assert_eq!(whole.next, None, "no next page when exactly the last run fits");
    let first = store.list_runs(&acme, &query(1)).await.expect("list runs");
    assert_eq!(first.next.as_ref(), Some(&created[0]));
}

// --- idempotency ------------------------------------------------------------------------

pub async fn idempotent_create_replays_the_first_run(store: &dyn Store) {
    let acme = tenant("acme");
    let key = claim_for("key-1", "body-a");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
    let run = store
        .create_run(&acme, normal_run(&acme, at(0)), Some(&key))
        .await
        .expect("create run");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(5), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Replay(run.id.clone())
    );
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(60), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Replay(run.id.clone()),
        "a completed key is never taken over"
    );
    assert_eq!(list(store, &acme, query(50)).await, [run.id]);
}

pub async fn idempotency_key_with_another_body_is_a_mismatch(store: &dyn Store) {
    let acme = tenant("acme");
    let key = claim_for("key-1", "body-a");
    store
        .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
        .await
        .expect("begin");
    store
        .create_run(&acme, normal_run(&acme, at(0)), Some(&key))
        .await
        .expect("create run");
    assert_eq!(
        store
            .begin_idempotency(&acme, &claim_for("key-1", "body-b"), at(5), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Mismatch
    );

    let in_flight = claim_for("key-2", "body-a");
    store
        .begin_idempotency(&acme, &in_flight, at(0), KEY_LEASE)
        .await
        .expect("begin");
    assert_eq!(
        store
            .begin_idempotency(&acme, &claim_for("key-2", "body-b"), at(5), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Mismatch,
        "another body is a mismatch even while the first request is in flight"
    );
}

pub async fn idempotency_claim_still_in_flight_is_reported(store: &dyn Store) {
    let acme = tenant("acme");
    let key = claim_for("key-1", "body-a");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(1), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::InFlight { until: at(10) }
    );
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(9), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::InFlight { until: at(10) },
        "a retry does not extend the claim of the request in flight"
    );
}

/// A claim whose owner vanished (no run by the end of its lease) is taken over by the
/// next request with the key, with this body or another; the taker's run is the key's
/// one run, and the vanished owner can no longer complete it.
pub async fn lapsed_idempotency_claim_is_taken_over_and_a_live_one_is_not(store: &dyn Store) {
    let acme = tenant("acme");
    let key = claim_for("key-1", "body-a");
    store
        .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
        .await
        .expect("begin");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(9), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::InFlight { until: at(10) },
        "a live claim is not taken over"
    );
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(10), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started,
        "a lapsed claim is taken over"
    );
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(11), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::InFlight { until: at(20) },
        "the taker holds a lease of its own"
    );
    let run = store
        .create_run(&acme, normal_run(&acme, at(11)), Some(&key))
        .await
        .expect("the taker creates the run");
    let late = store
        .create_run(&acme, normal_run(&acme, at(12)), Some(&key))
        .await
        .expect_err("a completed claim creates no second run");
    assert!(
        matches!(late, StoreError::NotFound { kind, .. } if kind == crate::IDEMPOTENCY_CLAIM),
        "{late:?}"
    );
    assert_eq!(list(store, &acme, query(50)).await, std::slice::from_ref(&run.id));
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(30), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Replay(run.id)
    );

    // A failed request leaves its claim to lapse; a fixed body may then take the key.
    let failed = claim_for("key-2", "body-a");
    store
        .begin_idempotency(&acme, &failed, at(0), KEY_LEASE)
        .await
        .expect("begin");
    let fixed = claim_for("key-2", "body-fixed");
    assert_eq!(
        store
            .begin_idempotency(&acme, &fixed, at(5), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Mismatch,
        "another body is refused while the first is in flight"
    );
    assert_eq!(
        store
            .begin_idempotency(&acme, &fixed, at(10), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started,
        "a lapsed key takes a new body"
    );
    assert!(
        store
            .create_run(&acme, normal_run(&acme, at(11)), Some(&failed))
            .await
            .is_err(),
        "the first body's owner lost the key"
    );
}

/// A record older than `IDEMPOTENCY_TTL` counts as absent, completed or not.
pub async fn idempotency_records_expire_after_the_ttl(store: &dyn Store) {
    let acme = tenant("acme");
    let ttl = TimeDelta::from_std(IDEMPOTENCY_TTL).expect("ttl fits");
    let key = claim_for("key-1", "body-a");
    store
        .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
        .await
        .expect("begin");
    let first = store
        .create_run(&acme, normal_run(&acme, at(0)), Some(&key))
        .await
        .expect("create run");
    assert_eq!(
        store
            .begin_idempotency(&acme, &key, at(0) + ttl - TimeDelta::seconds(1), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Replay(first.id.clone())
    );
    let later = at(0) + ttl + TimeDelta::seconds(1);
    let other_body = claim_for("key-1", "body-b");
    assert_eq!(
        store
            .begin_idempotency(&acme, &other_body, later, KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
    let second = store
        .create_run(&acme, normal_run(&acme, later), Some(&other_body))
        .await
        .expect("create run");
    assert_eq!(
        store
            .begin_idempotency(&acme, &other_body, later + TimeDelta::seconds(1), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Replay(second.id)
    );

    let abandoned = claim_for("key-2", "body-a");
    store
        .begin_idempotency(&acme, &abandoned, at(0), KEY_LEASE)
        .await
        .expect("begin");
    assert_eq!(
        store
            .begin_idempotency(&acme, &abandoned, later, KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started,
        "an abandoned in-flight claim expires too"
    );
}

pub async fn idempotency_keys_are_scoped_by_tenant_subject_method_path_and_key(store: &dyn Store) {
    let acme = tenant("acme");
    let key = claim_for("key-1", "body-a");
    store
        .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
        .await
        .expect("begin");
    store
        .create_run(&acme, normal_run(&acme, at(0)), Some(&key))
        .await
        .expect("create run");

    let variants = [
        IdempotencyClaim {
            subject: "user-2".to_owned(),
            ..key.clone()
        },
        IdempotencyClaim {
            method: "PUT".to_owned(),
            ..key.clone()
        },
        IdempotencyClaim {
            path: "/export-center/runs/other".to_owned(),
            ..key.clone()
        },
        IdempotencyClaim {
            key: "key-2".to_owned(),
            ..key.clone()
        },
    ];
    for variant in &variants {
        assert_eq!(
            store
                .begin_idempotency(&acme, variant, at(1), KEY_LEASE)
                .await
                .expect("begin"),
            IdempotencyBegin::Started,
            "{variant:?} is another key"
        );
    }
    assert_eq!(
        store
            .begin_idempotency(&tenant("globex"), &key, at(1), KEY_LEASE)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
}

/// `create_run` completes the claim in its own transaction; without a begun claim it
/// fails and leaves nothing behind, not even a used-up run number.
pub async fn create_run_needs_a_begun_idempotency_claim(store: &dyn Store) {
    let acme = tenant("acme");
    let never_begun = claim_for("key-1", "body-a");
    assert!(store
        .create_run(&acme, normal_run(&acme, at(0)), Some(&never_begun))
        .await
        .is_err());
    store
        .begin_idempotency(&tenant("globex"), &never_begun, at(0), KEY_LEASE)
        .await
        .expect("begin");
    assert!(
        store
            .create_run(&acme, normal_run(&acme, at(0)), Some(&never_begun))
            .await
            .is_err(),
        "another tenant's claim does not count"
    );
    assert_eq!(list(store, &acme, query(50)).await, []);
    let run = create(store, &acme, normal_run(&acme, at(1))).await;
    assert_eq!(run.id.seq, 1);
}

// --- claiming ---------------------------------------------------------------------------

pub async fn claim_finds_nothing_when_no_run_is_queued(store: &dyn Store) {
    let acme = tenant("acme");
    assert_eq!(claim(store, "worker-1", at(0), NO_LIMIT).await, None);
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    store.request_cancel(&acme, &run.id, at(1)).await.expect("cancel");
    assert_eq!(claim(store, "worker-1", at(2), NO_LIMIT).await, None);
}

/// A claim sets the run running, stamps `started_at`, counts the attempt, and is what
/// `get_run` then shows.
pub async fn claim_starts_the_run_under_a_lease(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    let claimed = claim(store, "worker-1", at(5), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(
        claimed,
        Run {
            status: RunStatus::Running,
            started_at: Some(at(5)),
            attempts: 1,
            ..run.clone()
        }
    );
    assert_eq!(get(store, &acme, &run.id).await, claimed);
    assert_eq!(store.queue_depth().await.expect("queue depth"), 0);
}

pub async fn claimed_run_is_not_claimed_again_while_its_lease_holds(store: &dyn Store) {
    let acme = tenant("acme");
    create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(claim(store, "worker-2", at(1), NO_LIMIT).await, None);
    assert_eq!(claim(store, "worker-2", at(29), NO_LIMIT).await, None);
}

/// A worker that stops heartbeating loses its run: the next claim after the lease
/// takes it over, keeps `started_at`, and counts a second attempt.
pub async fn run_whose_lease_expired_is_claimed_again(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    let again = claim(store, "worker-2", at(31), NO_LIMIT)
        .await
        .expect("the expired run");
    assert_eq!(again.id, run.id);
    assert_eq!(again.status, RunStatus::Running);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.started_at, Some(at(0)));
    assert_eq!(
        store
            .heartbeat(&acme, &run.id, "worker-1", 1, at(32), LEASE)
            .await
            .expect("heartbeat"),
        LeaseState {
            owned: false,
            cancel_requested: false
        }
    );
    assert_eq!(
        store
            .heartbeat(&acme, &run.id, "worker-2", 2, at(32), LEASE)
            .await
            .expect("heartbeat"),
        LeaseState {
            owned: true,
            cancel_requested: false
        }
    );
    // An earlier attempt never holds the run, even under the worker name of the current
    // one (a process that claimed its own lapsed run again in another loop).
    assert!(
        !store
            .heartbeat(&acme, &run.id, "worker-2", 1, at(33), LEASE)
            .await
            .expect("heartbeat")
            .owned
    );
    assert_eq!(claim(store, "worker-3", at(50), NO_LIMIT).await, None);
}

pub async fn claims_take_higher_priority_first_then_older(store: &dyn Store) {
    let acme = tenant("acme");
    let mut ids = Vec::new();
    for (priority, created_at) in [
        (Priority::Low, at(0)),
        (Priority::Normal, at(1)),
        (Priority::High, at(2)),
        (Priority::Normal, at(3)),
        (Priority::High, at(4)),
    ] {
        ids.push(
            create(store, &acme, new_run(&acme, "daily", created_at, priority))
                .await
                .id,
        );
    }
    let claimed = claim_all(store, at(10), NO_LIMIT, ids.len()).await;
    let order = [2, 4, 1, 3, 0].map(|idx| ids[idx].clone());
    assert_eq!(claimed, order);
}

/// The tenant with the fewest running runs goes first, even over another tenant's
/// higher-priority run; priority and age decide between equals.
pub async fn claims_are_fair_across_tenants(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let a1 = create(store, &acme, new_run(&acme, "daily", at(0), Priority::High))
        .await
        .id;
    let a2 = create(store, &acme, new_run(&acme, "daily", at(1), Priority::High))
        .await
        .id;
    let g1 = create(store, &globex, new_run(&globex, "daily", at(5), Priority::Low))
        .await
        .id;
    let g2 = create(store, &globex, new_run(&globex, "daily", at(6), Priority::Low))
        .await
        .id;
    let claimed = claim_all(store, at(10), NO_LIMIT, 4).await;
    assert_eq!(claimed, [a1, g1, a2, g2]);
}

/// A tenant never has more than `max_active_per_tenant` running runs; its other runs
/// wait while other tenants' runs go ahead.
pub async fn claims_respect_the_active_run_limit_per_tenant(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let mut acme_runs = Vec::new();
    for idx in 0..3 {
        acme_runs.push(create(store, &acme, normal_run(&acme, at(idx))).await.id);
    }
    let globex_run = create(store, &globex, normal_run(&globex, at(10))).await.id;

    let claimed = claim_all(store, at(20), 2, 3).await;
    assert_eq!(
        claimed,
        [acme_runs[0].clone(), globex_run.clone(), acme_runs[1].clone()]
    );
    assert_eq!(get(store, &acme, &acme_runs[2]).await.status, RunStatus::Queued);

    finish(store, &acme, &acme_runs[0], succeeded(at(1000)), at(25)).await;
    assert_eq!(claim_id(store, at(26), 2).await, Some(acme_runs[2].clone()));
    assert_eq!(claim_id(store, at(27), 2).await, None);

    // Taking over an expired run does not add to its tenant's running runs, so a
    // tenant at its limit still gets its abandoned runs restarted.
    finish(store, &globex, &globex_run, succeeded(at(1000)), at(28)).await;
    let taken_over = claim(store, "worker-2", at(100), 2)
        .await
        .expect("an expired run");
    assert_eq!((taken_over.id, taken_over.attempts), (acme_runs[1].clone(), 2));
}

/// Eight workers racing on one store claim each of 40 runs exactly once.
pub async fn concurrent_claimers_claim_every_run_exactly_once(store: Arc<dyn Store>) {
    let tenants = ["acme", "globex", "initech", "umbrella"].map(tenant);
    let mut created = BTreeSet::new();
    for idx in 0..40 {
        let tenant = &tenants[idx % tenants.len()];
        let run = create(&*store, tenant, normal_run(tenant, at(idx as i64))).await;
        created.insert(run.id);
    }

    let workers: Vec<_> = (0..8)
        .map(|worker_idx| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let worker = format!("worker-{worker_idx}");
                let mut claimed = Vec::new();
                // Bounded, so a backend that hands out runs twice fails instead of spinning.
                while claimed.len() <= 40 {
                    match claim(&*store, &worker, at(100), NO_LIMIT).await {
                        Some(run) => claimed.push(run.id),
                        None => break,
                    }
                }
                claimed
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.expect("claiming task"));
    }
    let unique: BTreeSet<RunId> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), 40, "every run claimed once: {claimed:?}");
    assert_eq!(unique, created);
    for run_id in &created {
        let run = get(&*store, &run_id.tenant, run_id).await;
        assert_eq!((run.status, run.attempts), (RunStatus::Running, 1));
    }
}

/// Workers claiming at once never run more than the cap of one tenant's runs: each claim
/// counts the running runs that every earlier claim, of any connection, has made.
pub async fn concurrent_claimers_keep_each_tenants_active_run_limit(store: Arc<dyn Store>) {
    let tenants = ["acme", "globex"].map(tenant);
    for idx in 0..12 {
        let tenant = &tenants[idx % tenants.len()];
        create(&*store, tenant, normal_run(tenant, at(idx as i64))).await;
    }
    let workers: Vec<_> = (0..8)
        .map(|worker_idx| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(run) = claim(&*store, &format!("worker-{worker_idx}"), at(100), 2).await {
                    claimed.push(run.id);
                }
                claimed
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.expect("claiming task"));
    }
    for tenant in &tenants {
        let running = claimed.iter().filter(|id| id.tenant == *tenant).count();
        assert_eq!(running, 2, "{tenant}: {claimed:?}");
    }
}

/// Events appended to one run from many connections at once are numbered 1, 2, 3 …
/// without a gap or a repeat, and read back in that order.
pub async fn concurrent_appends_number_a_runs_events_without_gaps(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let run = create(&*store, &acme, normal_run(&acme, at(0))).await;
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (store, acme, run_id) = (Arc::clone(&store), acme.clone(), run.id.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..10 {
                    let data = serde_json::json!({ "writer": writer, "n": n });
                    seqs.push(
                        store
                            .append_event(&acme, &run_id, "progress", &data, at(1))
                            .await
                            .expect("append"),
                    );
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.extend(writer.await.expect("appending task"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=80).collect::<Vec<i64>>());
    let events = store.events_after(&acme, &run.id, 0, 100).await.expect("events");
    let read: Vec<i64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(read, seqs);
}

/// Runs of one tenant and day created at once from many connections get the day's
/// sequence numbers 1, 2, 3 … once each.
pub async fn concurrent_run_creation_numbers_a_days_runs_once_each(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let creators: Vec<_> = (0..8)
        .map(|creator| {
            let (store, acme) = (Arc::clone(&store), acme.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..5 {
                    let run = create(&*store, &acme, normal_run(&acme, at(creator * 10 + n))).await;
                    seqs.push(run.id.seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for creator in creators {
        seqs.extend(creator.await.expect("creating task"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<u32>>());
}

/// Many retries of a request whose claim lapsed, at once from many connections: exactly
/// one takes the key over, the others are told it is in flight, and the key yields one
/// run.
pub async fn concurrent_takeovers_of_a_lapsed_idempotency_claim_start_one_request(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let key = claim_for("key-1", "body-a");
    store
        .begin_idempotency(&acme, &key, at(0), KEY_LEASE)
        .await
        .expect("begin");
    let retries: Vec<_> = (0..8)
        .map(|_| {
            let (store, acme, key) = (Arc::clone(&store), acme.clone(), key.clone());
            tokio::spawn(async move {
                let begun = store
                    .begin_idempotency(&acme, &key, at(30), KEY_LEASE)
                    .await
                    .expect("begin");
                let created = match begun {
                    IdempotencyBegin::Started => Some(
                        store
                            .create_run(&acme, normal_run(&acme, at(30)), Some(&key))
                            .await
                            .expect("the taker creates the run"),
                    ),
                    _ => None,
                };
                (begun, created)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for retry in retries {
        outcomes.push(retry.await.expect("retrying task"));
    }
    let started = outcomes
        .iter()
        .filter(|(begun, _)| *begun == IdempotencyBegin::Started)
        .count();
    assert_eq!(started, 1, "{outcomes:?}");
    for (begun, _) in &outcomes {
        assert!(
            matches!(
                begun,
                IdempotencyBegin::Started | IdempotencyBegin::InFlight { .. } | IdempotencyBegin::Replay(_)
            ),
            "{begun:?}"
        );
    }
    let run = outcomes.into_iter().find_map(|(_, run)| run).expect("one run");
    assert_eq!(list(&*store, &acme, query(50)).await, [run.id]);
}

/// Batches of one tenant ingested at once from many connections, over the same
/// documents in several versions, all succeed; every new version gets its own sequence,
/// and the snapshot holds each document once, at one of its versions.
pub async fn concurrent_ingests_of_one_tenant_store_every_version_once(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let writers: Vec<_> = (0..6u32)
        .map(|writer| {
            let (store, acme) = (Arc::clone(&store), acme.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for round in 0..4u32 {
                    let batch: Vec<NewEvidence> = (0..20)
                        .map(|idx| advisory(&format!("GO-{idx:02}"), (writer + round) % 3 + 1))
                        .collect();
                    outcomes.extend(ingest(&*store, &acme, &batch).await);
                }
                outcomes
            })
        })
        .collect();
    let mut new_seqs = Vec::new();
    for writer in writers {
        for outcome in writer.await.expect("ingesting task") {
            match outcome {
                IngestOutcome::Inserted { seq } | IngestOutcome::Replaced { seq } => new_seqs.push(seq),
                IngestOutcome::Unchanged { .. } => {}
            }
        }
    }
    new_seqs.sort_unstable();
    let expected: Vec<i64> = (1..=new_seqs.len() as i64).collect();
    assert_eq!(
        new_seqs, expected,
        "every new version numbered once, without gaps"
    );
    let point = store.snapshot_point(&acme).await.expect("snapshot point");
    assert_eq!(point.watermark, new_seqs.len() as i64);
    let items = stream(&*store, &acme, point.watermark, "advisory").await;
    let ids: Vec<&str> = items.iter().map(|item| item.id.as_str()).collect();
    let expected_ids: Vec<String> = (0..20).map(|idx| format!("GO-{idx:02}")).collect();
    assert_eq!(ids, expected_ids);
}

/// Removals of one tenant made at once from many connections, beside ingests of other
/// documents of the source, remove each absent item once: one tombstone each, every
/// change numbered once without gaps.
pub async fn concurrent_removals_of_one_tenant_remove_each_item_once(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let ids: Vec<String> = (0..20).map(|idx| format!("GO-{idx:02}")).collect();
    let items: Vec<NewEvidence> = ids.iter().map(|id| advisory(id, 1)).collect();
    ingest(&*store, &acme, &items).await;
    let kept: Vec<&str> = ids.iter().step_by(2).map(String::as_str).collect();
    let tasks: Vec<_> = (0..6u32)
        .map(|task| {
            let (store, acme) = (Arc::clone(&store), acme.clone());
            let mut present: Vec<String> = kept.iter().map(|id| (*id).to_owned()).collect();
            present.extend((0..6).map(|writer| format!("NEW-{writer}")));
            tokio::spawn(async move {
                let new = [advisory(&format!("NEW-{task}"), 1)];
                let ingested = ingest(&*store, &acme, &new).await;
                let present: Vec<&str> = present.iter().map(String::as_str).collect();
                (ingested, remove(&*store, &acme, "osv-go", &present, at(60)).await)
            })
        })
        .collect();
    let mut removed = Vec::new();
    for task in tasks {
        let (ingested, tombstones) = task.await.expect("removing task");
        assert!(matches!(ingested[..], [IngestOutcome::Inserted { .. }]));
        removed.extend(tombstones.into_iter().map(|tombstone| tombstone.id));
    }
    removed.sort();
    let expected: Vec<String> = ids.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(removed, expected, "each absent item removed once");
    let point = store.snapshot_point(&acme).await.expect("snapshot point");
    assert_eq!(point.watermark, 20 + 6 + 10, "every change numbered once");
    let live: Vec<String> = stream(&*store, &acme, point.watermark, "advisory")
        .await
        .into_iter()
        .map(|record| record.id)
        .collect();
    let mut expected_live: Vec<String> = kept.iter().map(|id| (*id).to_owned()).collect();
    expected_live.extend((0..6).map(|task| format!("NEW-{task}")));
    expected_live.sort();
    assert_eq!(live, expected_live);
    assert_eq!(
        removals(&*store, &acme, 0, point.watermark, "advisory")
            .await
            .len(),
        10
    );
}

// --- heartbeat, cancel, progress, outputs, finish ----------------------------------------

pub async fn heartbeat_extends_the_lease_of_its_owner(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(
        store
            .heartbeat(&acme, &run.id, "worker-1", 1, at(20), LEASE)
            .await
            .expect("heartbeat"),
        LeaseState {
            owned: true,
            cancel_requested: false
        }
    );
    assert_eq!(
        claim(store, "worker-2", at(40), NO_LIMIT).await,
        None,
        "the heartbeat extended the lease to 50 s"
    );
    let taken_over = claim(store, "worker-2", at(51), NO_LIMIT)
        .await
        .expect("the expired run");
    assert_eq!(taken_over.id, run.id);
    assert!(
        !store
            .heartbeat(&acme, &run.id, "worker-1", 1, at(52), LEASE)
            .await
            .expect("heartbeat")
            .owned
    );
    assert_not_found(
        store
            .heartbeat(&acme, &unknown_run(&acme), "worker-1", 1, at(52), LEASE)
            .await,
        "heartbeat of an unknown run",
    );
}

pub async fn heartbeat_reports_a_cancel_request(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(
        store.request_cancel(&acme, &run.id, at(5)).await.expect("cancel"),
        CancelOutcome::Requested
    );
    assert_eq!(
        store
            .heartbeat(&acme, &run.id, "worker-1", 1, at(10), LEASE)
            .await
            .expect("heartbeat"),
        LeaseState {
            owned: true,
            cancel_requested: true
        }
    );
}

pub async fn cancelling_a_queued_run_cancels_it_at_once(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    assert_eq!(
        store
            .request_cancel(&acme, &run.id, at(10))
            .await
            .expect("cancel"),
        CancelOutcome::Cancelled
    );
    let cancelled = get(store, &acme, &run.id).await;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.completed_at, Some(at(10)));
    assert_eq!(store.queue_depth().await.expect("queue depth"), 0);
    assert_eq!(claim(store, "worker-1", at(11), NO_LIMIT).await, None);
    assert_eq!(
        store
            .request_cancel(&acme, &run.id, at(12))
            .await
            .expect("cancel"),
        CancelOutcome::AlreadyFinished(RunStatus::Cancelled)
    );
}

pub async fn cancelling_a_running_run_asks_its_worker_to_stop(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    for now in [at(5), at(6)] {
        assert_eq!(
            store.request_cancel(&acme, &run.id, now).await.expect("cancel"),
            CancelOutcome::Requested
        );
    }
    let flagged = get(store, &acme, &run.id).await;
    assert_eq!(
        (flagged.status, flagged.cancel_requested),
        (RunStatus::Running, true)
    );
    finish(store, &acme, &run.id, RunOutcome::Cancelled, at(8)).await;
    assert_eq!(
        store.request_cancel(&acme, &run.id, at(9)).await.expect("cancel"),
        CancelOutcome::AlreadyFinished(RunStatus::Cancelled)
    );
}

pub async fn cancelling_a_finished_run_reports_how_it_ended(store: &dyn Store) {
    let acme = tenant("acme");
    let done = create(store, &acme, normal_run(&acme, at(0))).await.id;
    let broken = create(store, &acme, normal_run(&acme, at(1))).await.id;
    claim(store, "worker-1", at(2), NO_LIMIT)
        .await
        .expect("a run to claim");
    claim(store, "worker-1", at(2), NO_LIMIT)
        .await
        .expect("a run to claim");
    finish(store, &acme, &done, succeeded(at(1000)), at(3)).await;
    finish(store, &acme, &broken, RunOutcome::Failed(failure()), at(3)).await;
    assert_eq!(
        store.request_cancel(&acme, &done, at(4)).await.expect("cancel"),
        CancelOutcome::AlreadyFinished(RunStatus::Succeeded)
    );
    assert_eq!(
        store.request_cancel(&acme, &broken, at(4)).await.expect("cancel"),
        CancelOutcome::AlreadyFinished(RunStatus::Failed)
    );
    assert!(!get(store, &acme, &done).await.cancel_requested);
}

pub async fn cancelling_an_unknown_run_is_not_found(store: &dyn Store) {
    let acme = tenant("acme");
    assert_eq!(
        store
            .request_cancel(&acme, &unknown_run(&acme), at(0))
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    );
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    assert_eq!(
        store
            .request_cancel(&tenant("globex"), &run.id, at(1))
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    );
    assert_eq!(get(store, &acme, &run.id).await.status, RunStatus::Queued);
}

pub async fn progress_is_recorded(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    store
        .set_progress(&acme, &run.id, 70, 200)
        .await
        .expect("set progress");
    let progressed = get(store, &acme, &run.id).await;
    assert_eq!((progressed.items_completed, progressed.items_total), (70, 200));
    assert_not_found(
        store.set_progress(&acme, &unknown_run(&acme), 1, 2).await,
        "progress of an unknown run",
    );
}

/// An output replaces the one of the same path; a run lists its outputs sorted by
/// (type, id, format, path).
pub async fn outputs_are_replaced_by_path_and_listed_in_order(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    let manifest = output("manifest", "manifest", "json", "manifest.json", "{}");
    let narrow = output(
        "advisory",
        "advisory:osv-go",
        "ndjson",
        "advisory-osv-go.ndjson",
        "a",
    );
    let ndjson = output("advisory", "advisory", "ndjson", "advisory.ndjson", "b");
    let first_json = output("advisory", "advisory", "json", "advisory.json", "c");
    let checksums = output("checksums", "checksums", "txt", "checksums.txt", "d");
    for item in [&manifest, &narrow, &ndjson, &first_json, &checksums] {
        store.add_output(&acme, &run.id, item).await.expect("add output");
    }
    let json = output(
        "advisory",
        "advisory",
        "json",
        "advisory.json",
        "replaced content",
    );
    store.add_output(&acme, &run.id, &json).await.expect("add output");

    assert_eq!(
        store
            .get_output(&acme, &run.id, "advisory.json")
            .await
            .expect("get output"),
        Some(json.clone())
    );
    assert_eq!(
        store
            .get_output(&acme, &run.id, "missing.json")
            .await
            .expect("get output"),
        None
    );
    assert_eq!(
        get(store, &acme, &run.id).await.outputs,
        [json, ndjson, narrow, checksums, manifest]
    );
    assert_not_found(
        store.add_output(&acme, &unknown_run(&acme), &first_json).await,
        "output of an unknown run",
    );
}

pub async fn succeeded_run_records_its_completion(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    let manifest = output("manifest", "manifest", "json", "manifest.json", "{}");
    store
        .add_output(&acme, &run.id, &manifest)
        .await
        .expect("add output");
    let warnings = vec![RunWarning {
        code: "EMPTY_TARGET".to_owned(),
        target: Some("vex".to_owned()),
        message: "the snapshot holds no vex items".to_owned(),
    }];
    let expires_at = at(7 * 86_400);
    finish(
        store,
        &acme,
        &run.id,
        RunOutcome::Succeeded {
            expires_at,
            warnings: warnings.clone(),
            published_ref: Some("registry.local/exports/daily@sha256:ab12".to_owned()),
        },
        at(100),
    )
    .await;

    let done = get(store, &acme, &run.id).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.started_at, Some(at(0)));
    assert_eq!(done.completed_at, Some(at(100)));
    assert_eq!(done.expires_at, Some(expires_at));
    assert_eq!(done.warnings, warnings);
    assert_eq!(
        done.published_ref.as_deref(),
        Some("registry.local/exports/daily@sha256:ab12")
    );
    assert_eq!(done.error, None);
    assert_eq!(done.outputs, [manifest]);
    assert_eq!(claim(store, "worker-2", at(1000), NO_LIMIT).await, None);
    assert!(
        !store
            .heartbeat(&acme, &run.id, "worker-1", 1, at(101), LEASE)
            .await
            .expect("heartbeat")
            .owned,
        "a finished run is nobody's"
    );
}

pub async fn failed_run_keeps_its_error_and_drops_its_outputs(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    let data = output("advisory", "advisory", "json", "advisory.json", "[]");
    store.add_output(&acme, &run.id, &data).await.expect("add output");
    finish(store, &acme, &run.id, RunOutcome::Failed(failure()), at(100)).await;

    let failed = get(store, &acme, &run.id).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error, Some(failure()));
    assert_eq!(failed.completed_at, Some(at(100)));
    assert_eq!(failed.outputs, []);
    assert_eq!(
        store
            .get_output(&acme, &run.id, "advisory.json")
            .await
            .expect("get output"),
        None
    );
}

pub async fn cancelled_run_drops_its_outputs(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    let data = output("advisory", "advisory", "json", "advisory.json", "[]");
    store.add_output(&acme, &run.id, &data).await.expect("add output");
    store.request_cancel(&acme, &run.id, at(5)).await.expect("cancel");
    finish(store, &acme, &run.id, RunOutcome::Cancelled, at(6)).await;

    let cancelled = get(store, &acme, &run.id).await;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.completed_at, Some(at(6)));
    assert_eq!(cancelled.outputs, []);
    assert_eq!(cancelled.error, None);
}

/// A late `finish_run` (say, from a worker that lost its lease) cannot overwrite how a
/// run ended.
pub async fn finished_run_keeps_its_first_outcome(store: &dyn Store) {
    let acme = tenant("acme");
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    let manifest = output("manifest", "manifest", "json", "manifest.json", "{}");
    store
        .add_output(&acme, &run.id, &manifest)
        .await
        .expect("add output");
    finish(store, &acme, &run.id, succeeded(at(1000)), at(10)).await;
    let done = get(store, &acme, &run.id).await;
    finish(store, &acme, &run.id, RunOutcome::Failed(failure()), at(20)).await;
    finish(store, &acme, &run.id, RunOutcome::Cancelled, at(30)).await;
    assert_eq!(get(store, &acme, &run.id).await, done);
    assert_not_found(
        store
            .finish_run(
                &acme,
                &unknown_run(&acme),
                RunOutcome::Cancelled,
                &TerminalEvent::cancelled(&unknown_run(&acme)),
                at(30),
            )
            .await,
        "finishing an unknown run",
    );
}

/// Ending a run appends its terminal event in the same write, so a stream never finds an
/// ended run without it; a run that had already ended gets no second one. Cancelling a
/// queued run appends `cancelled`; cancelling a running one only asks its worker, and
/// its worker's success is then refused, so the run ends `cancelled`.
pub async fn a_runs_end_and_its_terminal_event_are_stored_together(store: &dyn Store) {
    let acme = tenant("acme");
    let events = |run_id: RunId| {
        let acme = acme.clone();
        async move {
            let events = store.events_after(&acme, &run_id, 0, 100).await.expect("events");
            events
                .into_iter()
                .map(|e| (e.seq, e.event, e.data))
                .collect::<Vec<_>>()
        }
    };

    let done = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    store
        .append_event(&acme, &done.id, "started", &serde_json::json!({}), at(1))
        .await
        .expect("append");
    let completed = TerminalEvent::of(&done.id, &succeeded(at(1000)), true);
    store
        .finish_run(&acme, &done.id, succeeded(at(1000)), &completed, at(2))
        .await
        .expect("finish");
    let expected = vec![
        (1, "started".to_owned(), serde_json::json!({})),
        (2, "completed".to_owned(), completed.data.clone()),
    ];
    assert_eq!(events(done.id.clone()).await, expected);
    assert_eq!(completed.data["manifestPath"], "manifest.json");
    assert_eq!(completed.data["manifestDssePath"], "manifest.dsse.json");
    assert_eq!(
        finish(store, &acme, &done.id, RunOutcome::Cancelled, at(3)).await,
        Finished::AlreadyEnded
    );
    assert_eq!(
        events(done.id.clone()).await,
        expected,
        "a late finish adds no event"
    );

    let queued = create(store, &acme, normal_run(&acme, at(4))).await;
    assert_eq!(
        store
            .request_cancel(&acme, &queued.id, at(5))
            .await
            .expect("cancel"),
        CancelOutcome::Cancelled
    );
    let cancelled = vec![(
        1,
        "cancelled".to_owned(),
        serde_json::json!({ "runId": queued.id.to_string(), "status": "cancelled" }),
    )];
    assert_eq!(events(queued.id.clone()).await, cancelled);
    store
        .request_cancel(&acme, &queued.id, at(6))
        .await
        .expect("cancel");
    assert_eq!(events(queued.id.clone()).await, cancelled, "cancelled once");

    let running = create(store, &acme, normal_run(&acme, at(7))).await;
    claim(store, "worker-1", at(7), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(
        store
            .request_cancel(&acme, &running.id, at(8))
            .await
            .expect("cancel"),
        CancelOutcome::Requested
    );
    assert_eq!(events(running.id.clone()).await, [], "its worker ends it");
    assert_eq!(
        finish(store, &acme, &running.id, succeeded(at(1000)), at(9)).await,
        Finished::CancelRequested,
        "an accepted cancel is not lost to a run that was just finishing"
    );
    assert_eq!(get(store, &acme, &running.id).await.status, RunStatus::Running);
    assert_eq!(
        events(running.id.clone()).await,
        [],
        "the refused success left no event"
    );
    assert_eq!(
        finish(store, &acme, &running.id, RunOutcome::Cancelled, at(9)).await,
        Finished::Recorded
    );
    assert_eq!(
        events(running.id.clone()).await,
        [(
            1,
            "cancelled".to_owned(),
            serde_json::json!({ "runId": running.id.to_string(), "status": "cancelled" }),
        )]
    );
    let failed = TerminalEvent::of(&running.id, &RunOutcome::Failed(failure()), false);
    assert_eq!(failed.event, "failed");
    assert_eq!(failed.data["code"], "ERR_EXPORT_TIMEOUT");
    assert_eq!(failed.data["message"], failure().message);
    assert_eq!(failed.data["retryAfterSeconds"], 60);
}

/// Throughput is the items of the profile's succeeded runs over their total run time
/// (`started_at` to `completed_at`); failed, running and other profiles' runs do not count.
pub async fn profile_throughput_comes_from_succeeded_runs(store: &dyn Store) {
    let acme = tenant("acme");
    let daily = profile_id(&acme, "daily");
    assert_eq!(
        store.profile_throughput(&acme, &daily).await.expect("throughput"),
        None
    );

    let run_at = |items_total, created_at| {
        let mut run = normal_run(&acme, created_at);
        run.items_total = items_total;
        run
    };
    let first = create(store, &acme, run_at(1000, at(0))).await.id;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    finish(store, &acme, &first, succeeded(at(86_400)), at(100)).await;
    assert_eq!(
        store.profile_throughput(&acme, &daily).await.expect("throughput"),
        Some(10.0)
    );

    let second = create(store, &acme, run_at(1000, at(200))).await.id;
    claim(store, "worker-1", at(200), NO_LIMIT)
        .await
        .expect("a run to claim");
    finish(store, &acme, &second, succeeded(at(86_400)), at(225)).await;
    let failed = create(store, &acme, run_at(5000, at(300))).await.id;
    claim(store, "worker-1", at(300), NO_LIMIT)
        .await
        .expect("a run to claim");
    finish(store, &acme, &failed, RunOutcome::Failed(failure()), at(301)).await;
    create(store, &acme, run_at(5000, at(400))).await;
    claim(store, "worker-1", at(400), NO_LIMIT)
        .await
        .expect("a run to claim");

    // 2000 items in 125 seconds.
    assert_eq!(
        store.profile_throughput(&acme, &daily).await.expect("throughput"),
        Some(16.0)
    );
    assert_eq!(
        store
            .profile_throughput(&acme, &profile_id(&acme, "weekly"))
            .await
            .expect("throughput"),
        None
    );
}

pub async fn queue_depth_counts_queued_runs_of_every_tenant(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    assert_eq!(store.queue_depth().await.expect("queue depth"), 0);
    create(store, &acme, normal_run(&acme, at(0))).await;
    let second = create(store, &acme, normal_run(&acme, at(1))).await.id;
    create(store, &globex, normal_run(&globex, at(2))).await;
    assert_eq!(store.queue_depth().await.expect("queue depth"), 3);
    claim(store, "worker-1", at(3), NO_LIMIT)
        .await
        .expect("a run to claim");
    assert_eq!(store.queue_depth().await.expect("queue depth"), 2);
    store.request_cancel(&acme, &second, at(4)).await.expect("cancel");
    assert_eq!(store.queue_depth().await.expect("queue depth"), 1);
}

pub async fn succeeded_runs_past_retention_are_due_and_expire_keeping_their_records(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let mut finished = Vec::new();
    for (owner, expires) in [(&acme, 200), (&globex, 100), (&acme, 900)] {
        let run = create(store, owner, normal_run(owner, at(0))).await;
        claim(store, "worker-1", at(0), NO_LIMIT)
            .await
            .expect("a run to claim");
        let manifest = output("manifest", "manifest", "json", "manifest.json", "{}");
        store
            .add_output(owner, &run.id, &manifest)
            .await
            .expect("add output");
        finish(store, owner, &run.id, succeeded(at(expires)), at(50)).await;
        finished.push(run.id);
    }
    let failed = create(store, &acme, normal_run(&acme, at(0))).await;
    claim(store, "worker-1", at(0), NO_LIMIT)
        .await
        .expect("a run to claim");
    finish(store, &acme, &failed.id, RunOutcome::Failed(failure()), at(50)).await;

    assert!(store
        .runs_due_for_expiry(at(99), 10)
        .await
        .expect("due")
        .is_empty());
    let due = store.runs_due_for_expiry(at(500), 10).await.expect("due");
    assert_eq!(
        due,
        [finished[1].clone(), finished[0].clone()],
        "oldest expiry first, every tenant"
    );
    assert_eq!(store.runs_due_for_expiry(at(500), 1).await.expect("due").len(), 1);

    store
        .mark_expired(&acme, &finished[0], at(10_000))
        .await
        .expect("mark expired");
    let expired = get(store, &acme, &finished[0]).await;
    assert_eq!(expired.status, RunStatus::Expired);
    assert_eq!(expired.outputs.len(), 1, "the manifest digest is kept");
    assert_eq!(
        store.runs_due_for_expiry(at(500), 10).await.expect("due"),
        [finished[1].clone()]
    );
    // Another tenant cannot expire acme's run, and a failed run never expires.
    assert_not_found(
        store.mark_expired(&globex, &finished[2], at(10_000)).await,
        "another tenant's run",
    );
    store
        .mark_expired(&acme, &failed.id, at(10_000))
        .await
        .expect("no-op");
    assert_eq!(get(store, &acme, &failed.id).await.status, RunStatus::Failed);
}

pub async fn run_events_are_numbered_per_run_and_read_after_an_id(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let first = create(store, &acme, normal_run(&acme, at(0))).await;
    let second = create(store, &acme, normal_run(&acme, at(1))).await;
    for (idx, name) in ["started", "progress", "completed"].iter().enumerate() {
        let data = serde_json::json!({ "n": idx });
        let seq = store
            .append_event(&acme, &first.id, name, &data, at(idx as i64))
            .await
            .expect("append");
        assert_eq!(seq, idx as i64 + 1);
    }
    let other = store
        .append_event(&acme, &second.id, "started", &serde_json::json!({}), at(5))
        .await
        .expect("append");
    assert_eq!(other, 1, "each run counts its own events");

    let all = store
        .events_after(&acme, &first.id, 0, 100)
        .await
        .expect("events");
    let names: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["started", "progress", "completed"]);
    assert_eq!(all[1].data, serde_json::json!({ "n": 1 }));
    assert!(all[2].is_terminal() && !all[0].is_terminal());
    let after = store
        .events_after(&acme, &first.id, 1, 100)
        .await
        .expect("events");
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(
        store
            .events_after(&acme, &first.id, 1, 1)
            .await
            .expect("events")
            .len(),
        1
    );
    assert!(store
        .events_after(&acme, &first.id, 3, 100)
        .await
        .expect("events")
        .is_empty());
    // Another tenant reads nothing and appends nothing.
    let foreign = RunId::new(globex.clone(), first.id.date, first.id.seq);
    assert_not_found(
        store.events_after(&globex, &foreign, 0, 100).await,
        "another tenant's run",
    );
    assert_not_found(
        store
            .append_event(&globex, &foreign, "started", &serde_json::json!({}), at(9))
            .await,
        "another tenant's run",
    );
}

pub async fn queued_runs_know_their_place_in_the_tenants_queue(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let old = create(store, &acme, new_run(&acme, "daily", at(0), Priority::Normal)).await;
    let urgent = create(store, &acme, new_run(&acme, "daily", at(5), Priority::High)).await;
    let young = create(store, &acme, new_run(&acme, "daily", at(9), Priority::Normal)).await;
    create(store, &globex, new_run(&globex, "daily", at(1), Priority::High)).await;
    let position = |run: &Run| {
        let run_id = run.id.clone();
        let tenant = run.id.tenant.clone();
        async move {
            store
                .queue_position(&tenant, &run_id)
                .await
                .expect("queue position")
        }
    };
    assert_eq!(position(&urgent).await, Some(1), "higher priority first");
    assert_eq!(position(&old).await, Some(2), "then older");
    assert_eq!(
        position(&young).await,
        Some(3),
        "another tenant's runs do not count"
    );
    assert_eq!(
        claim_id(store, at(10), NO_LIMIT)
            .await
            .map(|id| id.tenant == acme || id.tenant == globex),
        Some(true)
    );
    store
        .request_cancel(&acme, &urgent.id, at(11))
        .await
        .expect("cancel");
    assert_eq!(position(&urgent).await, None, "only queued runs have a place");
    assert_eq!(position(&old).await, Some(1));
}

pub async fn event_watermark_moves_with_every_appended_event(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let watermark = || async { store.event_watermark().await.expect("event watermark") };
    let run = create(store, &acme, normal_run(&acme, at(0))).await;
    let other = create(store, &globex, normal_run(&globex, at(0))).await;
    let empty = watermark().await;
    assert_eq!(watermark().await, empty, "it stays put while nothing is appended");
    store
        .append_event(&acme, &run.id, "started", &serde_json::json!({}), at(1))
        .await
        .expect("append");
    let first = watermark().await;
    assert_ne!(first, empty, "an appended event moves it");
    store.set_progress(&acme, &run.id, 1, 2).await.expect("progress");
    assert_eq!(watermark().await, first, "other writes do not");
    store
        .append_event(&globex, &other.id, "started", &serde_json::json!({}), at(2))
        .await
        .expect("append");
    let second = watermark().await;
    assert!(
        second != first && second != empty,
        "an event of any tenant's run moves it"
    );
}

pub async fn get_run_reads_runs_with_and_without_outputs(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let bare = create(store, &acme, normal_run(&acme, at(0))).await;
    let with_outputs = create(store, &acme, normal_run(&acme, at(1))).await;
    let foreign = create(store, &globex, normal_run(&globex, at(1))).await;
    let data = |path: &str| output("advisory", "advisory:osv", "json", path, path);
    for path in ["b.json", "a.json", "c.json"] {
        store
            .add_output(&acme, &with_outputs.id, &data(path))
            .await
            .expect("add output");
    }
    store
        .add_output(&globex, &foreign.id, &data("z.json"))
        .await
        .expect("add output");
    assert_eq!(get(store, &acme, &bare.id).await, bare, "a run without outputs");
    let read = get(store, &acme, &with_outputs.id).await;
    let expected = Run {
        outputs: ["a.json", "b.json", "c.json"].map(data).to_vec(),
        ..with_outputs
    };
    assert_eq!(
        read, expected,
        "every output once, in order, and none of another run"
    );
}

pub async fn runs_with_events_after_names_each_run_that_moved_once(store: &dyn Store) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    let busy = create(store, &acme, normal_run(&acme, at(0))).await;
    let quiet = create(store, &acme, normal_run(&acme, at(1))).await;
    let other = create(store, &globex, normal_run(&globex, at(1))).await;
    let append = |tenant: &TenantId, run: &RunId, event: &'static str| {
        let (tenant, run) = (tenant.clone(), run.clone());
        async move {
            store
                .append_event(&tenant, &run, event, &serde_json::json!({}), at(2))
                .await
                .expect("append");
        }
    };
    append(&acme, &quiet.id, "started").await;
    let start = store.event_watermark().await.expect("event watermark");
    let nothing = store.runs_with_events_after(start, 100).await.expect("activity");
    assert_eq!(
        nothing,
        EventActivity {
            watermark: start,
            runs: vec![],
            more: false
        },
        "no append, no run"
    );

    append(&acme, &busy.id, "started").await;
    append(&globex, &other.id, "started").await;
    append(&acme, &busy.id, "progress").await;
    let moved = store.runs_with_events_after(start, 100).await.expect("activity");
    assert_eq!(
        moved.runs,
        [busy.id.clone(), other.id.clone()],
        "each run once, in the order of its first new event, of every tenant"
    );
    assert!(!moved.more);
    let after = store
        .runs_with_events_after(moved.watermark, 100)
        .await
        .expect("activity");
    assert!(after.runs.is_empty(), "the returned watermark covers them");
    assert_eq!(after.watermark, moved.watermark);

    let first = store.runs_with_events_after(start, 2).await.expect("activity");
    assert_eq!(first.runs, [busy.id.clone(), other.id.clone()]);
    assert!(first.more, "two events looked at, more may wait");
    let rest = store
        .runs_with_events_after(first.watermark, 2)
        .await
        .expect("activity");
    assert_eq!(rest.runs, [busy.id], "the backlog's next page");
    assert_eq!(rest.watermark, moved.watermark);
}

// --- DPoP proofs ----------------------------------------------------------------------

pub async fn proof_ids_are_accepted_once_until_their_record_expires(store: &dyn Store) {
    let (first, second) = ([1u8; 32], [2u8; 32]);
    let record = |jti, until, now| async move {
        store
            .record_proof(jti, at(until), at(now))
            .await
            .expect("record proof")
    };
    assert!(record(&first, 60, 0).await, "a new proof id");
    assert!(!record(&first, 70, 10).await, "seen, and its record holds");
    assert!(record(&second, 60, 10).await, "another proof id");
    assert!(
        !record(&first, 120, 59).await,
        "still held just before it expires"
    );
    assert!(
        record(&first, 120, 60).await,
        "its record expired: it may be accepted again"
    );
    assert!(!record(&first, 130, 61).await, "and is held again, until 120");

    assert_eq!(
        store.prune_proofs(at(60)).await.expect("prune"),
        1,
        "the second's record expired"
    );
    assert!(
        !record(&first, 130, 62).await,
        "pruning keeps the records that still hold"
    );
    assert_eq!(store.prune_proofs(at(120)).await.expect("prune"), 1);
    assert!(record(&first, 200, 121).await);
}

// --- profiles of the API -----------------------------------------------------------------

fn profile_definition(max_days: u32) -> export_core::ProfileDefinition {
    serde_json::from_value(serde_json::json!({
        "targets": ["advisory"],
        "retention": { "default_days": 1, "max_days": max_days },
    }))
    .expect("valid profile definition")
}

fn profile_name(name: &str) -> ProfileName {
    ProfileName::parse(name).expect("valid profile name")
}

#[doc(hidden)]
pub async fn a_created_profile_is_version_one_of_its_definition(store: &dyn Store) {
    let acme = tenant("acme");
    let name = profile_name("nightly");
    let created = store
        .create_profile(&acme, &name, &profile_definition(30), "alice", at(0))
        .await
        .expect("create");
    let expected = Profile::new(profile_id(&acme, "nightly"), profile_definition(30));
    assert_eq!(created.profile, expected);
    assert_eq!(created.version, 1);
    assert_eq!(
        (created.created_at, created.updated_at, created.archived_at),
        (at(0), at(0), None)
    );
    assert_eq!(
        store.get_profile(&acme, &name).await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(store.list_profiles(&acme).await.expect("list"), [created]);
    let revisions = store.profile_revisions(&acme, &name).await.expect("revisions");
    assert_eq!(revisions.len(), 1);
    assert_eq!(
        (
            revisions[0].version,
            &revisions[0].revision,
            &revisions[0].definition
        ),
        (1, &expected.revision, &expected.definition)
    );
    assert_eq!(
        (revisions[0].created_at, revisions[0].created_by.as_str()),
        (at(0), "alice")
    );
    assert_eq!(
        store
            .get_profile(&acme, &profile_name("other"))
            .await
            .expect("get"),
        None
    );
}

#[doc(hidden)]
pub async fn a_profile_name_is_taken_once_even_when_archived(store: &dyn Store) {
    let acme = tenant("acme");
    let name = profile_name("nightly");
    store
        .create_profile(&acme, &name, &profile_definition(30), "alice", at(0))
        .await
        .expect("create");
    let again = store
        .create_profile(&acme, &name, &profile_definition(60), "bob", at(1))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict { .. })), "{again:?}");
    store.archive_profile(&acme, &name, at(2)).await.expect("archive");
    let after_archive = store
        .create_profile(&acme, &name, &profile_definition(60), "bob", at(3))
        .await;
    assert!(
        matches!(after_archive, Err(StoreError::Conflict { .. })),
        "{after_archive:?}"
    );
    let revisions = store.profile_revisions(&acme, &name).await.expect("revisions");
    assert_eq!(revisions.len(), 1, "the refused creations wrote no revision");
    assert_eq!(revisions[0].definition, profile_definition(30));
}

#[doc(hidden)]
pub async fn each_changed_definition_is_a_new_immutable_revision(store: &dyn Store) {
    let acme = tenant("acme");
    let name = profile_name("nightly");
    let first = store
        .create_profile(&acme, &name, &profile_definition(30), "alice", at(0))
        .await
        .expect("create");
    let second = store
        .update_profile(&acme, &name, &profile_definition(60), "bob", at(10))
        .await
        .expect("update");
    assert_eq!(second.version, 2);
    assert_ne!(second.profile.revision, first.profile.revision);
    assert_eq!(second.profile.definition, profile_definition(60));
    assert_eq!((second.created_at, second.updated_at), (at(0), at(10)));
    // The same definition again is no new revision.
    let unchanged = store
        .update_profile(&acme, &name, &profile_definition(60), "carol", at(20))
        .await
        .expect("same definition");
    assert_eq!(unchanged, second);
    // Back to the first definition: a third revision with the first one's digest.
    let third = store
        .update_profile(&acme, &name, &profile_definition(30), "carol", at(30))
        .await
        .expect("update");
    assert_eq!(
        (third.version, &third.profile.revision),
        (3, &first.profile.revision)
    );
    let revisions = store.profile_revisions(&acme, &name).await.expect("revisions");
    let summary: Vec<_> = revisions
        .iter()
        .map(|r| (r.version, r.revision.clone(), r.created_by.clone(), r.created_at))
        .collect();
    assert_eq!(
        summary,
        [
            (1, first.profile.revision.clone(), "alice".to_owned(), at(0)),
            (2, second.profile.revision.clone(), "bob".to_owned(), at(10)),
            (3, first.profile.revision.clone(), "carol".to_owned(), at(30)),
        ]
    );
}

#[doc(hidden)]
pub async fn an_archived_profile_takes_no_new_revision_and_stays_readable(store: &dyn Store) {
    let acme = tenant("acme");
    let name = profile_name("nightly");
    store
        .create_profile(&acme, &name, &profile_definition(30), "alice", at(0))
        .await
        .expect("create");
    let archived = store.archive_profile(&acme, &name, at(5)).await.expect("archive");
    assert_eq!(archived.archived_at, Some(at(5)));
    let again = store
        .archive_profile(&acme, &name, at(9))
        .await
        .expect("archive again");
    assert_eq!(
        again.archived_at,
        Some(at(5)),
        "archiving twice keeps the first time"
    );
    let update = store
        .update_profile(&acme, &name, &profile_definition(60), "bob", at(10))
        .await;
    assert!(matches!(update, Err(StoreError::Conflict { .. })), "{update:?}");
    assert_eq!(
        store.get_profile(&acme, &name).await.expect("get"),
        Some(archived.clone())
    );
    assert_eq!(store.list_profiles(&acme).await.expect("list"), [archived]);
    assert_eq!(
        store
            .profile_revisions(&acme, &name)
            .await
            .expect("revisions")
            .len(),
        1
    );
    assert_eq!(store.active_profiles().await.expect("active"), []);
}

#[doc(hidden)]
pub async fn updating_or_archiving_an_unknown_profile_is_not_found(store: &dyn Store) {
    let acme = tenant("acme");
    let name = profile_name("nightly");
    let update = store
        .update_profile(&acme, &name, &profile_definition(30), "alice", at(0))
        .await;
    assert!(
        matches!(update, Err(StoreError::NotFound { kind: "profile", .. })),
        "{update:?}"
    );
    let archive = store.archive_profile(&acme, &name, at(0)).await;
    assert!(
        matches!(archive, Err(StoreError::NotFound { kind: "profile", .. })),
        "{archive:?}"
    );
    assert_eq!(
        store.profile_revisions(&acme, &name).await.expect("revisions"),
        []
    );
    assert_eq!(store.list_profiles(&acme).await.expect("list"), []);
}

#[doc(hidden)]
pub async fn profiles_are_per_tenant_and_active_profiles_span_tenants(store: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let name = profile_name("nightly");
    let ours = store
        .create_profile(&acme, &name, &profile_definition(30), "alice", at(0))
        .await
        .expect("acme's");
    let theirs = store
        .create_profile(&globex, &name, &profile_definition(60), "gina", at(1))
        .await
        .expect("globex's profile of the same name");
    let archived = store
        .create_profile(
            &globex,
            &profile_name("old"),
            &profile_definition(60),
            "gina",
            at(1),
        )
        .await
        .expect("globex's old");
    store
        .archive_profile(&globex, &archived.profile.id.name, at(2))
        .await
        .expect("archive");
    store
        .update_profile(&acme, &name, &profile_definition(90), "alice", at(3))
        .await
        .expect("acme's update");
    assert_eq!(
        store.get_profile(&globex, &name).await.expect("get"),
        Some(theirs.clone()),
        "acme's update left globex's profile as it was"
    );
    assert_eq!(
        store
            .profile_revisions(&globex, &name)
            .await
            .expect("revisions")
            .len(),
        1
    );
    assert_eq!(store.list_profiles(&acme).await.expect("list").len(), 1);
    assert_eq!(store.list_profiles(&globex).await.expect("list").len(), 2);
    let active: Vec<_> = store
        .active_profiles()
        .await
        .expect("active")
        .into_iter()
        .map(|stored| (stored.profile.id.to_string(), stored.version))
        .collect();
    assert_eq!(
        active,
        [
            (ours.profile.id.to_string(), 2),
            (theirs.profile.id.to_string(), 1)
        ]
    );
}

#[doc(hidden)]
pub async fn concurrent_updates_of_a_profile_number_every_revision_once(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let name = profile_name("nightly");
    store
        .create_profile(&acme, &name, &profile_definition(1), "alice", at(0))
        .await
        .expect("create");
    let updates = (2..=9).map(|max_days| {
        let (store, acme, name) = (store.clone(), acme.clone(), name.clone());
        tokio::spawn(async move {
            store
                .update_profile(&acme, &name, &profile_definition(max_days), "bob", at(1))
                .await
                .expect("update")
        })
    });
    for update in futures::future::join_all(updates).await {
        update.expect("update task");
    }
    let revisions = store.profile_revisions(&acme, &name).await.expect("revisions");
    let versions: Vec<u32> = revisions.iter().map(|r| r.version).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>());
    let mut days: Vec<u32> = revisions
        .iter()
        .map(|r| r.definition.retention.max_days)
        .collect();
    days.sort_unstable();
    assert_eq!(days, (1..=9).collect::<Vec<_>>(), "every definition once");
    let current = store
        .get_profile(&acme, &name)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(current.version, 9);
    assert_eq!(current.profile.definition, revisions[8].definition);
}
