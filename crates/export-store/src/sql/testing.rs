//! Tests of the SQL store that need its database (features `sql` and `testing`): plain
//! async functions over a `Dialect`, called by each backend's tests, as the conformance
//! suite is over a `Store`.

use std::collections::BTreeSet;

use export_core::{Kind, Priority, Target};
use futures::TryStreamExt;

use crate::sql::database::{query, SqlDatabase};
use crate::sql::dialect::Dialect;
use crate::sql::Columns;
use crate::testing::{at, document, new_run, tenant};
use crate::{Store, StoreError};

/// A row edited by hand into something the model cannot hold is reported, not guessed.
pub async fn a_row_that_does_not_parse_is_corrupt<D: Dialect>(store: &D) {
    let acme = tenant("acme");
    let run = store
        .create_run(&acme, new_run(&acme, "daily", at(0), Priority::Normal), None)
        .await
        .expect("create run");
    store
        .ingest(&acme, &[document("osv-go", Kind::Advisory, "GO-1", 1)])
        .await
        .expect("ingest");

    query("UPDATE runs SET plan = '{\"targets\": 42}'")
        .execute(store.pool())
        .await
        .expect("editing the run");
    query("UPDATE evidence SET digest = 'md5:abc'")
        .execute(store.pool())
        .await
        .expect("editing the evidence");

    match store.get_run(&acme, &run.id).await {
        Err(StoreError::Corrupt { what: "plan", .. }) => {}
        other => panic!("expected a corrupt plan, got {other:?}"),
    }
    let target = Target::parse("advisory").expect("valid target");
    match store
        .stream_items(&acme, 1, &target)
        .try_collect::<Vec<_>>()
        .await
    {
        Err(StoreError::Corrupt { what: "digest", .. }) => {}
        other => panic!("expected a corrupt digest, got {other:?}"),
    }
}

/// Every migration of the store's schema is recorded as applied, each once, however
/// many stores opened the database, and at once.
pub async fn each_migration_is_applied_once<D: Dialect>(store: &D) {
    let rows = query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .expect("reading the migrations table");
    let applied = rows
        .iter()
        .map(|row| D::Db::columns(row).integer("version"))
        .collect::<Result<Vec<i64>, _>>()
        .expect("reading a version");
    let distinct: BTreeSet<i64> = applied.iter().copied().collect();
    assert_eq!(applied.len(), distinct.len(), "each migration applied once");
    assert!(!applied.is_empty());
}
