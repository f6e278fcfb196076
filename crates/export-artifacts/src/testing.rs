//! The `ArtifactStore` conformance suite: plain async functions taking `&ArtifactStore`,
//! each panicking on the first broken promise, run against every backend.
//!
//! Every function expects a fresh, empty store.
//!
//! [`S3Server`] runs a real S3-compatible server for the S3 backend's run, and for the
//! tests of other crates that need S3.

use bytes::Bytes;
use export_core::{RunId, Sha256Digest};
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use sha2::{Digest, Sha256};

use crate::{ArtifactError, ArtifactKey, ArtifactStore};

mod s3_server;

pub use s3_server::S3Server;

/// A run id of `tenant` on 2025-12-06.
pub fn run_id(tenant: &str, seq: u32) -> RunId {
    RunId::parse(&format!("export-run::{tenant}::2025-12-06::{seq:04}")).expect("valid test run id")
}

pub fn key(run: &RunId, path: &str) -> ArtifactKey {
    ArtifactKey::for_run_output(run, path).expect("valid test output path")
}

/// `len` bytes that look random but are the same on every call with the same `seed`.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*: plenty for test data.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Reads `range` (or all) of `key` through the stream, checking the reported range.
async fn read(store: &ArtifactStore, key: &ArtifactKey, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let read = store.get(key, range).await.expect("get");
    let bytes: Vec<Bytes> = read.stream.try_collect().await.expect("read the stream");
    let bytes = bytes.concat();
    assert_eq!(
        bytes.len() as u64,
        read.range.end - read.range.start,
        "stream length = range length"
    );
    bytes
}

pub async fn put_then_read_round_trips(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    let data = Bytes::from(pseudo_random_bytes(1, 100_000));
    let key = key(&run, "advisory.ndjson");
    let written = store.put(&key, data.clone()).await.unwrap();
    assert_eq!(written.sha256, Sha256Digest::of(&data));
    assert_eq!(written.bytes, 100_000);
    assert_eq!(store.size(&key).await.unwrap(), Some(100_000));
    assert_eq!(store.read_all(&key).await.unwrap(), data);
    let read = store.get(&key, None).await.unwrap();
    assert_eq!((read.total_size, read.range), (100_000, 0..100_000));
    assert_eq!(self::read(store, &key, None).await, data);
}

pub async fn empty_artifacts_round_trip(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    let empty_put = key(&run, "empty-put.json");
    let written = store.put(&empty_put, Bytes::new()).await.unwrap();
    assert_eq!((written.sha256, written.bytes), (Sha256Digest::of(b""), 0));

    let empty_writer = key(&run, "empty-writer.json");
    let written = store.writer(&empty_writer).await.unwrap().finish().await.unwrap();
    assert_eq!((written.sha256, written.bytes), (Sha256Digest::of(b""), 0));
    for key in [&empty_put, &empty_writer] {
        assert_eq!(store.size(key).await.unwrap(), Some(0));
        assert!(read(store, key, None).await.is_empty());
    }
}

pub async fn ranges_return_the_requested_bytes(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    // Longer than one read chunk of the local backend, so ranges cross chunk boundaries.
    let len = 700_000u64;
    let data = pseudo_random_bytes(2, len as usize);
    let key = key(&run, "bundle.tar.zst");
    store.put(&key, Bytes::from(data.clone())).await.unwrap();

    let at = |range: std::ops::Range<u64>| data[range.start as usize..range.end as usize].to_vec();
    assert_eq!(read(store, &key, Some(0..10)).await, at(0..10), "first bytes");
    assert_eq!(
        read(store, &key, Some(250_000..600_001)).await,
        at(250_000..600_001),
        "middle"
    );
    assert_eq!(
        read(store, &key, Some(len - 1..len)).await,
        at(len - 1..len),
        "last byte"
    );

    let clamped = store.get(&key, Some(len - 5..len + 100)).await.unwrap();
    assert_eq!(
        (clamped.total_size, clamped.range.clone()),
        (len, len - 5..len),
        "end is clamped"
    );
    assert_eq!(
        read(store, &key, Some(len - 5..len + 100)).await,
        at(len - 5..len)
    );

    for bad in [len..len + 1, len + 10..len + 20, 5..5] {
        match store.get(&key, Some(bad.clone())).await {
            Err(ArtifactError::RangeNotSatisfiable { range, size, .. }) => {
                assert_eq!((range, size), (bad, len));
            }
            other => panic!(
                "range {bad:?} should not be satisfiable, got {:?}",
                other.map(|r| r.range)
            ),
        }
    }
}

pub async fn missing_artifacts_are_not_found(store: &ArtifactStore) {
    let key = key(&run_id("acme", 1), "manifest.json");
    assert_eq!(store.size(&key).await.unwrap(), None);
    assert!(matches!(
        store.read_all(&key).await,
        Err(ArtifactError::NotFound { .. })
    ));
    for range in [None, Some(0..10), Some(5..5)] {
        match store.get(&key, range).await {
            Err(ArtifactError::NotFound { key: missing }) => assert_eq!(missing, key.to_string()),
            other => panic!("expected not found, got {:?}", other.map(|r| r.range)),
        }
    }
}

pub async fn writer_streams_large_artifacts(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    let key = key(&run, "advisory.ndjson");
    let chunk_len = 64 * 1024;
    let n_chunks = 20 * 16; // 20 MiB
    let mut writer = store.writer(&key).await.unwrap();
    let mut expected = Sha256::new();
    for chunk_idx in 0..n_chunks {
        let chunk = pseudo_random_bytes(chunk_idx, chunk_len);
        expected.update(&chunk);
        writer.write(&chunk).await.unwrap();
    }
    assert_eq!(writer.bytes_written(), 20 * 1024 * 1024);
    let written = writer.finish().await.unwrap();
    let expected = Sha256Digest::from(expected);
    assert_eq!((written.sha256, written.bytes), (expected, 20 * 1024 * 1024));

    assert_eq!(store.size(&key).await.unwrap(), Some(20 * 1024 * 1024));
    let read = store.get(&key, None).await.unwrap();
    let mut stored = Sha256::new();
    let mut n_bytes = 0;
    read.stream
        .try_for_each(|chunk| {
            stored.update(&chunk);
            n_bytes += chunk.len();
            async { Ok(()) }
        })
        .await
        .unwrap();
    assert_eq!(
        (Sha256Digest::from(stored), n_bytes),
        (expected, 20 * 1024 * 1024)
    );
}

/// Writes at odd chunk sizes that straddle part boundaries, including one write larger
/// than a part.
pub async fn writer_handles_any_chunking(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    let data = pseudo_random_bytes(3, 19 * 1024 * 1024 + 12_345);
    let key = key(&run, "vex.json");
    let mut writer = store.writer(&key).await.unwrap();
    let mut rest = &data[..];
    for len in [1, 8 * 1024 * 1024 - 2, 3, 9 * 1024 * 1024, 77_777]
        .into_iter()
        .cycle()
    {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        writer.write(chunk).await.unwrap();
        rest = tail;
    }
    let written = writer.finish().await.unwrap();
    assert_eq!(
        (written.sha256, written.bytes),
        (Sha256Digest::of(&data), data.len() as u64)
    );
    assert_eq!(store.read_all(&key).await.unwrap(), data);
}

/// `get_uncached` gives the bytes `get` does, of artifacts written whole or in parts and
/// of sizes that are no multiple of a disk block, and a missing artifact is not found.
pub async fn uncached_reads_return_the_stored_bytes(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    for (path, len) in [("small.json", 1000), ("large.ndjson", 17 * 1024 * 1024 + 4097)] {
        let key = key(&run, path);
        let data = pseudo_random_bytes(8, len);
        let mut writer = store.writer(&key).await.unwrap();
        writer.write(&data).await.unwrap();
        writer.finish().await.unwrap();
        let read = store.get_uncached(&key).await.unwrap();
        assert_eq!((read.total_size, read.range), (len as u64, 0..len as u64));
        let chunks: Vec<Bytes> = read.stream.try_collect().await.unwrap();
        assert!(chunks.concat() == data, "{path}: uncached read differs");
    }
    assert!(matches!(
        store.get_uncached(&key(&run, "missing.json")).await,
        Err(ArtifactError::NotFound { .. })
    ));
}

/// Nothing is visible under the key, or in the run's listing, until `finish` returns:
/// neither for a small artifact (buffered) nor for one past a part (multipart upload).
pub async fn nothing_is_visible_before_finish(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    for (path, len) in [("small.json", 1000), ("large.ndjson", 9 * 1024 * 1024 + 1)] {
        let key = key(&run, path);
        let data = pseudo_random_bytes(4, len);
        let mut writer = store.writer(&key).await.unwrap();
        writer.write(&data).await.unwrap();
        assert_eq!(
            store.size(&key).await.unwrap(),
            None,
            "{path} visible before finish"
        );
        assert!(store
            .list_run(&run)
            .await
            .unwrap()
            .iter()
            .all(|listed| listed != path));
        assert!(matches!(
            store.read_all(&key).await,
            Err(ArtifactError::NotFound { .. })
        ));
        writer.finish().await.unwrap();
        assert_eq!(store.size(&key).await.unwrap(), Some(len as u64));
    }
    assert_eq!(
        store.list_run(&run).await.unwrap(),
        ["large.ndjson", "small.json"]
    );
}

/// After `abort`, or a drop without `finish`, nothing is left under the key.
pub async fn aborted_writes_leave_nothing(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    for len in [1000, 9 * 1024 * 1024 + 1] {
        let aborted = key(&run, "aborted.json");
        let mut writer = store.writer(&aborted).await.unwrap();
        writer.write(&pseudo_random_bytes(5, len)).await.unwrap();
        writer.abort().await.unwrap();
        assert_eq!(store.size(&aborted).await.unwrap(), None);

        let dropped = key(&run, "dropped.json");
        let mut writer = store.writer(&dropped).await.unwrap();
        writer.write(&pseudo_random_bytes(6, len)).await.unwrap();
        drop(writer);
        assert_eq!(store.size(&dropped).await.unwrap(), None);
    }
    assert_eq!(store.list_run(&run).await.unwrap(), Vec::<String>::new());
}

/// A `write` that fails or is cancelled midway may have lost a part, so the writer
/// refuses to publish afterwards.
pub async fn a_cancelled_write_is_never_published(store: &ArtifactStore) {
    let key = key(&run_id("acme", 1), "advisory.ndjson");
    // Completing a second part first waits for the hash of the first (it runs on the
    // blocking pool while the second fills) and for the store, which usually takes longer
    // than one poll: dropping the future there is a cancellation in the middle of a part.
    // A fast store may finish a part in one poll now and then, so try a few writers.
    let part = pseudo_random_bytes(9, 8 * 1024 * 1024);
    let mut cancelled = None;
    for _ in 0..20 {
        let mut writer = store.writer(&key).await.unwrap();
        writer.write(b"head").await.unwrap();
        writer.write(&part).await.unwrap();
        if writer.write(&part).now_or_never().is_none() {
            cancelled = Some(writer);
            break;
        }
        writer.abort().await.unwrap();
    }
    let mut writer = cancelled.expect("a write of a whole part that is still pending after one poll");
    assert!(matches!(
        writer.write(b"more").await,
        Err(ArtifactError::Incomplete { .. })
    ));
    match writer.finish().await {
        Err(ArtifactError::Incomplete { key: incomplete }) => assert_eq!(incomplete, key.to_string()),
        other => panic!("a broken writer must not publish, got {other:?}"),
    }
    assert_eq!(store.size(&key).await.unwrap(), None);
}

/// Aborting a rewrite leaves the previous artifact as it was.
pub async fn aborted_rewrite_keeps_the_previous_artifact(store: &ArtifactStore) {
    let key = key(&run_id("acme", 1), "manifest.json");
    store.put(&key, Bytes::from_static(b"first")).await.unwrap();
    let mut writer = store.writer(&key).await.unwrap();
    writer
        .write(&pseudo_random_bytes(7, 9 * 1024 * 1024))
        .await
        .unwrap();
    writer.abort().await.unwrap();
    assert_eq!(store.read_all(&key).await.unwrap(), "first");
}

/// Writing a key again replaces it, as a retried runner step does.
pub async fn rewriting_a_key_replaces_it(store: &ArtifactStore) {
    let key = key(&run_id("acme", 1), "manifest.json");
    store
        .put(&key, Bytes::from_static(b"first version"))
        .await
        .unwrap();
    let mut writer = store.writer(&key).await.unwrap();
    writer.write(b"second").await.unwrap();
    writer.finish().await.unwrap();
    assert_eq!(store.read_all(&key).await.unwrap(), "second");
}

pub async fn list_run_is_sorted_and_relative(store: &ArtifactStore) {
    let run = run_id("acme", 1);
    assert_eq!(store.list_run(&run).await.unwrap(), Vec::<String>::new());
    for path in [
        "z.json",
        "data/b.ndjson",
        "m.ndjson",
        "data.json",
        "data/a.ndjson",
    ] {
        store
            .put(&key(&run, path), Bytes::from_static(b"{}"))
            .await
            .unwrap();
    }
    // A neighbouring run's outputs are not listed.
    store
        .put(&key(&run_id("acme", 10), "x.json"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        store.list_run(&run).await.unwrap(),
        [
            "data.json",
            "data/a.ndjson",
            "data/b.ndjson",
            "m.ndjson",
            "z.json"
        ]
    );
}

/// `delete_run` removes every object of the run and nothing of another run or tenant.
pub async fn delete_run_removes_only_that_run(store: &ArtifactStore) {
    let doomed = run_id("acme", 1);
    let same_tenant = run_id("acme", 2);
    let prefix_sibling = run_id("acme", 10);
    let other_tenant = run_id("globex", 1);
    for run in [&doomed, &same_tenant, &prefix_sibling, &other_tenant] {
        for path in ["manifest.json", "data/advisory.ndjson"] {
            store
                .put(&key(run, path), Bytes::from_static(b"{}"))
                .await
                .unwrap();
        }
    }
    let mut large = store.writer(&key(&doomed, "bundle.tar.zst")).await.unwrap();
    large
        .write(&pseudo_random_bytes(8, 9 * 1024 * 1024))
        .await
        .unwrap();
    large.finish().await.unwrap();

    assert_eq!(store.delete_run(&doomed).await.unwrap(), 3);
    assert_eq!(store.list_run(&doomed).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.size(&key(&doomed, "manifest.json")).await.unwrap(), None);
    for run in [&same_tenant, &prefix_sibling, &other_tenant] {
        assert_eq!(
            store.list_run(run).await.unwrap(),
            ["data/advisory.ndjson", "manifest.json"],
            "{run} must be untouched"
        );
    }
    assert_eq!(
        store.delete_run(&doomed).await.unwrap(),
        0,
        "deleting again finds nothing"
    );
    assert_eq!(store.delete_run(&run_id("initech", 1)).await.unwrap(), 0);
}

/// The same run date, seq and path in two tenants are two different objects.
pub async fn tenants_never_collide(store: &ArtifactStore) {
    let acme = key(&run_id("acme", 1), "manifest.json");
    let globex = key(&run_id("globex", 1), "manifest.json");
    assert_ne!(acme, globex);
    store.put(&acme, Bytes::from_static(b"acme")).await.unwrap();
    store.put(&globex, Bytes::from_static(b"globex")).await.unwrap();
    assert_eq!(store.read_all(&acme).await.unwrap(), "acme");
    assert_eq!(store.read_all(&globex).await.unwrap(), "globex");
}

/// The readiness probe succeeds on a working store and cleans up after itself.
pub async fn check_writable_succeeds_and_leaves_nothing(store: &ArtifactStore) {
    store.check_writable().await.unwrap();
    store.check_writable().await.unwrap();
    let left: Vec<_> = store
        .object_store()
        .list(Some(&Path::from("_health")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "probe objects left behind: {left:?}");
}
