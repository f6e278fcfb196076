//! One export, from a claimed run to its published outputs:
//!
//! 1. data files: the snapshot of each target streamed once into every format;
//! 2. `manifest.json`, its DSSE envelope `manifest.dsse.json`, and `checksums.txt`;
//! 3. the reproducible bundle of all of these (age-encrypted when asked);
//! 4. `provenance.dsse.json`, the one run-specific output, naming the bundle too.
//!
//! An encrypted run never stores a plaintext data file: the data files are only hashed
//! in step 1 and rendered again from the same snapshot straight into the encrypted
//! bundle in step 3.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use export_artifacts::{ArtifactKey, ArtifactStore, ArtifactWriter, Written};
use export_core::EvidenceRecord;
use export_core::{
    checksums_txt, json_file_head, json_file_tail, ErrorCode, Format, Manifest, ManifestItem,
    ManifestProfile, OutputKind, Sha256Digest, Snapshot, Target, CHECKSUMS_PATH, MANIFEST_DSSE_PATH,
    MANIFEST_PATH, PROVENANCE_PATH,
};
use export_distribution::ObjectPublisher;
use export_oci::OciPublisher;
use export_signing::{
    provenance_statement, sign_envelope, Keyring, ProvenanceInput, SigningKey, IN_TOTO_PAYLOAD_TYPE,
    MANIFEST_PAYLOAD_TYPE,
};
use export_store::{Run, RunOutput, RunWarning, Store, StoreError};
use futures::stream::BoxStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::bundle::{write_bundle, BundleSource};
use crate::events::EventSink;

/// The builder named in provenance statements.
pub(crate) const BUILDER_ID: &str = "https://export-center.dev/builder/export-center";

/// Why an export stopped before it succeeded.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the run was cancelled")]
    Cancelled,
    #[error("{message}")]
    Failed {
        code: ErrorCode,
        message: String,
        /// When a retry may succeed (a registry that was down, say).
        retry_after_seconds: Option<u64>,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ExportError {
    /// A failure that retrying the same request will not cure.
    pub(crate) fn failed(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Failed {
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }
}

pub(crate) fn internal(err: impl Into<anyhow::Error>) -> ExportError {
    ExportError::Internal(err.into())
}

/// What an export needs besides the run.
#[derive(Clone)]
pub struct ExportContext {
    pub store: Arc<dyn Store>,
    pub artifacts: ArtifactStore,
    pub keyring: Keyring,
    pub max_bundle_bytes: u64,
    pub events: EventSink,
    /// Pushes runs whose distribution is `oci`.
    pub oci: OciPublisher,
    /// Uploads runs whose distribution is `object`.
    pub object: Option<ObjectPublisher>,
}

/// How often progress is written to the store at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// What a finished export hands back to the worker that finishes the run.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// Empty targets and the like.
    pub warnings: Vec<RunWarning>,
    /// Where the run was published beyond the artifact store (OCI `host/repo@sha256:…`).
    pub published_ref: Option<String>,
}

/// Writes every output of `run`, records each as it is published, then distributes the
/// run as its plan asks. The caller finishes the run.
pub async fn execute_export(
    ctx: &ExportContext,
    run: &Run,
    cancel: &CancellationToken,
) -> Result<Exported, ExportError> {
    let tenant = &run.id.tenant;
    let plan = &run.plan;
    let encrypted = plan.encryption.enabled;
    // Key files are read on a blocking thread (SPEC §17).
    let (keyring, keyed_run) = (ctx.keyring.clone(), run.clone());
    let (signing_key, recipients) = tokio::task::spawn_blocking(move || run_keys(&keyring, &keyed_run))
        .await
        .map_err(internal)??;

    // 1. Data files.
    let mut warnings = Vec::new();
    let mut items = Vec::new();
    let mut progress = Progress::new(ctx, run);
    let file_formats: Vec<Format> = plan
        .formats
        .iter()
        .copied()
        .filter(|format| format.per_target())
        .collect();
    let data_targets = if file_formats.is_empty() {
        &[][..]
    } else {
        &plan.targets[..]
    };
    for target in data_targets {
        let files = write_target(ctx, run, target, &file_formats, !encrypted, &mut progress, cancel).await?;
        if files.records == 0 {
            warnings.push(RunWarning {
                code: "EMPTY_TARGET".to_owned(),
                target: Some(target.to_string()),
                message: format!("target `{target}` has no items in the snapshot; its files are empty"),
            });
        }
        for (format, written) in files.written {
            let output = RunOutput {
                kind: OutputKind::Data(target.kind),
                id: target.to_string(),
                format: format.to_string(),
                path: target.file_name(format),
                sha256: written.sha256,
                bytes: written.bytes,
                media_type: format.media_type().to_owned(),
                records: Some(files.records),
            };
            if !encrypted {
                record_output(ctx, run, &output).await?;
            }
            items.push(manifest_item(output));
        }
    }
    // 1b. A mirror bundle's own files.
    if let Some(mirror) = &plan.mirror {
        items.extend(
            crate::mirror::write_mirror_files(ctx, run, mirror)
                .await?
                .into_iter()
                .map(manifest_item),
        );
    }
    // 1c. The Trivy database of the advisory targets.
    if plan.trivy_db() {
        let counted = data_targets.is_empty();
        let (output, left_out) =
            crate::trivy::write_trivy_db(ctx, run, counted.then_some(&mut progress), cancel).await?;
        // Never encrypted: the plan refuses `trivy-db` with encryption.
        record_output(ctx, run, &output).await?;
        warnings.extend(left_out);
        items.push(manifest_item(output));
    }
    progress.flush().await?;

    // 2. Manifest, envelope, checksums.
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
    let manifest_bytes = manifest.to_bytes();
    let mut sums: Vec<(String, Sha256Digest)> = manifest
        .items
        .iter()
        .map(|item| (item.path.clone(), item.sha256))
        .collect();
    let mut bundled: Vec<BundleSource> = manifest
        .items
        .iter()
        .map(|item| BundleSource {
            path: item.path.clone(),
            size: item.bytes,
            rendered: None,
        })
        .collect();
    if encrypted {
        for source in &mut bundled {
            source.rendered = plan
                .data_files()
                .find(|(target, format)| target.file_name(*format) == source.path)
                .map(|(target, format)| (target.clone(), format));
        }
    }
    let manifest_written = publish_fixed(ctx, run, &MANIFEST, manifest_bytes.clone(), None).await?;
    sums.push((MANIFEST_PATH.to_owned(), manifest_written.sha256));
    bundled.push(BundleSource::stored(MANIFEST_PATH, manifest_written.bytes));
    if let Some(key) = &signing_key {
        let envelope = sign_envelope(key, MANIFEST_PAYLOAD_TYPE, &manifest_bytes).envelope_bytes();
        let written = publish_fixed(ctx, run, &MANIFEST_DSSE, envelope, None).await?;
        sums.push((MANIFEST_DSSE_PATH.to_owned(), written.sha256));
        bundled.push(BundleSource::stored(MANIFEST_DSSE_PATH, written.bytes));
    }
    let checksums = checksums_txt(sums.iter().map(|(path, digest)| (path.as_str(), *digest)));
    let written = publish_fixed(ctx, run, &CHECKSUMS, checksums, None).await?;
    bundled.push(BundleSource::stored(CHECKSUMS_PATH, written.bytes));

    // 3. Bundle.
    let mut subjects: Vec<(String, Sha256Digest)> = manifest
        .items
        .iter()
        .map(|item| (item.path.clone(), item.sha256))
        .collect();
    subjects.push((MANIFEST_PATH.to_owned(), manifest_written.sha256));
    if plan.bundle.enabled {
        bundled.sort_by(|a, b| a.path.cmp(&b.path));
        let (path, written) = write_bundle(ctx, run, plan.bundle.format, bundled, recipients, cancel).await?;
        subjects.push((path, written.sha256));
    }

    // 4. Provenance.
    if let Some(key) = &signing_key {
        let statement = provenance_statement(&ProvenanceInput {
            run_id: run.id.to_string(),
            builder_id: BUILDER_ID.to_owned(),
            builder_version: env!("CARGO_PKG_VERSION").to_owned(),
            external_parameters: plan.normalized_request(),
            watermark: run.watermark,
            started_on: run.started_at.unwrap_or(run.created_at),
            finished_on: Utc::now(),
            subjects,
        });
        let envelope = sign_envelope(key, IN_TOTO_PAYLOAD_TYPE, &statement).envelope_bytes();
        publish_fixed(ctx, run, &PROVENANCE, envelope, None).await?;
    }

    // 5. Distribution beyond our own artifact store.
    let published_ref = tokio::select! {
        published = crate::distribute::distribute(ctx, run) => published?,
        () = cancel.cancelled() => return Err(ExportError::Cancelled),
    };
    Ok(Exported {
        warnings,
        published_ref,
    })
}

/// The manifest's item for an output the manifest lists.
pub(crate) fn manifest_item(output: RunOutput) -> ManifestItem {
    ManifestItem {
        kind: output.kind.to_string(),
        id: output.id,
        format: output.format,
        path: output.path,
        sha256: output.sha256,
        bytes: output.bytes,
        records: output.records.unwrap_or_default(),
        media_type: output.media_type,
    }
}

/// The run's signing key and, when it is encrypted, its age recipients.
fn run_keys(
    keyring: &Keyring,
    run: &Run,
) -> Result<(Option<SigningKey>, Option<Vec<age::x25519::Recipient>>), ExportError> {
    let plan = &run.plan;
    let signing_key = match (&plan.signing.enabled, &plan.signing.key_ref) {
        (true, Some(key_ref)) => Some(keyring.signing_key(&run.id.tenant, key_ref).map_err(|err| {
            ExportError::failed(
                ErrorCode::RequestInvalid,
                format!("the signing key cannot be used: {err}"),
            )
        })?),
        _ => None,
    };
    let recipients = if plan.encryption.enabled {
        Some(age_recipients(keyring, run)?)
    } else {
        None
    };
    Ok((signing_key, recipients))
}

fn age_recipients(keyring: &Keyring, run: &Run) -> Result<Vec<age::x25519::Recipient>, ExportError> {
    let plan = &run.plan;
    let mut texts = plan.encryption.recipients.clone();
    if let Some(kms_key) = &plan.encryption.kms_key {
        let recipient = keyring.age_recipient(&run.id.tenant, kms_key).map_err(|err| {
            ExportError::failed(
                ErrorCode::RequestInvalid,
                format!("the encryption key cannot be used: {err}"),
            )
        })?;
        texts.push(recipient);
    }
    texts
        .iter()
        .map(|text| {
            text.parse::<age::x25519::Recipient>().map_err(|err| {
                ExportError::failed(
                    ErrorCode::RequestInvalid,
                    format!("`{text}` is not an age X25519 recipient: {err}"),
                )
            })
        })
        .collect()
}

struct TargetFiles {
    records: u64,
    written: Vec<(Format, Written)>,
}

/// Where a data file's bytes go: the artifact store, or (for an encrypted run) only
/// through the hash that goes into the manifest.
enum DataSink {
    Stored(Box<ArtifactWriter>),
    Hashed { hasher: Sha256, bytes: u64 },
}

impl DataSink {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), ExportError> {
        match self {
            Self::Stored(writer) => writer.write(chunk).await.map_err(internal),
            Self::Hashed { hasher, bytes } => {
                hasher.update(chunk);
                *bytes += chunk.len() as u64;
                Ok(())
            }
        }
    }

    async fn finish(self) -> Result<Written, ExportError> {
        match self {
            Self::Stored(writer) => writer.finish().await.map_err(internal),
            Self::Hashed { hasher, bytes } => Ok(Written {
                sha256: hasher.into(),
                bytes,
            }),
        }
    }

    async fn abort(self) {
        if let Self::Stored(writer) = self {
            let _ = writer.abort().await;
        }
    }
}

/// Streams the target's snapshot once and renders it into every requested format.
async fn write_target(
    ctx: &ExportContext,
    run: &Run,
    target: &Target,
    formats: &[Format],
    store_files: bool,
    progress: &mut Progress<'_>,
    cancel: &CancellationToken,
) -> Result<TargetFiles, ExportError> {
    let mut sinks: Vec<(Format, DataSink)> = Vec::with_capacity(formats.len());
    for &format in formats {
        let sink = if store_files {
            let key = ArtifactKey::for_run_output(&run.id, &target.file_name(format)).map_err(internal)?;
            DataSink::Stored(Box::new(ctx.artifacts.writer(&key).await.map_err(internal)?))
        } else {
            DataSink::Hashed {
                hasher: Sha256::new(),
                bytes: 0,
            }
        };
        sinks.push((format, sink));
    }

    let mut renderer = Renderer::new(target);
    let mut stream = target_records(ctx, run, target);
    let mut failure = None;
    'records: while let Some(record) = stream.next().await {
        if cancel.is_cancelled() {
            failure = Some(ExportError::Cancelled);
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                failure = Some(internal(err));
                break;
            }
        };
        renderer.render(&record);
        for (format, sink) in sinks.iter_mut() {
            for part in renderer.chunk(*format) {
                if part.is_empty() {
                    continue;
                }
                if let Err(err) = sink.write(part).await {
                    failure = Some(err);
                    break 'records;
                }
            }
        }
        if let Err(err) = progress.advance().await {
            failure = Some(err);
            break;
        }
    }
    drop(stream);
    if let Some(err) = failure {
        for (_, sink) in sinks {
            sink.abort().await;
        }
        return Err(err);
    }

    let mut written = Vec::with_capacity(sinks.len());
    for (format, mut sink) in sinks {
        sink.write(&renderer.tail(format)).await?;
        let file = sink.finish().await?;
        metrics::counter!("export_bytes_total").increment(file.bytes);
        written.push((format, file));
    }
    Ok(TargetFiles {
        records: renderer.records,
        written,
    })
}

/// The records of `target` that its data files hold: the run's snapshot, or for a delta
/// mirror what changed between its base and the run's snapshot (SPEC §15).
pub(crate) fn target_records<'a>(
    ctx: &'a ExportContext,
    run: &'a Run,
    target: &'a Target,
) -> BoxStream<'a, Result<EvidenceRecord, StoreError>> {
    let tenant = &run.id.tenant;
    match run.plan.mirror_base() {
        Some(base) => ctx
            .store
            .stream_changes(tenant, base.watermark, run.watermark, target),
        None => ctx.store.stream_items(tenant, run.watermark, target),
    }
}

/// Renders records into the bytes of each format: `ndjson` lines, and the `json`
/// document's head, comma-separated items and tail. A record is rendered once, as its
/// `ndjson` line; its `json` item is the same bytes without the newline.
pub(crate) struct Renderer<'a> {
    target: &'a Target,
    records: u64,
    /// The last record's canonical JSON and a newline.
    line: Vec<u8>,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(target: &'a Target) -> Self {
        Self {
            target,
            records: 0,
            line: Vec::with_capacity(64 * 1024),
        }
    }

    pub(crate) fn render(&mut self, record: &export_core::EvidenceRecord) {
        self.line.clear();
        record.write_canonical(&mut self.line);
        self.line.push(b'\n');
        self.records += 1;
    }

    /// The bytes of the last record in `format`, in two parts: what comes before the
    /// record (the `json` file's head or a comma), and the record. A `trivy-db` has no
    /// per-record bytes (it is no data file of a target: `write_target` is given
    /// per-target formats only).
    pub(crate) fn chunk(&self, format: Format) -> [&[u8]; 2] {
        match format {
            Format::Ndjson => [&[], &self.line],
            Format::Json => {
                let before: &[u8] = if self.records == 1 { json_file_head() } else { b"," };
                [before, &self.line[..self.line.len() - 1]]
            }
            Format::TrivyDb => [&[], &[]],
        }
    }

    pub(crate) fn tail(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Ndjson | Format::TrivyDb => Vec::new(),
            Format::Json if self.records == 0 => {
                let mut out = json_file_head().to_vec();
                out.extend_from_slice(&json_file_tail(self.target));
                out
            }
            Format::Json => json_file_tail(self.target),
        }
    }
}

/// An output that is not a data file: its type, id, format, path and media type are fixed.
pub(crate) struct FixedOutput {
    pub(crate) kind: OutputKind,
    pub(crate) id: &'static str,
    pub(crate) format: &'static str,
    pub(crate) path: &'static str,
    pub(crate) media_type: &'static str,
}

const MANIFEST: FixedOutput = FixedOutput {
    kind: OutputKind::Manifest,
    id: "manifest",
    format: "json",
    path: MANIFEST_PATH,
    media_type: "application/json",
};
const MANIFEST_DSSE: FixedOutput = FixedOutput {
    kind: OutputKind::Manifest,
    id: "manifest.dsse",
    format: "dsse",
    path: MANIFEST_DSSE_PATH,
    media_type: "application/vnd.dsse+json",
};
const CHECKSUMS: FixedOutput = FixedOutput {
    kind: OutputKind::Checksums,
    id: "checksums",
    format: "txt",
    path: CHECKSUMS_PATH,
    media_type: "text/plain; charset=utf-8",
};
const PROVENANCE: FixedOutput = FixedOutput {
    kind: OutputKind::Provenance,
    id: "provenance",
    format: "dsse",
    path: PROVENANCE_PATH,
    media_type: "application/vnd.dsse+json",
};

/// Stores `bytes` as the fixed output and records it (with `records`, the lines of an
/// `ndjson` file).
pub(crate) async fn publish_fixed(
    ctx: &ExportContext,
    run: &Run,
    fixed: &FixedOutput,
    bytes: Vec<u8>,
    records: Option<u64>,
) -> Result<RunOutput, ExportError> {
    let key = ArtifactKey::for_run_output(&run.id, fixed.path).map_err(internal)?;
    let written = ctx.artifacts.put(&key, bytes.into()).await.map_err(internal)?;
    metrics::counter!("export_bytes_total").increment(written.bytes);
    let output = RunOutput {
        kind: fixed.kind,
        id: fixed.id.to_owned(),
        format: fixed.format.to_owned(),
        path: fixed.path.to_owned(),
        sha256: written.sha256,
        bytes: written.bytes,
        media_type: fixed.media_type.to_owned(),
        records,
    };
    record_output(ctx, run, &output).await?;
    Ok(output)
}

/// Records a published output and announces it on the run's stream.
pub(crate) async fn record_output(
    ctx: &ExportContext,
    run: &Run,
    output: &RunOutput,
) -> Result<(), ExportError> {
    ctx.store
        .add_output(&run.id.tenant, &run.id, output)
        .await
        .map_err(internal)?;
    ctx.events.artifact_ready(&run.id, output).await;
    Ok(())
}

/// Counts completed items and writes them to the store at most every
/// `PROGRESS_INTERVAL`, so progress is live without a write per item. The
/// `export_items_total` metric is added to as often, and once more when it is dropped.
pub(crate) struct Progress<'a> {
    ctx: &'a ExportContext,
    run: &'a Run,
    completed: u64,
    /// How many of `completed` are in `export_items_total`.
    counted: u64,
    last_flush: Instant,
}

impl<'a> Progress<'a> {
    fn new(ctx: &'a ExportContext, run: &'a Run) -> Self {
        Self {
            ctx,
            run,
            completed: 0,
            counted: 0,
            last_flush: Instant::now(),
        }
    }

    pub(crate) async fn advance(&mut self) -> Result<(), ExportError> {
        self.completed += 1;
        if self.last_flush.elapsed() >= PROGRESS_INTERVAL {
            self.flush().await?;
        }
        Ok(())
    }

    fn count(&mut self) {
        metrics::counter!("export_items_total").increment(self.completed - self.counted);
        self.counted = self.completed;
    }

    /// Writes the count to the run and its stream: at most every `PROGRESS_INTERVAL`,
    /// which keeps progress events under the contract's 4 per second.
    async fn flush(&mut self) -> Result<(), ExportError> {
        self.count();
        self.last_flush = Instant::now();
        let total = self.run.items_total.max(self.completed);
        let run_id = &self.run.id;
        self.ctx
            .store
            .set_progress(&run_id.tenant, run_id, self.completed, total)
            .await
            .map_err(internal)?;
        self.ctx.events.progress(run_id, self.completed, total).await;
        Ok(())
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.count();
    }
}
