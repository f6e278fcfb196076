//! Step 3 of an export: the reproducible bundle of every output so far, built on a
//! blocking thread (compression and encryption are CPU work) and streamed into the
//! artifact store under the size cap. An encrypted run's data files are rendered again
//! from the snapshot straight into the encrypted bundle, never stored in plaintext.

use std::io::{Read, Write};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use export_artifacts::{ArtifactKey, Written};
use export_bundle::BundleWriter;
use export_core::{BundleFormat, ErrorCode, Format, OutputKind, Target};
use export_store::{Run, RunOutput};
use futures::{StreamExt, TryStreamExt};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;

use crate::export::{internal, record_output, ExportContext, ExportError, Renderer};

/// One entry of the bundle: a stored output, or a data file rendered again from the
/// snapshot (encrypted runs).
pub(crate) struct BundleSource {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) rendered: Option<(Target, Format)>,
}

impl BundleSource {
    pub(crate) fn stored(path: &str, size: u64) -> Self {
        Self {
            path: path.to_owned(),
            size,
            rendered: None,
        }
    }
}

/// Builds the bundle on a blocking thread (compression and encryption are CPU work)
/// while this task streams its bytes into the artifact store, enforcing the size cap.
pub(crate) async fn write_bundle(
    ctx: &ExportContext,
    run: &Run,
    format: BundleFormat,
    sources: Vec<BundleSource>,
    recipients: Option<Vec<age::x25519::Recipient>>,
    cancel: &CancellationToken,
) -> Result<(String, Written), ExportError> {
    let path = match recipients {
        Some(_) => format!("{}.age", format.file_name()),
        None => format.file_name().to_owned(),
    };
    let key = ArtifactKey::for_run_output(&run.id, &path).map_err(internal)?;
    let mtime = run
        .snapshot_at
        .map(|at: DateTime<Utc>| at.timestamp().max(0) as u64)
        .unwrap_or(0);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let handle = tokio::runtime::Handle::current();
    let builder_ctx = ctx.clone();
    let builder_run = run.clone();
    let builder = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let out = ChannelWriter::new(tx);
        match recipients {
            None => {
                let out = append_entries(&handle, &builder_ctx, &builder_run, format, mtime, sources, out)?;
                out.finish()?;
            }
            Some(recipients) => {
                let encryptor =
                    age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))?;
                let encrypted = encryptor.wrap_output(out)?;
                let encrypted = append_entries(
                    &handle,
                    &builder_ctx,
                    &builder_run,
                    format,
                    mtime,
                    sources,
                    encrypted,
                )?;
                encrypted.finish()?.finish()?;
            }
        }
        Ok(())
    });

    let mut writer = ctx.artifacts.writer(&key).await.map_err(internal)?;
    let mut total = 0u64;
    let mut failure = None;
    while let Some(chunk) = rx.recv().await {
        total += chunk.len() as u64;
        if cancel.is_cancelled() {
            failure = Some(ExportError::Cancelled);
            break;
        }
        if total > ctx.max_bundle_bytes {
            failure = Some(ExportError::failed(
                ErrorCode::TooLarge,
                format!(
                    "the bundle is larger than the limit of {} bytes",
                    ctx.max_bundle_bytes
                ),
            ));
            break;
        }
        if let Err(err) = writer.write(&chunk).await {
            failure = Some(internal(err));
            break;
        }
    }
    drop(rx);
    let built = builder.await.map_err(internal)?;
    if let Some(err) = failure {
        let _ = writer.abort().await;
        return Err(err);
    }
    if let Err(err) = built {
        let _ = writer.abort().await;
        return Err(internal(err.context("building the bundle")));
    }
    let written = writer.finish().await.map_err(internal)?;
    metrics::counter!("export_bytes_total").increment(written.bytes);
    let output = RunOutput {
        kind: OutputKind::Bundle,
        id: "bundle".to_owned(),
        format: path.trim_start_matches("bundle.").to_owned(),
        path: path.clone(),
        sha256: written.sha256,
        bytes: written.bytes,
        media_type: bundle_media_type(&path).to_owned(),
        records: None,
    };
    record_output(ctx, run, &output).await?;
    Ok((path, written))
}

fn bundle_media_type(path: &str) -> &'static str {
    if path.ends_with(".age") {
        "application/octet-stream"
    } else if path.ends_with(".zst") {
        "application/zstd"
    } else if path.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/zip"
    }
}

/// Appends every source, in order, on the blocking thread.
fn append_entries<W: Write>(
    handle: &tokio::runtime::Handle,
    ctx: &ExportContext,
    run: &Run,
    format: BundleFormat,
    mtime: u64,
    sources: Vec<BundleSource>,
    out: W,
) -> anyhow::Result<W> {
    let mut bundle = BundleWriter::new(format, mtime, out)?;
    for source in sources {
        let reader = handle.block_on(open_source(ctx, run, &source))?;
        bundle.append(&source.path, source.size, reader)?;
    }
    Ok(bundle.finish()?)
}

async fn open_source(
    ctx: &ExportContext,
    run: &Run,
    source: &BundleSource,
) -> anyhow::Result<Box<dyn Read + Send>> {
    let stream = match &source.rendered {
        None => {
            let key = ArtifactKey::for_run_output(&run.id, &source.path)?;
            // Written around the page cache moments ago, so read back around it too.
            let read = ctx.artifacts.get_uncached(&key).await?;
            read.stream.map_err(std::io::Error::other).boxed()
        }
        Some((target, format)) => render_stream(ctx.clone(), run.clone(), target.clone(), *format),
    };
    Ok(Box::new(SyncIoBridge::new(StreamReader::new(stream))))
}

/// The bytes of one data file, rendered again from the run's snapshot.
fn render_stream(
    ctx: ExportContext,
    run: Run,
    target: Target,
    format: Format,
) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut renderer = Renderer::new(&target);
        let mut stream = crate::export::target_records(&ctx, &run, &target);
        while let Some(record) = stream.next().await {
            let chunk = match record {
                Ok(record) => {
                    renderer.render(&record);
                    Ok(Bytes::from(renderer.chunk(format).concat()))
                }
                Err(err) => Err(std::io::Error::other(err)),
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from(renderer.tail(format)))).await;
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

/// A blocking `Write` that hands 256 KiB chunks to the async side.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl ChannelWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the bundle upload stopped"))
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
