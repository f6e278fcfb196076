//! Integration tests of the SQLite store: the shared conformance suite, and what only
//! SQLite has (files, migrations, several processes on one file).

mod conformance;
mod sqlite;

use std::path::PathBuf;
use std::sync::OnceLock;

use export_store::Store;
use export_store_sqlite::SqliteStore;

/// A path for a new database file, in a directory of its own that outlives the test.
///
/// The directories live under Cargo's per-target temporary directory; each run of this
/// binary clears the previous run's, so they never pile up and the last run's files are
/// there to inspect after a failure.
pub(crate) fn fresh_path() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-store-sqlite-it");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("creating the test directory");
        base
    });
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
