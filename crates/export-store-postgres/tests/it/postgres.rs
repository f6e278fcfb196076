//! What only the PostgreSQL store has: a server several replicas share, migrations each
//! of them runs on connect, and schemas.

use export_core::Kind;
use export_store::testing::{document, tenant};
use export_store::{IngestOutcome, Store};
use export_store_postgres::PostgresStore;
use sqlx::{Connection, PgConnection};

use export_store_postgres::testing::{fresh_schema, options_for, url_for};

async fn raw_connection(schema: &str) -> PgConnection {
    PgConnection::connect_with(&options_for(schema))
        .await
        .expect("opening a raw connection")
}

/// Replicas starting at once on an empty schema migrate it once, and a replica started
/// later keeps what the others stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_connecting_at_once_migrate_once_and_share_their_data() {
    let schema = fresh_schema().await;
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let options = options_for(&schema);
            tokio::spawn(async move { PostgresStore::connect_with(options).await })
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.expect("connecting task").expect("connect"));
    }
    let acme = tenant("acme");
    stores[0]
        .ingest(&acme, &[document("osv-go", Kind::Advisory, "GO-1", 1)])
        .await
        .expect("ingest");
    let later = PostgresStore::connect_with(options_for(&schema))
        .await
        .expect("a later connect");
    assert_eq!(later.snapshot_point(&acme).await.expect("snapshot").watermark, 1);
    assert_eq!(
        stores[3]
            .ingest(&acme, &[document("osv-go", Kind::Advisory, "GO-2", 1)])
            .await
            .expect("ingest"),
        [IngestOutcome::Inserted { seq: 2 }]
    );

    export_store::sql::testing::each_migration_is_applied_once(&later).await;
}

/// `connect` takes a `postgres://` URL, with the schema in its options, and refuses
/// anything else with a reason.
#[tokio::test]
async fn connect_takes_a_postgres_url() {
    let schema = fresh_schema().await;
    let store = PostgresStore::connect(&url_for(&schema)).await.expect("connect");
    store.ping().await.expect("ping");
    let mut conn = raw_connection(&schema).await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'runs'",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .expect("reading the catalog");
    assert_eq!(tables, 1, "the schema named in the url holds the tables");

    let err = PostgresStore::connect("sqlite:///tmp/export.db")
        .await
        .expect_err("a sqlite url");
    let reason = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(reason.contains("postgres://"), "{err}: {reason}");
}

/// Text sorts bytewise whatever the database's collation: every text column of the
/// schema is `COLLATE "C"`.
#[tokio::test]
async fn every_text_column_compares_bytewise() {
    let schema = fresh_schema().await;
    PostgresStore::connect_with(options_for(&schema))
        .await
        .expect("connect");
    let mut conn = raw_connection(&schema).await;
    let other: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, collation_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND data_type = 'text' AND table_name <> '_sqlx_migrations' \
         AND collation_name IS DISTINCT FROM 'C'",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .expect("reading the catalog");
    assert!(other.is_empty(), "text columns without COLLATE \"C\": {other:?}");
}

/// A row edited by hand into something the model cannot hold is reported, not guessed.
#[tokio::test]
async fn a_row_that_does_not_parse_is_corrupt() {
    let store = PostgresStore::connect_with(options_for(&fresh_schema().await))
        .await
        .expect("connect");
    export_store::sql::testing::a_row_that_does_not_parse_is_corrupt(&store).await;
}

/// `database.url` honours `sslmode` (SPEC §17): `require` connects over TLS (the test
/// server has `ssl = on`), and `verify-full` against a root that did not sign the
/// server's certificate is refused rather than connected in plaintext.
#[tokio::test]
async fn sslmode_require_connects_encrypted_and_verify_full_refuses_a_wrong_root() {
    let schema = fresh_schema().await;
    let url = url_for(&schema);
    // Without TLS in the driver, `require` cannot connect at all.
    PostgresStore::connect(&format!("{url}&sslmode=require"))
        .await
        .expect("sslmode=require connects");
    for mode in ["require", "prefer"] {
        let options: sqlx::postgres::PgConnectOptions = format!("{url}&sslmode={mode}").parse().unwrap();
        let mut conn = PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|err| panic!("sslmode={mode}: {err}"));
        let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(encrypted, "sslmode={mode} connected in plaintext");
    }

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("wrong-root.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=not-this-server", "-keyout"])
        .arg(dir.path().join("wrong-root.key"))
        .arg("-out")
        .arg(&root)
        .output()
        .expect("openssl makes a root certificate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let refused = PostgresStore::connect(&format!(
        "{url}&sslmode=verify-full&sslrootcert={}",
        root.display()
    ))
    .await;
    assert!(
        refused.is_err(),
        "a server certificate the root did not sign was accepted"
    );
}
