//! The `trivy-db` output (SPEC §14): the run's advisory targets, streamed once more from
//! the same snapshot into one Trivy database, built on a blocking thread and stored like
//! a data file.

use chrono::{DateTime, Utc};
use export_artifacts::ArtifactKey;
use export_core::{Format, OutputKind};
use export_store::{Run, RunOutput, RunWarning};
use export_trivy::{TrivyDbBuilder, TrivyDbOptions, TRIVY_DB_MEDIA_TYPE, TRIVY_DB_PATH};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::export::{internal, ExportContext, ExportError, Progress};

/// The database of `run`'s advisory targets, stored under `trivy-db.tar.gz`, and the
/// warnings for what it left out. `progress` counts the records read, for a run that
/// writes no data file to count them.
pub(crate) async fn write_trivy_db(
    ctx: &ExportContext,
    run: &Run,
    mut progress: Option<&mut Progress<'_>>,
    cancel: &CancellationToken,
) -> Result<(RunOutput, Vec<RunWarning>), ExportError> {
    let plan = &run.plan;
    // The snapshot time, so that the database is a function of the snapshot.
    let snapshot_time = run.snapshot_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut builder = TrivyDbBuilder::new(TrivyDbOptions {
        next_update_hours: plan.trivy.next_update_hours,
        ..TrivyDbOptions::new(snapshot_time)
    });
    for target in plan.advisory_targets() {
        let mut stream = ctx.store.stream_items(&run.id.tenant, run.watermark, target);
        while let Some(record) = stream.next().await {
            if cancel.is_cancelled() {
                return Err(ExportError::Cancelled);
            }
            builder.add(&record.map_err(internal)?);
            if let Some(progress) = progress.as_deref_mut() {
                progress.advance().await?;
            }
        }
    }
    let built = tokio::task::spawn_blocking(move || builder.finish())
        .await
        .map_err(internal)?
        .map_err(internal)?;

    let key = ArtifactKey::for_run_output(&run.id, TRIVY_DB_PATH).map_err(internal)?;
    let mut writer = ctx.artifacts.writer(&key).await.map_err(internal)?;
    if let Err(err) = writer.write(&built.tarball).await {
        let _ = writer.abort().await;
        return Err(internal(err));
    }
    let written = writer.finish().await.map_err(internal)?;
    metrics::counter!("export_bytes_total").increment(written.bytes);
    let output = RunOutput {
        kind: OutputKind::TrivyDb,
        id: Format::TrivyDb.to_string(),
        format: Format::TrivyDb.to_string(),
        path: TRIVY_DB_PATH.to_owned(),
        sha256: written.sha256,
        bytes: written.bytes,
        media_type: TRIVY_DB_MEDIA_TYPE.to_owned(),
        records: Some(built.summary.records),
    };
    let warnings = built
        .summary
        .warnings
        .into_iter()
        .map(|warning| RunWarning {
            code: warning.code.as_str().to_owned(),
            target: None,
            message: warning.message,
        })
        .collect();
    Ok((output, warnings))
}
