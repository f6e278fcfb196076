//! Conformance tests of schedules: one run per fire, whichever process asks and however
//! many ask at once, and the state the scheduler's catch-up rule reads.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use export_core::{Priority, TenantId, Trigger, TriggerKind};

use super::{at, get, new_run, tenant};
use crate::{FireCreation, NewRun, RunQuery, Store, StoreError};

/// A run of `profile` made for the fire at `fire`.
fn fired(tenant: &TenantId, profile: &str, fire: DateTime<Utc>) -> NewRun {
    NewRun {
        trigger: Trigger::Schedule { at: fire },
        ..new_run(tenant, profile, fire, Priority::Normal)
    }
}

async fn fire(store: &dyn Store, tenant: &TenantId, run: NewRun) -> FireCreation {
    store
        .create_scheduled_run(tenant, run)
        .await
        .expect("create scheduled run")
}

/// The first run of a fire is created with its trigger; a second attempt for the same
/// fire writes nothing and names the first run, while other fires, profiles and tenants
/// are runs of their own, and API runs are never deduplicated.
pub async fn a_schedule_fire_makes_one_run_and_a_second_attempt_nothing(store: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let FireCreation::Created(first) = fire(store, &acme, fired(&acme, "daily", at(0))).await else {
        panic!("the first attempt creates the run");
    };
    assert_eq!(first.trigger, Trigger::Schedule { at: at(0) });
    assert_eq!(get(store, &acme, &first.id).await.trigger, first.trigger);
    assert_eq!(
        fire(store, &acme, fired(&acme, "daily", at(0))).await,
        FireCreation::AlreadyFired(first.id.clone())
    );
    // Through `create_run` the same fire is a conflict, and nothing is written.
    let again = store.create_run(&acme, fired(&acme, "daily", at(0)), None).await;
    assert!(matches!(again, Err(StoreError::Conflict { .. })), "{again:?}");

    for (tenant, profile, time) in [
        (&acme, "daily", at(60)),
        (&acme, "weekly", at(0)),
        (&globex, "daily", at(0)),
    ] {
        let created = fire(store, tenant, fired(tenant, profile, time)).await;
        assert!(
            matches!(created, FireCreation::Created(_)),
            "{tenant} {profile} {time}"
        );
    }
    for _ in 0..2 {
        let api = store
            .create_run(&acme, new_run(&acme, "daily", at(0), Priority::Normal), None)
            .await
            .expect("API runs are never deduplicated");
        assert_eq!(api.trigger, Trigger::Api);
    }
    // The refused attempts took no sequence number: acme's runs are 1 … 5.
    let page = store
        .list_runs(
            &acme,
            &RunQuery {
                limit: 50,
                ..RunQuery::default()
            },
        )
        .await
        .expect("list runs");
    let seqs: Vec<u32> = page.runs.iter().map(|run| run.id.seq).collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1]);
}

/// `?trigger=` lists the runs made one way only.
pub async fn list_runs_filters_by_trigger(store: &dyn Store) {
    let acme = tenant("acme");
    fire(store, &acme, fired(&acme, "daily", at(0))).await;
    let api = store
        .create_run(&acme, new_run(&acme, "daily", at(1), Priority::Normal), None)
        .await
        .expect("create run");
    fire(store, &acme, fired(&acme, "daily", at(60))).await;
    let listed = |trigger| {
        let acme = acme.clone();
        async move {
            let query = RunQuery {
                trigger,
                limit: 50,
                ..RunQuery::default()
            };
            let page = store.list_runs(&acme, &query).await.expect("list runs");
            page.runs.into_iter().map(|run| run.trigger).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(Some(TriggerKind::Schedule)).await,
        [Trigger::Schedule { at: at(60) }, Trigger::Schedule { at: at(0) }]
    );
    assert_eq!(listed(Some(TriggerKind::Api)).await, [api.trigger]);
    assert_eq!(listed(None).await.len(), 3);
}

/// The first sighting of a schedule is kept whoever looks later; another cron or time
/// zone is another schedule with a sighting of its own; the latest fire is the newest
/// fire time of the profile's runs, of this tenant only.
pub async fn a_schedule_keeps_its_first_sighting_and_reads_its_latest_fire(store: &dyn Store) {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let daily = super::profile_id(&acme, "daily");
    let observe = |cron: &'static str, now| {
        let daily = daily.clone();
        let acme = acme.clone();
        async move {
            store
                .observe_schedule(&acme, &daily, cron, "Europe/Berlin", now)
                .await
                .expect("observe schedule")
        }
    };
    let first = observe("0 2 * * *", at(0)).await;
    assert_eq!((first.since, first.last_fire), (at(0), None));
    assert_eq!(observe("0 2 * * *", at(500)).await.since, at(0));
    assert_eq!(observe("0 3 * * *", at(500)).await.since, at(500));

    fire(store, &acme, fired(&acme, "daily", at(120))).await;
    fire(store, &acme, fired(&acme, "daily", at(60))).await;
    fire(store, &acme, fired(&acme, "weekly", at(900))).await;
    fire(store, &globex, fired(&globex, "daily", at(900))).await;
    store
        .create_run(&acme, new_run(&acme, "daily", at(950), Priority::Normal), None)
        .await
        .expect("create run");
    assert_eq!(observe("0 2 * * *", at(1000)).await.last_fire, Some(at(120)));
}

/// Creators of one fire at once, from many connections (replicas): exactly one run is
/// made, and every other attempt names it.
pub async fn concurrent_creators_of_one_fire_make_one_run(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    for round in 0..3 {
        let time = at(round * 60);
        let creators: Vec<_> = (0..8)
            .map(|_| {
                let (store, acme) = (Arc::clone(&store), acme.clone());
                tokio::spawn(async move { fire(&*store, &acme, fired(&acme, "daily", time)).await })
            })
            .collect();
        let mut created = Vec::new();
        let mut named = Vec::new();
        for creator in creators {
            match creator.await.expect("creating task") {
                FireCreation::Created(run) => created.push(run.id),
                FireCreation::AlreadyFired(run_id) => named.push(run_id),
            }
        }
        assert_eq!(created.len(), 1, "one run for the fire at {time}");
        assert!(named.iter().all(|run_id| *run_id == created[0]));
    }
    let page = store
        .list_runs(
            &acme,
            &RunQuery {
                limit: 50,
                ..RunQuery::default()
            },
        )
        .await
        .expect("list runs");
    assert_eq!(page.runs.len(), 3);
}
