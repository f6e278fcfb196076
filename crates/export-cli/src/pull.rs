//! `exportctl runs pull`: an OCI-distributed run, from its registry into a directory.

use std::path::Path;

use anyhow::{bail, Context};
use export_api_types::DistributionResponse;
use export_oci::{OciPublisher, OciSettings, RegistrySettings};

use crate::download::Downloaded;

/// Pulls the artifact the distribution names (by digest, so a moved tag cannot change
/// what arrives) into `dir`.
pub(crate) async fn pull(
    distribution: &DistributionResponse,
    dir: &Path,
    insecure: bool,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Vec<Downloaded>> {
    if distribution.kind != "oci" {
        bail!(
            "run {} was distributed as `{}`, not `oci`: use `exportctl runs download`",
            distribution.run_id,
            distribution.kind
        );
    }
    if distribution.status != "published" {
        bail!(
            "run {} is not published yet (distribution status `{}`)",
            distribution.run_id,
            distribution.status
        );
    }
    let reference = distribution
        .reference
        .as_deref()
        .filter(|r| r.contains("@sha256:"))
        .with_context(|| {
            format!(
                "the distribution of {} names no pushed digest",
                distribution.run_id
            )
        })?;
    let registry = reference.split('/').next().unwrap_or_default().to_owned();
    let mut settings = OciSettings::default();
    settings.registries.insert(
        registry,
        RegistrySettings {
            insecure,
            username,
            password: password.map(export_core::Secret::new),
            ..RegistrySettings::default()
        },
    );
    let publisher = OciPublisher::new(settings).map_err(|err| anyhow::anyhow!("{err}"))?;
    let files = publisher
        .pull_run(reference, Some(&distribution.run_id), dir)
        .await
        .with_context(|| format!("pulling {reference}"))?;
    Ok(files
        .into_iter()
        .map(|file| Downloaded {
            path: file.path,
            sha256: file.sha256.to_string(),
            bytes: file.bytes,
        })
        .collect())
}
