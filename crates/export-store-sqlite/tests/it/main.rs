//! Integration tests of the SQLite store: the shared conformance suite, and what only
//! SQLite has (files, migrations, several processes on one file).

mod conformance;
mod sqlite;

use std::path::PathBuf;

use export_store::Store;
use export_store_sqlite::SqliteStore;

/// A path for a new database file, in a directory of its own that outlives the test.
///
/// The directories live under Cargo's per-target temporary directory, so a failed test
/// leaves its file there to inspect. Nothing is cleared at start: test runners such as
/// nextest run every test in its own process, in parallel, and a clean-up at start
/// would delete the files of tests still running.
pub(crate) fn fresh_path() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-store-sqlite-it");
    std::fs::create_dir_all(&base).expect("creating the test directory");
    let dir = tempfile::Builder::new()
        .prefix("store-")
        .tempdir_in(base)
        .expect("creating a temporary directory");
    dir.keep().join("export-center.db")
}

/// A fresh, empty store on a new file.
pub(crate) async fn fresh_store() -> Box<dyn Store> {
    Box::new(
        SqliteStore::open(&fresh_path())
            .await
            .expect("opening a fresh store"),
    )
}
