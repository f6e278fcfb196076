//! What only the local filesystem backend can show: staging files on disk, leftovers of
//! interrupted uploads, readiness failures, and `from_url`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use export_artifacts::testing::{key, pseudo_random_bytes, run_id};
use export_artifacts::{ArtifactError, ArtifactStore};
use futures::TryStreamExt as _;

const NINE_MIB: usize = 9 * 1024 * 1024;
const EIGHT_MIB: usize = 8 * 1024 * 1024;

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn local_store() -> (ArtifactStore, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    (ArtifactStore::local(&root).unwrap(), root, dir)
}

#[tokio::test]
async fn outputs_are_laid_out_by_tenant_date_and_seq() {
    let (store, root, _dir) = local_store();
    let run = run_id("acme", 3);
    store
        .put(&key(&run, "data/advisory.ndjson"), Bytes::from_static(b"x\n"))
        .await
        .unwrap();
    assert_eq!(
        files_under(&root),
        ["runs/acme/2025-12-06/0003/data/advisory.ndjson"]
    );
}

#[tokio::test]
async fn a_large_write_is_staged_aside_and_renamed_on_finish() {
    let (store, root, _dir) = local_store();
    let run = run_id("acme", 1);
    let key = key(&run, "bundle.tar.zst");
    let mut writer = store.writer(&key).await.unwrap();
    writer.write(&pseudo_random_bytes(1, NINE_MIB)).await.unwrap();

    // The first part went to a staging file beside the key, which the store does not show.
    assert_eq!(files_under(&root), ["runs/acme/2025-12-06/0001/bundle.tar.zst#1"]);
    assert_eq!(store.size(&key).await.unwrap(), None);
    assert_eq!(store.list_run(&run).await.unwrap(), Vec::<String>::new());

    writer.finish().await.unwrap();
    assert_eq!(files_under(&root), ["runs/acme/2025-12-06/0001/bundle.tar.zst"]);
    assert_eq!(store.size(&key).await.unwrap(), Some(NINE_MIB as u64));
}

/// Whole parts go around the page cache (`O_DIRECT`), so writing a large artifact does
/// not fill memory with cache pages: only its last, partial part is cached; an uncached
/// read leaves it so. The bytes are exact wherever the writes' boundaries fall.
#[tokio::test]
async fn large_artifacts_are_written_and_read_back_around_the_page_cache() {
    // Under the target directory: a disk filesystem, where `O_DIRECT` works (on tmpfs a
    // file is its cached pages).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("artifacts");
    let store = ArtifactStore::local(&root).unwrap();
    let key = key(&run_id("acme", 1), "advisory.ndjson");
    let data = pseudo_random_bytes(7, 3 * EIGHT_MIB + 12_345);
    let mut writer = store.writer(&key).await.unwrap();
    for chunk in data.chunks(100_003) {
        writer.write(chunk).await.unwrap();
    }
    writer.finish().await.unwrap();

    let [file] = files_under(&root).try_into().unwrap();
    let path = root.join(file);
    let not_cached = |when: &str| {
        let cached = cached_bytes(&path);
        assert!(
            cached < EIGHT_MIB as u64,
            "{when}: {cached} of {} bytes of {} are in the page cache",
            data.len(),
            path.display()
        );
    };
    not_cached("written");

    // An uncached read (a bundle's) goes around the cache too.
    let read = store.get_uncached(&key).await.unwrap();
    let chunks: Vec<Bytes> = read.stream.try_collect().await.unwrap();
    assert!(chunks.concat() == data, "the uncached read differs");
    not_cached("read uncached");
    assert!(std::fs::read(&path).unwrap() == data, "the stored bytes differ");
}

/// How many bytes of `path` are in the page cache (util-linux's `fincore`).
fn cached_bytes(path: &Path) -> u64 {
    let output = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("running fincore (util-linux)");
    assert!(output.status.success(), "fincore: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn abort_removes_the_staging_file() {
    let (store, root, _dir) = local_store();
    let mut writer = store
        .writer(&key(&run_id("acme", 1), "bundle.tar.zst"))
        .await
        .unwrap();
    writer.write(&pseudo_random_bytes(2, NINE_MIB)).await.unwrap();
    assert_eq!(files_under(&root).len(), 1);
    writer.abort().await.unwrap();
    assert_eq!(files_under(&root), Vec::<String>::new());
}

#[tokio::test]
async fn dropping_a_writer_removes_its_staging_file() {
    let (store, root, _dir) = local_store();
    let mut writer = store
        .writer(&key(&run_id("acme", 1), "bundle.tar.zst"))
        .await
        .unwrap();
    writer.write(&pseudo_random_bytes(3, NINE_MIB)).await.unwrap();
    drop(writer);
    // The backend removes it on the blocking pool, so give it a moment.
    for _ in 0..100 {
        if files_under(&root).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("staging file left behind: {:?}", files_under(&root));
}

#[tokio::test]
async fn delete_run_sweeps_what_interrupted_uploads_left() {
    let (store, root, _dir) = local_store();
    let run = run_id("acme", 1);
    let neighbour = run_id("acme", 2);
    store
        .put(&key(&run, "manifest.json"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    store
        .put(&key(&neighbour, "manifest.json"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    // What a crash in the middle of a multipart upload leaves: a staging file that the
    // backend hides from listings and refuses to delete by key.
    let run_dir = root.join("runs/acme/2025-12-06/0001");
    std::fs::create_dir_all(run_dir.join("data")).unwrap();
    std::fs::write(run_dir.join("data/advisory.ndjson#1"), b"half").unwrap();
    assert_eq!(store.list_run(&run).await.unwrap(), ["manifest.json"]);

    assert_eq!(store.delete_run(&run).await.unwrap(), 2);
    assert!(!run_dir.exists());
    assert_eq!(files_under(&root), ["runs/acme/2025-12-06/0002/manifest.json"]);

    // The last run of a tenant takes its emptied date and tenant directories with it.
    assert_eq!(store.delete_run(&neighbour).await.unwrap(), 1);
    assert!(!root.join("runs/acme").exists());
    // And the store still works afterwards.
    store
        .put(&key(&run, "manifest.json"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn check_writable_fails_when_the_root_is_not_a_directory() {
    let (store, root, _dir) = local_store();
    store.check_writable().await.unwrap();
    // Permissions do not stop root, which runs these tests; a file where the directory
    // was stops everyone.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let err = store.check_writable().await.unwrap_err();
    assert!(matches!(err, ArtifactError::Backend(_)), "{err:?}");
}

#[test]
fn the_root_and_its_missing_parents_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data/artifacts");
    ArtifactStore::local(&root).unwrap();
    for created in [dir.path().join("data"), root] {
        let mode = std::fs::metadata(&created).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}: {mode:o}", created.display());
    }
}

#[test]
fn local_fails_when_the_root_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = ArtifactStore::local(&file.join("artifacts")).unwrap_err();
    assert!(matches!(err, ArtifactError::LocalDirectory { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot use local artifact directory `"),
        "{err}"
    );
}

#[tokio::test]
async fn file_urls_open_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("with space");
    let url = format!("file://{}", root.display()).replace(' ', "%20");
    let store = ArtifactStore::from_url(&url).unwrap();
    store
        .put(&key(&run_id("acme", 1), "manifest.json"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(files_under(&root), ["runs/acme/2025-12-06/0001/manifest.json"]);
}

#[test]
fn unsupported_urls_are_rejected_with_their_scheme() {
    let err = ArtifactStore::from_url("gs://bucket/prefix").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid artifact store url `gs://bucket/prefix`: unsupported url scheme `gs`: expected `file`, `memory` or `s3`"
    );
    for bad in [
        "",
        "relative/path",
        "file://remote-host/data",
        "memory://somewhere",
        "file:///tmp/x?y=1",
    ] {
        match ArtifactStore::from_url(bad) {
            Err(ArtifactError::InvalidUrl { .. }) => {}
            other => panic!("{bad:?} should be an invalid url, got {other:?}"),
        }
    }
}

#[test]
fn passwords_in_urls_stay_out_of_errors() {
    let err = ArtifactStore::from_url("s3://key:hunter2@bucket/prefix").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
