//! The conformance tests of webhooks and the notification outbox (SPEC §16).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use export_core::{NotificationEvent, RetryPolicy, RunId, RunStatus, Secret, TenantId, WebhookId};

use super::{at, claim, create, failure, finish, get, normal_run, succeeded, tenant};
use crate::{
    AttemptResult, CancelOutcome, ClaimedDelivery, DeliveryState, DeliveryTarget, NewWebhook, Notification,
    RunOutcome, Store, StoreError,
};

/// The lease deliveries are claimed for.
const DELIVERY_LEASE: Duration = Duration::from_secs(60);

const RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(10),
    max: Duration::from_secs(3600),
    window: Duration::from_secs(24 * 3600),
};

fn new_webhook(tenant: &TenantId, byte: u8, events: &[NotificationEvent]) -> NewWebhook {
    NewWebhook {
        id: WebhookId::new(tenant.clone(), [byte; 8]),
        url: format!("https://hooks.example.com/{byte}"),
        events: events.to_vec(),
        secret: Secret::new(format!("secret-{byte}")),
        created_at: at(i64::from(byte)),
    }
}

async fn webhook(store: &dyn Store, tenant: &TenantId, byte: u8, events: &[NotificationEvent]) -> WebhookId {
    let created = store
        .create_webhook(tenant, &new_webhook(tenant, byte, events))
        .await
        .expect("create webhook");
    created.id
}

/// A run of `tenant` that ended with `outcome` at `ended`.
async fn ended_run(store: &dyn Store, tenant: &TenantId, outcome: RunOutcome, ended: DateTime<Utc>) -> RunId {
    let run = create(store, tenant, normal_run(tenant, ended - TimeDelta::seconds(10))).await;
    let claimed = claim(store, "worker-1", ended - TimeDelta::seconds(5), 100)
        .await
        .expect("a queued run");
    assert_eq!(claimed.id, run.id);
    finish(store, tenant, &run.id, outcome, ended).await;
    run.id
}

async fn unprepared(store: &dyn Store) -> Vec<Notification> {
    store
        .unprepared_notifications(100)
        .await
        .expect("unprepared notifications")
}

/// Prepares every waiting notification with a body naming it.
async fn prepare_all(store: &dyn Store, nats: bool, now: DateTime<Utc>) -> usize {
    let waiting = unprepared(store).await;
    for notification in &waiting {
        let body = format!("{{\"id\":\"{}\"}}", notification.id);
        let prepared = store
            .prepare_notification(
                notification.tenant(),
                &notification.id,
                body.as_bytes(),
                nats,
                now,
            )
            .await
            .expect("prepare notification");
        assert!(prepared, "{} was waiting", notification.id);
    }
    waiting.len()
}

async fn claim_deliveries(store: &dyn Store, owner: &str, now: DateTime<Utc>) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(owner, now, DELIVERY_LEASE, 100)
        .await
        .expect("claim deliveries")
}

fn attempt(at: DateTime<Utc>, status: u16) -> AttemptResult {
    AttemptResult {
        at,
        duration: Duration::from_millis(12),
        http_status: Some(status),
        error: (status >= 300).then(|| format!("http_status: {status}")),
        delivered: status < 300,
    }
}

async fn record(
    store: &dyn Store,
    delivery: &ClaimedDelivery,
    result: &AttemptResult,
) -> Option<DeliveryState> {
    store
        .record_delivery_attempt(&delivery.tenant, delivery, result, &RETRY)
        .await
        .expect("record attempt")
}

/// Every way a run ends writes one notification in the transaction that ends it, and
/// nothing else does: not a run that is still queued or running, not a cancel request
/// to a running run, not a second end.
pub async fn a_runs_end_writes_one_notification_with_its_terminal_event(store: &dyn Store) {
    let acme = tenant("acme");
    let succeeded_run = ended_run(store, &acme, succeeded(at(9_000)), at(100)).await;
    let failed_run = ended_run(store, &acme, RunOutcome::Failed(failure()), at(200)).await;
    let running = create(store, &acme, normal_run(&acme, at(250))).await;
    claim(store, "worker-1", at(260), 100).await.expect("claimed");
    let queued = create(store, &acme, normal_run(&acme, at(265))).await;
    assert_eq!(
        unprepared(store).await.len(),
        2,
        "queued and running runs tell nothing"
    );
    assert_eq!(
        store
            .request_cancel(&acme, &running.id, at(270))
            .await
            .expect("cancel"),
        CancelOutcome::Requested
    );
    assert_eq!(
        store
            .request_cancel(&acme, &queued.id, at(300))
            .await
            .expect("cancel"),
        CancelOutcome::Cancelled
    );
    // A second end of the same run is no end, and tells nothing.
    finish(store, &acme, &failed_run, RunOutcome::Cancelled, at(400)).await;
    store
        .mark_expired(&acme, &succeeded_run, at(500))
        .await
        .expect("expire");
    store
        .mark_expired(&acme, &failed_run, at(500))
        .await
        .expect("a failed run does not expire");

    let found: Vec<(String, RunId, NotificationEvent, DateTime<Utc>)> = unprepared(store)
        .await
        .into_iter()
        .map(|n| (n.id, n.run_id, n.event, n.created_at))
        .collect();
    let expected = [
        (succeeded_run.clone(), NotificationEvent::Succeeded, at(100)),
        (failed_run.clone(), NotificationEvent::Failed, at(200)),
        (queued.id.clone(), NotificationEvent::Cancelled, at(300)),
        (succeeded_run.clone(), NotificationEvent::Expired, at(500)),
    ]
    .map(|(run_id, event, when)| (Notification::id_of(&run_id, event), run_id, event, when));
    assert_eq!(found, expected);
    assert_eq!(get(store, &acme, &running.id).await.status, RunStatus::Running);
}

/// Preparing stores the body once and makes one delivery per subscribed webhook, plus
/// one to NATS when asked; a second preparation (another replica) changes nothing.
pub async fn preparing_a_notification_makes_a_delivery_per_subscriber(store: &dyn Store) {
    let acme = tenant("acme");
    let on_success = webhook(store, &acme, 1, &[NotificationEvent::Succeeded]).await;
    webhook(
        store,
        &acme,
        2,
        &[NotificationEvent::Failed, NotificationEvent::Expired],
    )
    .await;
    let run_id = ended_run(store, &acme, succeeded(at(9_000)), at(100)).await;
    let waiting = unprepared(store).await;
    assert_eq!(waiting.len(), 1);
    let id = &waiting[0].id;
    assert!(store
        .prepare_notification(&acme, id, b"{\"first\":1}", true, at(101))
        .await
        .expect("prepare"));
    assert!(!store
        .prepare_notification(&acme, id, b"{\"second\":2}", true, at(102))
        .await
        .expect("prepare again"));
    assert!(unprepared(store).await.is_empty());

    let mut claimed = claim_deliveries(store, "replica-1", at(103)).await;
    claimed.sort_by_key(|delivery| matches!(delivery.target, DeliveryTarget::Nats));
    assert_eq!(claimed.len(), 2, "one webhook and NATS: {claimed:?}");
    for delivery in &claimed {
        assert_eq!(delivery.body, b"{\"first\":1}", "the first rendering is kept");
        assert_eq!(
            delivery.notification_id,
            Notification::id_of(&run_id, NotificationEvent::Succeeded)
        );
        assert_eq!(
            (delivery.event, delivery.event_at, delivery.failures),
            (NotificationEvent::Succeeded, at(100), 0)
        );
    }
    assert_eq!(
        claimed[0].target,
        DeliveryTarget::Webhook {
            id: on_success,
            url: "https://hooks.example.com/1".to_owned(),
            secret: Secret::new("secret-1"),
        }
    );
    assert_eq!(claimed[1].target, DeliveryTarget::Nats);
}

/// A claimed delivery is nobody else's while its lease holds; once it lapses (the
/// claimant died) another claimant takes it, and the first one can no longer record.
pub async fn a_claimed_delivery_is_taken_over_only_after_its_lease(store: &dyn Store) {
    let acme = tenant("acme");
    webhook(store, &acme, 1, &NotificationEvent::ALL).await;
    ended_run(store, &acme, RunOutcome::Cancelled, at(100)).await;
    prepare_all(store, false, at(100)).await;

    let first = claim_deliveries(store, "replica-1", at(110)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].lease_until, at(170));
    assert!(
        claim_deliveries(store, "replica-2", at(169)).await.is_empty(),
        "the lease holds"
    );
    let second = claim_deliveries(store, "replica-2", at(170)).await;
    assert_eq!(second.len(), 1, "taken over when the lease lapsed");
    assert_eq!(second[0].key, first[0].key);

    assert_eq!(
        record(store, &first[0], &attempt(at(171), 204)).await,
        None,
        "the first claim is gone"
    );
    assert_eq!(
        record(store, &second[0], &attempt(at(172), 204)).await,
        Some(DeliveryState::Delivered { at: at(172) })
    );
    assert!(
        claim_deliveries(store, "replica-1", at(10_000)).await.is_empty(),
        "delivered once"
    );
    let webhook_id = WebhookId::new(acme.clone(), [1; 8]);
    let records = store
        .webhook_deliveries(&acme, &webhook_id, 10)
        .await
        .expect("deliveries");
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].attempts.len(),
        1,
        "only the live claim's attempt is recorded"
    );
    assert_eq!(records[0].attempts[0].http_status, Some(204));
}

/// A failed attempt makes the delivery due again after 10 s, 20 s, 40 s …; once the
/// next try would fall more than 24 h after the event it is dead-lettered, and listed
/// so with every attempt.
pub async fn failed_deliveries_back_off_then_are_dead_lettered_after_a_day(store: &dyn Store) {
    let acme = tenant("acme");
    let webhook_id = webhook(store, &acme, 1, &[NotificationEvent::Failed]).await;
    let run_id = ended_run(store, &acme, RunOutcome::Failed(failure()), at(1_000)).await;
    prepare_all(store, false, at(1_000)).await;

    let mut now = at(1_000);
    for (failures, wait) in [(1, 10), (2, 20), (3, 40)] {
        let claimed = claim_deliveries(store, "replica-1", now).await;
        assert_eq!(claimed.len(), 1, "due at {now}");
        assert_eq!(claimed[0].failures, failures - 1);
        let state = record(store, &claimed[0], &attempt(now, 500)).await;
        let next = now + TimeDelta::seconds(wait);
        assert_eq!(
            state,
            Some(DeliveryState::Pending {
                next_attempt_at: next
            })
        );
        assert!(
            claim_deliveries(store, "replica-1", next - TimeDelta::seconds(1))
                .await
                .is_empty(),
            "not due before its backoff"
        );
        now = next;
    }
    // Near the end of the window, the next try would be too late.
    let late = at(1_000) + TimeDelta::hours(24) - TimeDelta::seconds(30);
    let claimed = claim_deliveries(store, "replica-1", late).await;
    assert_eq!(claimed.len(), 1);
    let state = record(store, &claimed[0], &attempt(late, 503)).await;
    assert_eq!(state, Some(DeliveryState::DeadLettered { at: late }));
    assert!(claim_deliveries(store, "replica-1", late + TimeDelta::days(2))
        .await
        .is_empty());

    let records = store
        .webhook_deliveries(&acme, &webhook_id, 10)
        .await
        .expect("deliveries");
    assert_eq!(records.len(), 1);
    let delivery = &records[0];
    assert_eq!(
        (&delivery.run_id, delivery.event),
        (&run_id, NotificationEvent::Failed)
    );
    assert_eq!(delivery.state, DeliveryState::DeadLettered { at: late });
    let statuses: Vec<(u32, Option<u16>)> = delivery
        .attempts
        .iter()
        .map(|attempt| (attempt.attempt, attempt.http_status))
        .collect();
    assert_eq!(
        statuses,
        [(1, Some(500)), (2, Some(500)), (3, Some(500)), (4, Some(503))]
    );
    assert_eq!(delivery.attempts[0].duration_ms, 12);
    assert_eq!(delivery.attempts[3].error.as_deref(), Some("http_status: 503"));
}

/// A tenant's webhooks and their deliveries are its own: another tenant reads, rotates
/// and deletes none of them, and its runs make no deliveries to them.
pub async fn webhooks_and_deliveries_are_per_tenant(store: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let acme_hook = webhook(store, &acme, 1, &NotificationEvent::ALL).await;
    let globex_hook = webhook(store, &globex, 2, &[NotificationEvent::Succeeded]).await;
    assert_eq!(
        store
            .webhooks(&acme)
            .await
            .expect("list")
            .iter()
            .map(|w| &w.id)
            .collect::<Vec<_>>(),
        [&acme_hook]
    );
    let shown = store
        .get_webhook(&acme, &acme_hook)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (shown.url.as_str(), shown.events.as_slice(), shown.created_at),
        (
            "https://hooks.example.com/1",
            NotificationEvent::ALL.as_slice(),
            at(1)
        )
    );
    assert_eq!(store.get_webhook(&globex, &acme_hook).await.expect("get"), None);
    assert!(!store.delete_webhook(&globex, &acme_hook).await.expect("delete"));
    assert!(!store
        .rotate_webhook_secret(&globex, &acme_hook, &Secret::new("stolen"))
        .await
        .expect("rotate"));
    assert!(matches!(
        store.webhook_deliveries(&globex, &acme_hook, 10).await,
        Err(StoreError::NotFound { .. })
    ));

    ended_run(store, &globex, succeeded(at(9_000)), at(100)).await;
    prepare_all(store, false, at(100)).await;
    let claimed = claim_deliveries(store, "replica-1", at(101)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].tenant, globex);
    assert!(matches!(&claimed[0].target, DeliveryTarget::Webhook { id, .. } if *id == globex_hook));
    assert!(store
        .webhook_deliveries(&acme, &acme_hook, 10)
        .await
        .expect("deliveries")
        .is_empty());

    // Rotation changes what the next claim signs with.
    assert!(store
        .rotate_webhook_secret(&globex, &globex_hook, &Secret::new("rotated"))
        .await
        .expect("rotate"));
    let retried = claim_deliveries(store, "replica-2", at(1_000)).await;
    assert!(
        matches!(&retried[0].target, DeliveryTarget::Webhook { secret, .. } if secret.expose() == "rotated")
    );
}

/// A deleted webhook gets nothing more: its pending deliveries and its history go with it.
pub async fn a_deleted_webhook_gets_no_more_deliveries(store: &dyn Store) {
    let acme = tenant("acme");
    let hook = webhook(store, &acme, 1, &NotificationEvent::ALL).await;
    ended_run(store, &acme, RunOutcome::Cancelled, at(100)).await;
    prepare_all(store, false, at(100)).await;
    let claimed = claim_deliveries(store, "replica-1", at(101)).await;
    assert_eq!(claimed.len(), 1);

    assert!(store.delete_webhook(&acme, &hook).await.expect("delete"));
    assert!(!store.delete_webhook(&acme, &hook).await.expect("delete again"));
    assert_eq!(record(store, &claimed[0], &attempt(at(102), 200)).await, None);
    assert!(claim_deliveries(store, "replica-1", at(10_000)).await.is_empty());
    assert_eq!(store.get_webhook(&acme, &hook).await.expect("get"), None);
    ended_run(store, &acme, succeeded(at(9_000)), at(200)).await;
    prepare_all(store, false, at(200)).await;
    assert!(claim_deliveries(store, "replica-1", at(10_000)).await.is_empty());
}

/// Replicas claiming at once never hold one delivery together: every delivery is
/// claimed exactly once while the leases hold.
pub async fn concurrent_claimers_claim_each_delivery_once(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    webhook(&*store, &acme, 1, &NotificationEvent::ALL).await;
    const RUNS: usize = 30;
    for idx in 0..RUNS {
        ended_run(&*store, &acme, RunOutcome::Cancelled, at(100 + idx as i64)).await;
    }
    assert_eq!(prepare_all(&*store, false, at(200)).await, RUNS);

    let total = Arc::new(AtomicUsize::new(0));
    let claimers: Vec<_> = (0..8)
        .map(|idx| {
            let store = Arc::clone(&store);
            let total = Arc::clone(&total);
            tokio::spawn(async move {
                let owner = format!("replica-{idx}");
                let mut keys = Vec::new();
                // Bounded: a claim that lost every row to another claimant is empty
                // while deliveries are left, so the tasks stop when all are counted.
                for _ in 0..500 {
                    if total.load(Ordering::SeqCst) >= RUNS {
                        break;
                    }
                    let claimed = store
                        .claim_deliveries(&owner, at(300), DELIVERY_LEASE, 3)
                        .await
                        .expect("claim deliveries");
                    total.fetch_add(claimed.len(), Ordering::SeqCst);
                    keys.extend(claimed.into_iter().map(|delivery| delivery.key));
                }
                keys
            })
        })
        .collect();
    let mut keys = Vec::new();
    for claimer in claimers {
        keys.extend(claimer.await.expect("claiming task"));
    }
    let unique: BTreeSet<i64> = keys.iter().copied().collect();
    assert_eq!(keys.len(), RUNS, "every delivery claimed once: {keys:?}");
    assert_eq!(unique.len(), RUNS);
}
