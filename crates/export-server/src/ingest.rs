//! `export-center ingest`: reads evidence files and directories, parses each document,
//! and stores the good ones in batches. A rejected file is reported with its path, the
//! reason and the JSON pointer, and leaves nothing behind. With `--sync`, the files are
//! the source's whole current state, and the source's documents they lack are removed
//! once every file is stored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use export_core::{Clock, SourceName, TenantId};
use export_evidence::{parse_document, ParsedDocument};
use export_store::{IngestOutcome, NewEvidence, Store};
use tokio::sync::mpsc::Sender;

/// Documents stored per transaction.
const BATCH: usize = 500;

/// What an ingestion does with the documents of the source that the given paths lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// They stay: the paths add and change documents.
    Add,
    /// They are removed (`--sync`): the paths are the source's complete current state.
    /// Each document of the source (of this tenant) that they do not hold gets a
    /// tombstone, in one transaction after all of theirs are stored, and only when
    /// every file was read: a rejected file removes nothing, so that a partial read
    /// never deletes the rest of the source.
    Sync,
}

/// What one ingestion did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub inserted: u64,
    pub replaced: u64,
    pub unchanged: u64,
    /// Documents of the source removed because the paths lack them (`IngestMode::Sync`).
    pub removed: u64,
    pub rejected: Vec<Rejection>,
    /// Files in the given directories that are not `.json`, `.yaml` or `.yml`.
    pub skipped: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub path: PathBuf,
    pub reason: String,
    /// RFC 6901 pointer to the problem; empty for the whole document.
    pub pointer: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(document)"
        } else {
            &self.pointer
        };
        write!(f, "{}: {} at {}", self.path.display(), self.reason, pointer)
    }
}

/// Files read and parsed ahead of the store, in order.
enum Read {
    Document(ParsedDocument),
    Rejected(Rejection),
    /// A file in a given directory that is not `.json`, `.yaml` or `.yml`.
    Skipped(PathBuf),
}

/// Files the reader hands over at a time: enough to make each hand-off cheap.
const CHUNK: usize = 100;

/// Chunks the reader may be ahead of the store: two batches, which bounds memory.
const CHUNKS_AHEAD: usize = 2 * BATCH / CHUNK;

/// Ingests `paths` into `source` of `tenant`: each given file as is, each directory's
/// `.json`, `.yaml` and `.yml` files recursively in sorted order (so ingestion sequences
/// are reproducible). Directories are walked lazily, so memory does not grow with the
/// number of files.
///
/// Reading and parsing run on a blocking thread, a bounded channel ahead of the store,
/// so that parsing one batch overlaps with storing the one before (on SQLite, in the
/// driver's own thread). The files keep their order, and with it their sequences and
/// the order of the report.
///
/// With `IngestMode::Sync`, the source's documents the paths lack are then removed,
/// unless a file was rejected (`IngestMode`).
pub async fn ingest_paths(
    store: &dyn Store,
    clock: &dyn Clock,
    tenant: &TenantId,
    source: &SourceName,
    paths: &[PathBuf],
    mode: IngestMode,
) -> anyhow::Result<IngestReport> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let paths = paths.to_vec();
    let span = tracing::Span::current();
    let reader = tokio::task::spawn_blocking(move || span.in_scope(|| read_paths(&paths, &sender)));

    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    // The ids of every document read, when the source's other documents are removed.
    let mut present = BTreeSet::new();
    while let Some(chunk) = receiver.recv().await {
        for read in chunk? {
            match read {
                Read::Document(parsed) => {
                    if mode == IngestMode::Sync {
                        present.insert(parsed.id.clone());
                    }
                    batch.push(new_evidence(parsed, source, clock.now()));
                }
                Read::Rejected(rejection) => report.rejected.push(rejection),
                Read::Skipped(path) => report.skipped.push(path),
            }
            if batch.len() == BATCH {
                store_batch(store, tenant, &mut batch, &mut report).await?;
            }
        }
    }
    reader.await.context("reading evidence files")?;
    store_batch(store, tenant, &mut batch, &mut report).await?;
    if mode == IngestMode::Sync && report.rejected.is_empty() {
        let removed = store
            .remove_absent(tenant, source, &present, clock.now())
            .await
            .context("removing the documents the paths lack")?;
        report.removed = removed.len() as u64;
    }
    Ok(report)
}

/// Reads and parses every file under `paths` in order, sending them in chunks; stops at
/// the first directory that cannot be walked (sending the error), or when the receiving
/// side has gone.
fn read_paths(paths: &[PathBuf], sender: &Sender<anyhow::Result<Vec<Read>>>) {
    let mut chunk = Vec::with_capacity(CHUNK);
    let send = |chunk: &mut Vec<Read>| {
        let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
        sender.blocking_send(Ok(full)).is_ok()
    };
    for path in paths {
        if !path.exists() {
            chunk.push(Read::Rejected(Rejection {
                path: path.clone(),
                reason: "no such file or directory".to_owned(),
                pointer: String::new(),
            }));
            continue;
        }
        for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
            let entry = match entry.with_context(|| format!("reading directory {}", path.display())) {
                Ok(entry) => entry,
                Err(err) => {
                    if send(&mut chunk) {
                        let _ = sender.blocking_send(Err(err));
                    }
                    return;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let given = entry.depth() == 0;
            let is_evidence = entry
                .path()
                .extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| matches!(ext, "json" | "yaml" | "yml"));
            chunk.push(if !given && !is_evidence {
                Read::Skipped(entry.into_path())
            } else {
                match read_document(entry.path()) {
                    Ok(parsed) => Read::Document(parsed),
                    Err(rejection) => Read::Rejected(rejection),
                }
            });
            if chunk.len() == CHUNK && !send(&mut chunk) {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        send(&mut chunk);
    }
}

fn read_document(path: &Path) -> Result<ParsedDocument, Rejection> {
    let reject = |reason: String, pointer: String| Rejection {
        path: path.to_owned(),
        reason,
        pointer,
    };
    let bytes =
        std::fs::read(path).map_err(|err| reject(format!("cannot read the file: {err}"), String::new()))?;
    parse_document(&bytes).map_err(|err| reject(err.reason, err.pointer))
}

/// The document of `source` that `parsed` read, to store as ingested at `ingested_at`
/// (by `ingest`, and by `import` for a mirror bundle's records).
pub fn new_evidence(parsed: ParsedDocument, source: &SourceName, ingested_at: DateTime<Utc>) -> NewEvidence {
    NewEvidence {
        source: source.clone(),
        kind: parsed.kind,
        format: parsed.format,
        id: parsed.id,
        modified: parsed.modified,
        aliases: parsed.aliases,
        digest: parsed.digest,
        document: parsed.canonical,
        ingested_at,
    }
}

async fn store_batch(
    store: &dyn Store,
    tenant: &TenantId,
    batch: &mut Vec<NewEvidence>,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcomes = store.ingest(tenant, batch).await.context("storing evidence")?;
    for outcome in outcomes {
        match outcome {
            IngestOutcome::Inserted { .. } => report.inserted += 1,
            IngestOutcome::Replaced { .. } => report.replaced += 1,
            IngestOutcome::Unchanged { .. } => report.unchanged += 1,
        }
    }
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use export_core::{SystemClock, Target};
    use export_store_sqlite::SqliteStore;
    use futures::TryStreamExt;

    use super::*;

    fn osv(id: &str) -> String {
        serde_json::json!({"id": id, "modified": "2025-01-01T00:00:00Z", "summary": "s"}).to_string()
    }

    /// Ids, in order, of the snapshot at `watermark`.
    async fn ids_at(store: &dyn Store, tenant: &TenantId, watermark: i64) -> Vec<String> {
        let target = Target::parse("advisory").unwrap();
        let records: Vec<_> = store
            .stream_items(tenant, watermark, &target)
            .try_collect()
            .await
            .unwrap();
        records.into_iter().map(|record| record.id).collect()
    }

    /// Across many chunks and batches, files are stored in the order they are walked,
    /// and rejected and skipped files are reported in that order too, whichever of the
    /// given paths they came from.
    #[tokio::test]
    async fn files_are_stored_and_reported_in_walk_order_across_chunks_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        let mut expected_rejected = Vec::new();
        let mut expected_skipped = Vec::new();
        let mut good = Vec::new();
        let n_files = 2 * BATCH + CHUNK + 7;
        for (folder, range) in [(&first, 0..n_files), (&second, n_files..n_files + 3)] {
            std::fs::create_dir_all(folder.join("sub")).unwrap();
            for file_idx in range {
                let name = folder.join(format!("f{file_idx:05}.json"));
                if file_idx % 97 == 5 {
                    std::fs::write(&name, r#"{"id": "x", "id": "y"}"#).unwrap();
                    expected_rejected.push((name, "/id".to_owned()));
                } else if file_idx % 211 == 3 {
                    let text = folder.join(format!("f{file_idx:05}.txt"));
                    std::fs::write(&text, "notes").unwrap();
                    expected_skipped.push(text);
                } else {
                    // Ids sort against the walk order, so the snapshot shows the order.
                    let id = format!("GO-{:05}", 99_999 - file_idx);
                    std::fs::write(&name, osv(&id)).unwrap();
                    good.push(id);
                }
            }
        }
        let missing = dir.path().join("missing");
        expected_rejected.insert(
            expected_rejected
                .iter()
                .filter(|(path, _)| path.starts_with(&first))
                .count(),
            (missing.clone(), String::new()),
        );

        let store = SqliteStore::open(&dir.path().join("ingest.db")).await.unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let source = SourceName::parse("osv-go").unwrap();
        let paths = [first, missing, second];
        let report = ingest_paths(&store, &SystemClock, &tenant, &source, &paths, IngestMode::Add)
            .await
            .unwrap();

        assert_eq!(report.inserted, good.len() as u64);
        let rejected: Vec<_> = report
            .rejected
            .iter()
            .map(|rejection| (rejection.path.clone(), rejection.pointer.clone()))
            .collect();
        assert_eq!(rejected, expected_rejected);
        assert!(
            report.rejected[0].reason.contains("duplicate key `id`"),
            "{:?}",
            report.rejected[0]
        );
        assert_eq!(report.skipped, expected_skipped);
        for watermark in [1, BATCH - 1, BATCH + 1, good.len()] {
            let mut expected = good[..watermark].to_vec();
            expected.sort();
            assert_eq!(ids_at(&store, &tenant, watermark as i64).await, expected);
        }
    }

    /// A sync whose files span several batches removes exactly the documents that no
    /// batch held, after storing them all.
    #[tokio::test]
    async fn a_sync_across_batches_removes_only_what_no_batch_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ingest.db")).await.unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let source = SourceName::parse("osv-go").unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let n_files = 2 * BATCH + 1;
        for idx in 0..n_files {
            let id = format!("GO-{idx:05}");
            std::fs::write(old.join(format!("{id}.json")), osv(&id)).unwrap();
            // The new state drops every tenth document and adds one.
            if idx % 10 != 0 {
                std::fs::write(new.join(format!("{id}.json")), osv(&id)).unwrap();
            }
        }
        std::fs::write(new.join("GO-99999.json"), osv("GO-99999")).unwrap();
        ingest_paths(&store, &SystemClock, &tenant, &source, &[old], IngestMode::Add)
            .await
            .unwrap();

        let report = ingest_paths(&store, &SystemClock, &tenant, &source, &[new], IngestMode::Sync)
            .await
            .unwrap();
        let dropped = n_files.div_ceil(10) as u64;
        assert_eq!(
            (report.inserted, report.unchanged, report.removed),
            (1, n_files as u64 - dropped, dropped)
        );
        let watermark = store.snapshot_point(&tenant).await.unwrap().watermark;
        assert_eq!(watermark, n_files as i64 + 1 + dropped as i64);
        let mut expected: Vec<String> = (0..n_files)
            .filter(|idx| idx % 10 != 0)
            .map(|idx| format!("GO-{idx:05}"))
            .collect();
        expected.push("GO-99999".to_owned());
        assert_eq!(ids_at(&store, &tenant, watermark).await, expected);
    }
}
