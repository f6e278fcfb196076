//! Runs `export_artifacts::testing` against the local filesystem, in memory, and in a
//! real S3-compatible server (`s3s-fs`).

use export_artifacts::testing::S3Server;
use export_artifacts::ArtifactStore;

/// One `#[tokio::test]` per suite function and backend, so a failure names both.
macro_rules! conformance {
    ($backend:ident, $fresh:expr) => {
        mod $backend {
            use super::*;

            conformance!(@tests $fresh;
                put_then_read_round_trips,
                empty_artifacts_round_trip,
                ranges_return_the_requested_bytes,
                uncached_reads_return_the_stored_bytes,
                missing_artifacts_are_not_found,
                writer_streams_large_artifacts,
                writer_handles_any_chunking,
                nothing_is_visible_before_finish,
                aborted_writes_leave_nothing,
                a_cancelled_write_is_never_published,
                aborted_rewrite_keeps_the_previous_artifact,
                rewriting_a_key_replaces_it,
                list_run_is_sorted_and_relative,
                delete_run_removes_only_that_run,
                tenants_never_collide,
                check_writable_succeeds_and_leaves_nothing,
            );
        }
    };
    (@tests $fresh:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fresh;
                export_artifacts::testing::$name(&store).await;
            }
        )*
    };
}

conformance!(local_fs, {
    let dir = tempfile::tempdir().unwrap();
    (ArtifactStore::local(&dir.path().join("artifacts")).unwrap(), dir)
});

conformance!(in_memory, (ArtifactStore::in_memory(), ()));

conformance!(
    from_memory_url,
    (ArtifactStore::from_url("memory://").unwrap(), ())
);

// One server per test: every suite function expects a fresh, empty store. The prefix
// makes the store's keys differ from the bucket's, as they do in production.
conformance!(s3, {
    let server = S3Server::start();
    (server.artifact_store("artifacts"), server)
});
