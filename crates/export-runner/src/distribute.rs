//! The last step of an export: publishing the run's stored outputs where its plan says
//! (an OCI registry, an object-storage bucket), and the run errors of a failed push,
//! which hold no remote body and no server path.

use std::sync::Arc;

use export_artifacts::ArtifactKey;
use export_core::{
    DistributionType, ErrorCode, OutputKind, PlannedDistribution, MANIFEST_DSSE_PATH, MANIFEST_PATH,
};
use export_distribution::ObjectError;
use export_oci::{BlobOpener, Layer, OciError, RunArtifact, TRIVY_DB_TAG};
use export_store::{Run, RunOutput};
use futures::{StreamExt, TryStreamExt};

use crate::export::{internal, ExportContext, ExportError};

/// How long a client should wait before asking again for a run whose distribution failed.
const DISTRIBUTION_RETRY_AFTER_SECONDS: u64 = 300;

fn distribution_failed(message: String) -> ExportError {
    ExportError::Failed {
        code: ErrorCode::DistributionFailed,
        message,
        retry_after_seconds: Some(DISTRIBUTION_RETRY_AFTER_SECONDS),
    }
}

/// The run error of a failed push. A refused connection is not retried: the rules will
/// refuse it again. Failures of our own side (settings, outputs) are logged and told in
/// general words, so that no server path reaches the tenant.
fn oci_failed(reference: &str, err: OciError) -> ExportError {
    match err {
        OciError::EgressBlocked { refusal, .. } => ExportError::failed(
            ErrorCode::EgressBlocked,
            format!("distribution.ref: pushing to `{reference}` failed: {refusal}"),
        ),
        OciError::Registry { .. } | OciError::Artifact { .. } => {
            distribution_failed(format!("pushing to `{reference}` failed: {err}"))
        }
        OciError::Settings(_) | OciError::Output { .. } => {
            tracing::error!(error = %err, "pushing to {reference} failed");
            distribution_failed(format!(
                "pushing to `{reference}` failed: the server could not read its registry settings or the \
                 run's outputs (see the server log)"
            ))
        }
    }
}

/// Publishes the run's stored outputs where its plan says; returns where they went.
pub(crate) async fn distribute(ctx: &ExportContext, run: &Run) -> Result<Option<String>, ExportError> {
    let distribution = &run.plan.distribution;
    if distribution.kind() == DistributionType::Http {
        return Ok(None);
    }
    let outputs = ctx
        .store
        .get_run(&run.id.tenant, &run.id)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(anyhow::anyhow!("run {} vanished while it ran", run.id)))?
        .outputs;
    match distribution {
        PlannedDistribution::Http => Ok(None),
        PlannedDistribution::Oci { reference: target } => {
            // Checked again here: the run may have been queued under other settings.
            ctx.oci
                .settings()
                .repository_prefixes()
                .check(&run.id.tenant, target)
                .map_err(|reason| {
                    ExportError::failed(ErrorCode::EgressBlocked, format!("distribution.ref: {reason}"))
                })?;
            let layer = |output: &RunOutput| Layer {
                path: output.path.clone(),
                media_type: output.media_type.clone(),
                digest: output.sha256,
                size: output.bytes,
            };
            let manifest = outputs
                .iter()
                .find(|o| o.path == MANIFEST_PATH)
                .ok_or_else(|| internal(anyhow::anyhow!("run {} has no manifest output", run.id)))?;
            let artifact = RunArtifact {
                run_id: run.id.to_string(),
                tenant: run.id.tenant.to_string(),
                manifest_digest: manifest.sha256,
                created: run.snapshot_at.unwrap_or(run.created_at),
                layers: outputs.iter().map(layer).collect(),
                dsse: outputs.iter().find(|o| o.path == MANIFEST_DSSE_PATH).map(layer),
                trivy_db: outputs.iter().find(|o| o.kind == OutputKind::TrivyDb).map(layer),
            };
            // Trivy pulls `:2` from a `--db-repository` that names no tag.
            let default_tag = match artifact.trivy_db {
                Some(_) => TRIVY_DB_TAG.to_owned(),
                None => format!("{:04}", run.id.seq),
            };
            let artifacts = ctx.artifacts.clone();
            let run_id = run.id.clone();
            let open: BlobOpener = Arc::new(move |path: String| {
                let artifacts = artifacts.clone();
                let run_id = run_id.clone();
                Box::pin(async move {
                    let key = ArtifactKey::for_run_output(&run_id, &path).map_err(std::io::Error::other)?;
                    let read = artifacts.get(&key, None).await.map_err(std::io::Error::other)?;
                    Ok(read.stream.map_err(std::io::Error::other).boxed())
                })
            });
            let pushed = ctx
                .oci
                .push(target, &default_tag, &artifact, &open)
                .await
                .map_err(|err| oci_failed(&target.to_string(), err))?;
            tracing::info!(
                "run {} pushed to {} (tag {})",
                run.id,
                pushed.reference,
                pushed.tag
            );
            Ok(Some(pushed.reference))
        }
        PlannedDistribution::Object => {
            let object = ctx.object.as_ref().ok_or_else(|| {
                ExportError::failed(
                    ErrorCode::RequestInvalid,
                    "this server has no object storage configured for `object` distributions",
                )
            })?;
            let paths: Vec<&str> = outputs.iter().map(|o| o.path.as_str()).collect();
            object
                .publish_run(&ctx.artifacts, &run.id, &paths)
                .await
                .map_err(|err| match err {
                    ObjectError::EgressBlocked(refusal) => ExportError::failed(
                        ErrorCode::EgressBlocked,
                        format!("uploading to {} failed: {refusal}", object.location()),
                    ),
                    err => distribution_failed(format!("uploading to {} failed: {err}", object.location())),
                })?;
            Ok(Some(object.run_url(&run.id)))
        }
    }
}
