//! What only the SQLite store has: a database file, embedded migrations, and several
//! processes sharing one file.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use export_core::{Kind, Priority, RunId, RunStatus, Target};
use export_store::testing::{at, document, new_run, tenant, LEASE};
use export_store::{IngestOutcome, Store};
use export_store_sqlite::SqliteStore;
use futures::TryStreamExt;
use sqlx::{Connection, SqliteConnection};

use crate::fresh_path;

async fn raw_connection(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("opening a raw connection")
}

#[tokio::test]
async fn opening_an_existing_file_keeps_its_data_and_migrates_once() {
    let path = fresh_path();
    let acme = tenant("acme");
    let first = SqliteStore::open(&path).await.expect("first open");
    first
        .ingest(&acme, &[document("osv-go", Kind::Advisory, "GO-1", 1)])
        .await
        .expect("ingest");
    first.close().await;

    let second = SqliteStore::open(&path).await.expect("second open");
    assert_eq!(second.snapshot_point(&acme).await.expect("snapshot").watermark, 1);
    let third = SqliteStore::open(&path)
        .await
        .expect("open while another store is open");
    assert_eq!(
        third
            .ingest(&acme, &[document("osv-go", Kind::Advisory, "GO-2", 1)])
            .await
            .expect("ingest"),
        [IngestOutcome::Inserted { seq: 2 }]
    );

    export_store::sql::testing::each_migration_is_applied_once(&third).await;
    let mut conn = raw_connection(&path).await;
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("reading the journal mode");
    assert_eq!(journal_mode, "wal");
}

#[tokio::test]
async fn connect_takes_a_sqlite_url_and_creates_the_file() {
    let path = fresh_path();
    assert!(!path.exists());
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    store.ping().await.expect("ping");
    assert!(path.exists());
    assert!(SqliteStore::connect("postgres://localhost/export").await.is_err());
}

/// SQLite creates a database `0644` less the umask; the store creates it owner-only, and
/// SQLite gives the `-wal` and `-shm` files the database's mode (SPEC §17).
#[tokio::test]
async fn a_new_database_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    for (path, open_by_url) in [(fresh_path(), false), (fresh_path(), true)] {
        let store = if open_by_url {
            SqliteStore::connect(&format!("sqlite://{}", path.display())).await
        } else {
            SqliteStore::open(&path).await
        }
        .expect("open");
        store
            .ingest(&tenant("acme"), &[document("osv-go", Kind::Advisory, "GO-1", 1)])
            .await
            .expect("ingest");
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).expect(&file).permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
    }
}

/// Two stores on one file stand for two worker processes: every run is claimed by
/// exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_claim_the_same_run() {
    let path = fresh_path();
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(SqliteStore::open(&path).await.expect("first store")),
        Arc::new(SqliteStore::open(&path).await.expect("second store")),
    ];
    let tenants = ["acme", "globex", "initech"].map(tenant);
    let mut created = BTreeSet::new();
    for idx in 0..60 {
        let tenant = &tenants[idx % tenants.len()];
        let run = stores[idx % 2]
            .create_run(
                tenant,
                new_run(tenant, "daily", at(idx as i64), Priority::Normal),
                None,
            )
            .await
            .expect("create run");
        created.insert(run.id);
    }

    let workers: Vec<_> = (0..8)
        .map(|worker_idx| {
            let store = Arc::clone(&stores[worker_idx % 2]);
            tokio::spawn(async move {
                let worker = format!("process-{}-worker-{worker_idx}", worker_idx % 2);
                let mut claimed = Vec::new();
                // Bounded, so a double claim fails the test instead of spinning.
                while claimed.len() <= 60 {
                    match store
                        .claim_next_run(&worker, at(100), LEASE, 100)
                        .await
                        .expect("claim next run")
                    {
                        Some(run) => claimed.push(run.id),
                        None => break,
                    }
                }
                claimed
            })
        })
        .collect();
    let mut claimed: Vec<RunId> = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.expect("claiming task"));
    }
    let unique: BTreeSet<RunId> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), created.len(), "no run claimed twice");
    assert_eq!(unique, created);
    for run_id in &created {
        let run = stores[0]
            .get_run(&run_id.tenant, run_id)
            .await
            .expect("get run")
            .expect("the run exists");
        assert_eq!((run.status, run.attempts), (RunStatus::Running, 1));
    }
}

/// A row edited by hand into something the model cannot hold is reported, not guessed.
#[tokio::test]
async fn a_row_that_does_not_parse_is_corrupt() {
    let store = SqliteStore::open(&fresh_path()).await.expect("open");
    export_store::sql::testing::a_row_that_does_not_parse_is_corrupt(&store).await;
}

/// Not a gate, a measurement: `cargo test -p export-store-sqlite --release --test it --
/// --ignored --nocapture ingest_throughput`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand in release mode"]
async fn ingest_throughput() {
    let store = SqliteStore::open(&fresh_path()).await.expect("open");
    let acme = tenant("acme");
    let padding = "x".repeat(3000);
    let items: Vec<_> = (0..20_000)
        .map(|idx| {
            let mut item = document("osv-go", Kind::Advisory, &format!("GO-{idx:06}"), 1);
            let body = serde_json::json!({ "id": item.id, "details": padding, "n": idx });
            item.document = export_core::canonical_json(&body);
            item.digest = export_core::Sha256Digest::of(&item.document);
            item
        })
        .collect();
    let started = Instant::now();
    for batch in items.chunks(1000) {
        store.ingest(&acme, batch).await.expect("ingest");
    }
    let ingest_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let target = Target::parse("advisory").expect("valid target");
    let streamed = store
        .stream_items(&acme, 20_000, &target)
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await
        .expect("stream");
    let stream_secs = started.elapsed().as_secs_f64();
    assert_eq!(streamed, items.len());
    println!(
        "ingested {} docs of ~3 KB in {ingest_secs:.2} s ({:.0} docs/s); streamed them in {stream_secs:.2} s ({:.0} docs/s)",
        items.len(),
        items.len() as f64 / ingest_secs,
        items.len() as f64 / stream_secs,
    );
}
