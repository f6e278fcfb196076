//! Test databases on a real PostgreSQL server (feature `testing`): each test gets a
//! fresh schema of its own, so tests run in parallel (nextest runs each in its own
//! process) without seeing each other's rows.
//!
//! The server is `EXPORT_CENTER_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`. Without one the tests fail, never skip.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Test schemas are named `export_test_<nanoseconds since 1970>_<process id>`.
const PREFIX: &str = "export_test_";

/// Test schemas older than this are dropped when a new one is made: no test lasts that
/// long, so none still running loses its schema, and a failed test's rows stay
/// inspectable for a while.
const KEEP: Duration = Duration::from_secs(6 * 60 * 60);

/// The server the tests use.
pub fn server_url() -> String {
    std::env::var("EXPORT_CENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Makes a new, empty schema on the test server, drops test schemas older than `KEEP`,
/// and returns the new schema's name. Panics, naming the server, when it is unreachable.
pub async fn fresh_schema() -> String {
    let url = server_url();
    let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|err| {
        panic!("these tests need PostgreSQL at {url} (set EXPORT_CENTER_TEST_POSTGRES_URL): {err}")
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut admin)
            .await
            .expect("listing test schemas");
    let oldest_kept = now.saturating_sub(KEEP).as_nanos();
    for schema in schemas {
        let made = schema
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|nanos| nanos.parse::<u128>().ok());
        if made.is_some_and(|made| made < oldest_kept) {
            // Another test process may be dropping it too.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut admin)
                .await;
        }
    }
    let name = format!("{PREFIX}{}_{}", now.as_nanos(), std::process::id());
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut admin)
        .await
        .expect("creating a test schema");
    admin.close().await.ok();
    name
}

/// Connection options for `schema` on the test server.
pub fn options_for(schema: &str) -> PgConnectOptions {
    server_url()
        .parse::<PgConnectOptions>()
        .expect("a valid test server url")
        .options([("search_path", schema)])
}

/// The `database.url` of `schema` on the test server, for a process to connect with.
pub fn url_for(schema: &str) -> String {
    let url = server_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}
