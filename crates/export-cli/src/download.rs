//! `exportctl runs download`: every output of a run (and the manifest's DSSE envelope)
//! through its signed URL, each written under a temporary name, checked against the
//! sha256 the run reports, then renamed into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use export_api_types::RunStatusResponse;
use futures::StreamExt as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::api::{self, Api};

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Downloaded {
    pub(crate) path: String,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

/// One file to fetch: its name, its signed URL and the digest it must have, if the run
/// status gives one (the DSSE envelope's is in `checksums.txt`).
#[derive(Debug)]
struct Wanted {
    name: String,
    url: String,
    sha256: Option<String>,
}

/// The directory a run downloads into by default: `./<runId with :: replaced by _>`.
pub(crate) fn default_dir(run_id: &str) -> PathBuf {
    PathBuf::from(run_id.replace("::", "_"))
}

pub(crate) async fn download(
    api: &Api,
    run_id: &str,
    dir: &Path,
    only: &[String],
) -> anyhow::Result<Vec<Downloaded>> {
    let status: RunStatusResponse = api.get(&api::run_path(run_id)?).await?;
    match status.status.as_str() {
        "succeeded" => {}
        "queued" | "running" => bail!(
            "run `{run_id}` is {}: wait for it with `exportctl runs watch {run_id}`",
            status.status
        ),
        other => bail!("run `{run_id}` is {other}: it has no outputs to download"),
    }
    let wanted = select(wanted(&status)?, only, run_id)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;

    // Files with a digest in the run status first, so that the envelope can then be
    // checked against the freshly verified checksums.txt.
    let (checked, unchecked): (Vec<Wanted>, Vec<Wanted>) =
        wanted.into_iter().partition(|w| w.sha256.is_some());
    let mut written = Vec::new();
    for file in &checked {
        written.push(fetch(api, dir, file, file.sha256.as_deref()).await?);
    }
    let checksums = read_checksums(&dir.join("checksums.txt"));
    for file in &unchecked {
        let expected = checksums.get(&file.name).cloned();
        written.push(fetch(api, dir, file, expected.as_deref()).await?);
    }
    Ok(written)
}

/// Every output, named by the last segment of its URL's path.
fn wanted(status: &RunStatusResponse) -> anyhow::Result<Vec<Wanted>> {
    let mut wanted = Vec::new();
    for output in &status.outputs {
        wanted.push(Wanted {
            name: file_name(&output.url)?,
            url: output.url.clone(),
            sha256: Some(output.sha256.clone()),
        });
        if let Some(dsse_url) = &output.dsse_url {
            wanted.push(Wanted {
                name: file_name(dsse_url)?,
                url: dsse_url.clone(),
                sha256: None,
            });
        }
    }
    Ok(wanted)
}

fn select(wanted: Vec<Wanted>, only: &[String], run_id: &str) -> anyhow::Result<Vec<Wanted>> {
    if only.is_empty() {
        return Ok(wanted);
    }
    for path in only {
        if !wanted.iter().any(|w| &w.name == path) {
            let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
            bail!(
                "run `{run_id}` has no output `{path}` (it has {})",
                names.join(", ")
            );
        }
    }
    Ok(wanted.into_iter().filter(|w| only.contains(&w.name)).collect())
}

/// The file name of a signed URL, refusing anything that is not a plain name (a server
/// must not be able to write outside the download directory).
fn file_name(url: &str) -> anyhow::Result<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or_default();
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains(['\\', '%', '\0']);
    if !plain {
        bail!("download link with an unusable file name `{name}`");
    }
    Ok(name.to_owned())
}

/// `<hex>  <path>` lines of a `checksums.txt`, as `path → sha256:<hex>`; empty when the
/// file is not there.
fn read_checksums(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(hex, name)| (name.to_owned(), format!("sha256:{}", hex.to_ascii_lowercase())))
        .collect()
}

/// Downloads one file to `.<name>.part`, hashing as it goes, and renames it into place
/// when its digest is `expected` (or, without one, the digest the server announced).
async fn fetch(api: &Api, dir: &Path, file: &Wanted, expected: Option<&str>) -> anyhow::Result<Downloaded> {
    let response = api
        .download(&file.url)
        .await
        .with_context(|| format!("downloading {}", file.name))?;
    let announced = response
        .headers()
        .get("x-content-sha256")
        .and_then(|value| value.to_str().ok())
        .map(|hex| format!("sha256:{}", hex.to_ascii_lowercase()));
    let expected = expected.map(str::to_owned).or(announced);

    let part = dir.join(format!(".{}.part", file.name));
    let result = async {
        let mut out = tokio::fs::File::create(&part)
            .await
            .with_context(|| format!("creating {}", part.display()))?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| api.transport_error(err))?;
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", part.display()))?;
        }
        out.sync_all()
            .await
            .with_context(|| format!("writing {}", part.display()))?;
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(expected) = &expected {
            if !expected.eq_ignore_ascii_case(&digest) {
                bail!(
                    "{}: sha256 mismatch: downloaded {digest}, the run says {expected}",
                    file.name
                );
            }
        }
        let target = dir.join(&file.name);
        tokio::fs::rename(&part, &target)
            .await
            .with_context(|| format!("renaming {} to {}", part.display(), target.display()))?;
        Ok(Downloaded {
            path: file.name.clone(),
            bytes,
            sha256: digest,
        })
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(
            file_name(
                "http://h/export-center/artifacts/export-run::t::d::0001/advisory.ndjson?expires=1&sig=x"
            )
            .unwrap(),
            "advisory.ndjson"
        );
        assert_eq!(file_name("/a/manifest.dsse.json").unwrap(), "manifest.dsse.json");
    }

    #[test]
    fn file_names_that_could_escape_the_directory_are_refused() {
        for url in [
            "http://h/a/..",
            "http://h/a/",
            "http://h/a/.hidden",
            "http://h/a/..%2Fx",
            "http://h/a\\b",
        ] {
            assert!(file_name(url).is_err(), "{url}");
        }
    }

    #[test]
    fn checksums_lines_map_paths_to_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checksums.txt");
        std::fs::write(&path, "ABCD  manifest.json\n0123  manifest.dsse.json\n").unwrap();
        let checksums = read_checksums(&path);
        assert_eq!(checksums["manifest.json"], "sha256:abcd");
        assert_eq!(checksums["manifest.dsse.json"], "sha256:0123");
        assert!(read_checksums(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn only_names_outputs_that_exist() {
        let wanted = || {
            ["a.json", "b.json"]
                .map(|name| Wanted {
                    name: name.to_owned(),
                    url: format!("/x/{name}"),
                    sha256: None,
                })
                .into_iter()
                .collect::<Vec<_>>()
        };
        let picked = select(wanted(), &["b.json".to_owned()], "r").unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name, "b.json");
        let err = select(wanted(), &["c.json".to_owned()], "r").unwrap_err();
        assert_eq!(
            err.to_string(),
            "run `r` has no output `c.json` (it has a.json, b.json)"
        );
    }
}
