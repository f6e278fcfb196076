//! Integration tests of the PostgreSQL store: the shared conformance suite, and what only
//! a shared server has (several pools at once, migrations run by each, schemas).
//!
//! They need a PostgreSQL server: `EXPORT_CENTER_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`. Without one they fail, never skip.

mod conformance;
mod postgres;

use export_store::Store;
use export_store_postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// The server the tests use.
pub(crate) fn server_url() -> String {
    std::env::var("EXPORT_CENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A new, empty schema of its own for one test, so tests run in parallel (nextest runs
/// each in its own process) without seeing each other's rows. It is left in place so a
/// failed test's rows can be inspected; each name is unique.
pub(crate) async fn fresh_schema() -> String {
    let url = server_url();
    let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|err| {
        panic!("these tests need PostgreSQL at {url} (set EXPORT_CENTER_TEST_POSTGRES_URL): {err}")
    });
    let name = format!(
        "export_it_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos()
    );
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut admin)
        .await
        .expect("creating a test schema");
    admin.close().await.ok();
    name
}

/// Connection options for `schema` on the test server.
pub(crate) fn options_for(schema: &str) -> PgConnectOptions {
    server_url()
        .parse::<PgConnectOptions>()
        .expect("a valid test server url")
        .options([("search_path", schema)])
}

/// A fresh, empty store in a new schema.
pub(crate) async fn fresh_store() -> Box<dyn Store> {
    let schema = fresh_schema().await;
    Box::new(
        PostgresStore::connect_with(options_for(&schema))
            .await
            .expect("opening a fresh store"),
    )
}
