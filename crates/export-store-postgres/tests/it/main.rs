//! Integration tests of the PostgreSQL store: the shared conformance suite, and what only
//! a shared server has (several pools at once, migrations run by each, schemas).
//!
//! They need a PostgreSQL server: `EXPORT_CENTER_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`. Without one they fail, never skip.

mod conformance;
mod postgres;

use export_store::Store;
use export_store_postgres::testing::{fresh_schema, options_for};
use export_store_postgres::PostgresStore;

/// A fresh, empty store in a new schema.
pub(crate) async fn fresh_store() -> Box<dyn Store> {
    let schema = fresh_schema().await;
    Box::new(
        PostgresStore::connect_with(options_for(&schema))
            .await
            .expect("opening a fresh store"),
    )
}
