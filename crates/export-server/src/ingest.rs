//! `export-center ingest`: reads evidence files and directories, parses each document,
//! and stores the good ones in batches. A rejected file is reported with its path, the
//! reason and the JSON pointer, and leaves nothing behind.

use std::path::{Path, PathBuf};

use anyhow::Context;
use export_core::{Clock, SourceName, TenantId};
use export_evidence::parse_document;
use export_store::{IngestOutcome, NewEvidence, Store};

/// Documents stored per transaction.
const BATCH: usize = 500;

/// What one ingestion did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub inserted: u64,
    pub replaced: u64,
    pub unchanged: u64,
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

/// Ingests `paths` into `source` of `tenant`: each given file as is, each directory's
/// `.json`, `.yaml` and `.yml` files recursively in sorted order (so ingestion sequences
/// are reproducible). Directories are walked lazily, so memory does not grow with the
/// number of files.
pub async fn ingest_paths(
    store: &dyn Store,
    clock: &dyn Clock,
    tenant: &TenantId,
    source: &SourceName,
    paths: &[PathBuf],
) -> anyhow::Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    for path in paths {
        if !path.exists() {
            report.rejected.push(Rejection {
                path: path.clone(),
                reason: "no such file or directory".to_owned(),
                pointer: String::new(),
            });
            continue;
        }
        for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
            let entry = entry.with_context(|| format!("reading directory {}", path.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let given = entry.depth() == 0;
            let is_evidence = entry
                .path()
                .extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| matches!(ext, "json" | "yaml" | "yml"));
            if !given && !is_evidence {
                report.skipped.push(entry.into_path());
                continue;
            }
            match read_document(entry.path(), source, clock) {
                Ok(item) => batch.push(item),
                Err(rejection) => report.rejected.push(rejection),
            }
            if batch.len() == BATCH {
                store_batch(store, tenant, &mut batch, &mut report).await?;
            }
        }
    }
    store_batch(store, tenant, &mut batch, &mut report).await?;
    Ok(report)
}

fn read_document(path: &Path, source: &SourceName, clock: &dyn Clock) -> Result<NewEvidence, Rejection> {
    let reject = |reason: String, pointer: String| Rejection {
        path: path.to_owned(),
        reason,
        pointer,
    };
    let bytes =
        std::fs::read(path).map_err(|err| reject(format!("cannot read the file: {err}"), String::new()))?;
    let parsed = parse_document(&bytes).map_err(|err| reject(err.reason, err.pointer))?;
    Ok(NewEvidence {
        source: source.clone(),
        kind: parsed.kind,
        format: parsed.format,
        id: parsed.id,
        modified: parsed.modified,
        aliases: parsed.aliases,
        digest: parsed.digest,
        document: parsed.canonical,
        ingested_at: clock.now(),
    })
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
