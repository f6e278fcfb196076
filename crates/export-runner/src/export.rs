//! One export, from a claimed run to its published outputs.

use std::time::{Duration, Instant};

use export_artifacts::{ArtifactKey, ArtifactStore, ArtifactWriter, Written};
use export_core::{
    checksums_txt, json_file_head, json_file_tail, ErrorCode, Format, Manifest, ManifestItem,
    ManifestProfile, Sha256Digest, Snapshot, Target, CHECKSUMS_PATH, MANIFEST_PATH,
};
use export_store::{Run, RunOutput, RunWarning, Store};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Why an export stopped before it succeeded.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the run was cancelled")]
    Cancelled,
    #[error("{message}")]
    Failed { code: ErrorCode, message: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// How often progress is written to the store at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Writes every output of `run` and records each as it is published. Returns the
/// warnings of the run (empty targets). The caller finishes the run.
pub async fn execute_export(
    store: &dyn Store,
    artifacts: &ArtifactStore,
    run: &Run,
    cancel: &CancellationToken,
) -> Result<Vec<RunWarning>, ExportError> {
    let tenant = &run.id.tenant;
    let plan = &run.plan;
    let mut warnings = Vec::new();
    let mut items = Vec::new();
    let mut progress = Progress::new(store, run);

    for target in &plan.targets {
        let files = write_target(
            store,
            artifacts,
            run,
            target,
            &plan.formats,
            &mut progress,
            cancel,
        )
        .await?;
        if files.records == 0 {
            warnings.push(RunWarning {
                code: "EMPTY_TARGET".to_owned(),
                target: Some(target.to_string()),
                message: format!("target `{target}` has no items in the snapshot; its files are empty"),
            });
        }
        for (format, written) in files.written {
            let output = RunOutput {
                kind: target.kind.to_string(),
                id: target.to_string(),
                format: format.to_string(),
                path: target.file_name(format),
                sha256: written.sha256,
                bytes: written.bytes,
                media_type: format.media_type().to_owned(),
                records: Some(files.records),
            };
            store
                .add_output(tenant, &run.id, &output)
                .await
                .map_err(anyhow::Error::from)?;
            items.push(ManifestItem {
                kind: output.kind,
                id: output.id,
                format: output.format,
                path: output.path,
                sha256: output.sha256,
                bytes: output.bytes,
                records: files.records,
                media_type: output.media_type,
            });
        }
    }
    progress.flush().await?;

    let manifest = Manifest::new(
        tenant.clone(),
        ManifestProfile {
            id: plan.profile_id.clone(),
            revision: plan.profile_revision.clone(),
        },
        plan.normalized_request(),
        Snapshot {
            watermark: run.watermark,
            items: progress.completed,
        },
        items,
    );
    let manifest_written = publish_fixed(store, artifacts, run, &MANIFEST, manifest.to_bytes()).await?;

    let mut sums: Vec<(&str, Sha256Digest)> = manifest
        .items
        .iter()
        .map(|item| (item.path.as_str(), item.sha256))
        .collect();
    sums.push((MANIFEST_PATH, manifest_written.sha256));
    publish_fixed(store, artifacts, run, &CHECKSUMS, checksums_txt(sums)).await?;

    Ok(warnings)
}

struct TargetFiles {
    records: u64,
    written: Vec<(Format, Written)>,
}

/// Streams the target's snapshot once and renders it into every requested format.
async fn write_target(
    store: &dyn Store,
    artifacts: &ArtifactStore,
    run: &Run,
    target: &Target,
    formats: &[Format],
    progress: &mut Progress<'_>,
    cancel: &CancellationToken,
) -> Result<TargetFiles, ExportError> {
    let mut writers: Vec<(Format, ArtifactWriter)> = Vec::with_capacity(formats.len());
    for &format in formats {
        let key =
            ArtifactKey::for_run_output(&run.id, &target.file_name(format)).map_err(anyhow::Error::from)?;
        let mut writer = artifacts.writer(&key).await.map_err(anyhow::Error::from)?;
        if format == Format::Json {
            writer
                .write(json_file_head())
                .await
                .map_err(anyhow::Error::from)?;
        }
        writers.push((format, writer));
    }

    let result = stream_records(store, run, target, &mut writers, progress, cancel).await;
    let records = match result {
        Ok(records) => records,
        Err(err) => {
            for (_, writer) in writers {
                let _ = writer.abort().await;
            }
            return Err(err);
        }
    };

    let mut written = Vec::with_capacity(writers.len());
    for (format, mut writer) in writers {
        if format == Format::Json {
            writer
                .write(&json_file_tail(target))
                .await
                .map_err(anyhow::Error::from)?;
        }
        let file = writer.finish().await.map_err(anyhow::Error::from)?;
        metrics::counter!("export_bytes_total").increment(file.bytes);
        written.push((format, file));
    }
    Ok(TargetFiles { records, written })
}

async fn stream_records(
    store: &dyn Store,
    run: &Run,
    target: &Target,
    writers: &mut [(Format, ArtifactWriter)],
    progress: &mut Progress<'_>,
    cancel: &CancellationToken,
) -> Result<u64, ExportError> {
    let mut stream = store.stream_items(&run.id.tenant, run.watermark, target);
    let mut line = Vec::with_capacity(64 * 1024);
    let mut records = 0u64;
    while let Some(record) = stream.next().await {
        if cancel.is_cancelled() {
            return Err(ExportError::Cancelled);
        }
        let record = record.map_err(anyhow::Error::from)?;
        line.clear();
        record.write_canonical(&mut line);
        for (format, writer) in writers.iter_mut() {
            match format {
                Format::Ndjson => {
                    line.push(b'\n');
                    writer.write(&line).await.map_err(anyhow::Error::from)?;
                    line.pop();
                }
                Format::Json => {
                    if records > 0 {
                        writer.write(b",").await.map_err(anyhow::Error::from)?;
                    }
                    writer.write(&line).await.map_err(anyhow::Error::from)?;
                }
            }
        }
        records += 1;
        progress.advance().await?;
    }
    Ok(records)
}

/// An output that is not a data file: its type, id, format, path and media type are fixed.
struct FixedOutput {
    name: &'static str,
    format: &'static str,
    path: &'static str,
    media_type: &'static str,
}

const MANIFEST: FixedOutput = FixedOutput {
    name: "manifest",
    format: "json",
    path: MANIFEST_PATH,
    media_type: "application/json",
};
const CHECKSUMS: FixedOutput = FixedOutput {
    name: "checksums",
    format: "txt",
    path: CHECKSUMS_PATH,
    media_type: "text/plain; charset=utf-8",
};

/// Stores `bytes` as the fixed output and records it.
async fn publish_fixed(
    store: &dyn Store,
    artifacts: &ArtifactStore,
    run: &Run,
    fixed: &FixedOutput,
    bytes: Vec<u8>,
) -> Result<Written, ExportError> {
    let key = ArtifactKey::for_run_output(&run.id, fixed.path).map_err(anyhow::Error::from)?;
    let written = artifacts
        .put(&key, bytes.into())
        .await
        .map_err(anyhow::Error::from)?;
    metrics::counter!("export_bytes_total").increment(written.bytes);
    let output = RunOutput {
        kind: fixed.name.to_owned(),
        id: fixed.name.to_owned(),
        format: fixed.format.to_owned(),
        path: fixed.path.to_owned(),
        sha256: written.sha256,
        bytes: written.bytes,
        media_type: fixed.media_type.to_owned(),
        records: None,
    };
    store
        .add_output(&run.id.tenant, &run.id, &output)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(written)
}

/// Counts completed items and writes them to the store at most every
/// `PROGRESS_INTERVAL`, so progress is live without a write per item.
struct Progress<'a> {
    store: &'a dyn Store,
    run: &'a Run,
    completed: u64,
    last_flush: Instant,
}

impl<'a> Progress<'a> {
    fn new(store: &'a dyn Store, run: &'a Run) -> Self {
        Self {
            store,
            run,
            completed: 0,
            last_flush: Instant::now(),
        }
    }

    async fn advance(&mut self) -> Result<(), ExportError> {
        self.completed += 1;
        metrics::counter!("export_items_total").increment(1);
        if self.last_flush.elapsed() >= PROGRESS_INTERVAL {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ExportError> {
        self.last_flush = Instant::now();
        let total = self.run.items_total.max(self.completed);
        self.store
            .set_progress(&self.run.id.tenant, &self.run.id, self.completed, total)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(())
    }
}
