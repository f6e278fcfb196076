//! `export-center import` (SPEC §15): a sealed site applies a mirror bundle carried across
//! the air gap to its own store, offline.
//!
//! The bundle is first copied to a private temporary file, so that what is verified is
//! what is applied. Then, over that copy:
//!
//! 1. the archive is read with the checks of `verify`, keeping its small files
//!    (`manifest.json`, `mirror.json`, `tombstones.ndjson`), so that a damaged archive is
//!    told as one (exit 2);
//! 2. `export-verify` checks everything `export-center verify` does, with the given keys as
//!    the only trusted ones (every file named by the signed manifest, and nothing else),
//!    and the chain rule of `export_core::check_chain` decides whether the bundle continues
//!    the tenant's imports;
//! 3. the data files are read once more, line by line, on a blocking thread, and handed to
//!    `Store::apply_mirror_import`, which applies everything in one transaction. Each line
//!    must be exactly the export record Export Center writes for the document it holds,
//!    and each file must have the manifest's digest, or the transaction is abandoned.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ingest::new_evidence;
use chrono::{DateTime, Utc};
use export_core::{
    check_chain, ChainError, ChainStep, Clock, EvidenceRecord, Kind, Manifest, MirrorDocument, OutputKind,
    Sha256Digest, SourceName, TenantId, Tombstone, MANIFEST_PATH, MIRROR_PATH, TOMBSTONES_PATH,
};
use export_store::{MirrorImport, NewEvidence, NewMirrorImport, Store, StoreError};
use export_verify::{read_files, render_text, Limits, VerifyError, VerifyOptions, EXIT_CHECKSUM, EXIT_ERROR};
use futures::stream::{BoxStream, StreamExt};
use serde::Deserialize;

/// Exit code of a bundle that does not continue the tenant's chain.
pub const EXIT_CHAIN: u8 = 4;

/// Items read from the bundle ahead of the store, at most.
const ITEMS_AHEAD: usize = 512;

/// What to import, and with which keys.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub bundle: PathBuf,
    /// The only keys whose signature is trusted.
    pub keys: Vec<PathBuf>,
    pub limits: Limits,
}

/// What an import came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    Applied(MirrorImport),
    /// The bundle is the one last applied; nothing changed.
    AlreadyApplied(MirrorImport),
}

/// Why a bundle was not applied; `exit_code` is the command's (SPEC §15).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `export-verify`'s verdict, exit 2 (integrity), 3 (signature) or 1.
    #[error("the bundle does not verify:\n{report}")]
    Verification { exit_code: u8, report: String },
    /// The bundle verified, but what it holds cannot be applied as it is (exit 2).
    #[error("{0}")]
    Integrity(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ImportError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Verification { exit_code, .. } => *exit_code,
            Self::Integrity(_) => EXIT_CHECKSUM,
            Self::Chain(_) => EXIT_CHAIN,
            Self::Other(_) => EXIT_ERROR,
        }
    }
}

fn other(err: impl Into<anyhow::Error>) -> ImportError {
    ImportError::Other(err.into())
}

/// Imports the bundle of `options` into `tenant`'s evidence; `progress` is told how many
/// items have been read as the data files are applied.
pub async fn import_bundle(
    store: &dyn Store,
    clock: &dyn Clock,
    tenant: &TenantId,
    options: &ImportOptions,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<Imported, ImportError> {
    let (copy, limits, keys) = (
        private_copy(&options.bundle)?,
        options.limits,
        options.keys.clone(),
    );
    let path = copy.path();
    let parts = tokio::task::spawn_blocking(move || {
        // Read first, so that a damaged archive is told as such (exit 2).
        let small_files = read_small_files(&path, &limits)?;
        let verdict = export_verify::verify(&VerifyOptions {
            target: path.clone(),
            keys,
            limits,
            ..VerifyOptions::default()
        });
        if !verdict.verified() {
            return Err(ImportError::Verification {
                exit_code: verdict.exit_code,
                report: render_text(&verdict),
            });
        }
        BundleParts::parse(small_files)
    })
    .await
    .map_err(other)??;
    parts.check_tenant(tenant)?;

    let last = store
        .mirror_imports(tenant, 1)
        .await
        .map_err(other)?
        .into_iter()
        .next();
    let step = check_chain(
        &parts.mirror,
        &parts.manifest_digest,
        last.as_ref().map(MirrorImport::state).as_ref(),
        clock.now(),
    )?;
    if let (ChainStep::AlreadyApplied, Some(last)) = (step, &last) {
        return Ok(Imported::AlreadyApplied(last.clone()));
    }

    let import = NewMirrorImport {
        mode: parts.mirror.mode,
        watermark: parts.mirror.watermark,
        manifest_digest: parts.manifest_digest,
        snapshot_time: timestamp(&parts.mirror.snapshot_time)?,
        expires_at: timestamp(&parts.mirror.expires_at)?,
        imported_at: clock.now(),
    };
    let failure = Arc::new(Mutex::new(None));
    let items = read_items(
        copy,
        parts.data_files(),
        limits,
        import.imported_at,
        failure.clone(),
        progress,
    );
    let applied = store
        .apply_mirror_import(
            tenant,
            last.map(|last| last.generation),
            &import,
            items,
            &parts.tombstones,
        )
        .await;
    if let Some(problem) = failure
        .lock()
        .expect("the reader does not panic holding it")
        .take()
    {
        return Err(problem);
    }
    match applied {
        Ok(applied) => Ok(Imported::Applied(applied)),
        Err(StoreError::Conflict {
            what: "mirror item",
            detail,
        }) => Err(ImportError::Integrity(detail)),
        Err(err) => Err(other(err)),
    }
}

/// The private copies live in directories whose names begin with this, then the
/// importing process's id.
const COPY_PREFIX: &str = ".export-center-import-";

/// A private copy of the bundle, under the bundle's own name (which says what kind of
/// archive it is), alone in a directory of its own: `verify` looks beside a bundle for its
/// provenance, and must find nothing there. The directories killed imports left are
/// removed first.
struct PrivateCopy {
    dir: tempfile::TempDir,
    name: String,
}

impl PrivateCopy {
    fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }
}

fn private_copy(bundle: &Path) -> Result<PrivateCopy, ImportError> {
    let name = bundle
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| other(anyhow::anyhow!("{} is not a file", bundle.display())))?;
    let metadata = std::fs::metadata(bundle)
        .map_err(|err| other(anyhow::anyhow!("cannot read {}: {err}", bundle.display())))?;
    if !metadata.is_file() {
        return Err(other(anyhow::anyhow!(
            "{} is not a regular file",
            bundle.display()
        )));
    }
    remove_stale_copies(&std::env::temp_dir());
    let dir = tempfile::Builder::new()
        .prefix(&format!("{COPY_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(other)?;
    let copy = PrivateCopy { dir, name };
    std::fs::copy(bundle, copy.path())
        .map_err(|err| other(anyhow::anyhow!("cannot copy {}: {err}", bundle.display())))?;
    Ok(copy)
}

/// Removes the private copies in `dir` whose import process is gone: an import killed
/// mid-apply (kill -9, power loss) cannot remove its own. Without `/proc` nothing is
/// removed, so a running import's copy is never taken for a stale one.
fn remove_stale_copies(dir: &Path) {
    let (Ok(entries), true) = (std::fs::read_dir(dir), Path::new("/proc/self").exists()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(COPY_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn timestamp(text: &str) -> Result<DateTime<Utc>, ImportError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|err| ImportError::Integrity(format!("{MIRROR_PATH}: `{text}`: {err}")))
}

/// The small files of a verified bundle, read whole.
struct BundleParts {
    manifest: Manifest,
    manifest_digest: Sha256Digest,
    mirror: MirrorDocument,
    tombstones: Vec<Tombstone>,
}

/// Reads the archive once with the checks of `verify` and keeps the bytes of its small
/// files; a corrupt, truncated or unsafe archive is an integrity problem (it was damaged
/// on its way), one past the limits or unreadable another.
fn read_small_files(path: &Path, limits: &Limits) -> Result<BTreeMap<String, Vec<u8>>, ImportError> {
    let mut kept = BTreeMap::new();
    let mut keep = |name: &str, data: &mut dyn Read| {
        if [MANIFEST_PATH, MIRROR_PATH, TOMBSTONES_PATH].contains(&name) {
            let mut bytes = Vec::new();
            data.take(limits.max_fixed_bytes + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > limits.max_fixed_bytes {
                return Err(std::io::Error::other(format!(
                    "{name} is over {} bytes, the most the import holds in memory",
                    limits.max_fixed_bytes
                )));
            }
            kept.insert(name.to_owned(), bytes);
        }
        Ok(())
    };
    match read_files(path, limits, &mut keep) {
        Ok(_) => Ok(kept),
        Err(err @ (VerifyError::Corrupt { .. } | VerifyError::Refused { .. })) => {
            Err(ImportError::Integrity(err.to_string()))
        }
        Err(err) => Err(other(err)),
    }
}

impl BundleParts {
    fn parse(mut kept: BTreeMap<String, Vec<u8>>) -> Result<Self, ImportError> {
        let manifest_bytes = kept.remove(MANIFEST_PATH).unwrap_or_default();
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|err| ImportError::Integrity(format!("{MANIFEST_PATH}: {err}")))?;
        // The files read whole must be the ones the signed manifest names.
        for (path, bytes) in &kept {
            let listed = manifest
                .items
                .iter()
                .find(|item| &item.path == path)
                .map(|item| item.sha256);
            if path != MANIFEST_PATH && listed != Some(Sha256Digest::of(bytes)) {
                return Err(ImportError::Integrity(format!(
                    "{path} is not the file the manifest signed"
                )));
            }
        }
        let mirror = kept.remove(MIRROR_PATH).ok_or_else(|| {
            other(anyhow::anyhow!(
                "the bundle holds no {MIRROR_PATH}: it is no mirror bundle (make it with a profile that sets `mirror`)"
            ))
        })?;
        let mirror = MirrorDocument::parse(&mirror)
            .map_err(|reason| ImportError::Integrity(format!("{MIRROR_PATH}: {reason}")))?;
        let tombstones = parse_tombstones(kept.remove(TOMBSTONES_PATH).as_deref().unwrap_or_default())?;
        Ok(Self {
            manifest_digest: Sha256Digest::of(&manifest_bytes),
            manifest,
            mirror,
            tombstones,
        })
    }

    /// A bundle of another tenant is a mistake of the operator's, not of the bundle.
    fn check_tenant(&self, tenant: &TenantId) -> Result<(), ImportError> {
        for (what, theirs) in [
            (MANIFEST_PATH, &self.manifest.tenant),
            (MIRROR_PATH, &self.mirror.tenant),
        ] {
            if theirs != tenant {
                return Err(other(anyhow::anyhow!(
                    "the bundle is tenant `{theirs}`'s ({what}), not `{tenant}`'s: check --tenant"
                )));
            }
        }
        Ok(())
    }

    /// The data files, by path: their kind and the manifest's digest.
    fn data_files(&self) -> BTreeMap<String, (Kind, Sha256Digest)> {
        self.manifest
            .items
            .iter()
            .filter_map(|item| match OutputKind::parse(&item.kind) {
                Some(OutputKind::Data(kind)) => Some((item.path.clone(), (kind, item.sha256))),
                _ => None,
            })
            .collect()
    }
}

/// The lines of `tombstones.ndjson`, each a canonical tombstone.
fn parse_tombstones(bytes: &[u8]) -> Result<Vec<Tombstone>, ImportError> {
    let mut tombstones = Vec::new();
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let bad = |reason: String| {
            ImportError::Integrity(format!("{TOMBSTONES_PATH} line {}: {reason}", index + 1))
        };
        let tombstone: Tombstone = serde_json::from_slice(line).map_err(|err| bad(err.to_string()))?;
        if tombstone.to_line() != line {
            return Err(bad("not a canonical tombstone line".to_owned()));
        }
        tombstones.push(tombstone);
    }
    Ok(tombstones)
}

/// One line of a data file, as read; `document` is kept as written, and the other fields
/// are checked by writing the record again.
#[derive(Deserialize)]
struct RecordLine<'a> {
    #[serde(borrow)]
    document: &'a serde_json::value::RawValue,
    source: String,
}

/// The document of one line of a data file of `kind`, which must be exactly the record
/// Export Center writes for it (so the sealed site exports the same bytes).
fn parse_record(line: &[u8], kind: Kind, ingested_at: DateTime<Utc>) -> Result<NewEvidence, String> {
    let record: RecordLine<'_> = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    let source = SourceName::parse(&record.source).map_err(|err| err.to_string())?;
    let parsed =
        export_evidence::parse_document(record.document.get().as_bytes()).map_err(|err| err.to_string())?;
    if parsed.kind != kind {
        return Err(format!("a {} document in the {kind} file", parsed.kind));
    }
    let evidence = new_evidence(parsed, &source, ingested_at);
    let mut expected = Vec::with_capacity(line.len());
    record_of(&evidence).write_canonical(&mut expected);
    if expected != line.strip_suffix(b"\n").unwrap_or(line) {
        return Err("not the export record of the document it holds (a field differs)".to_owned());
    }
    Ok(evidence)
}

fn record_of(evidence: &NewEvidence) -> EvidenceRecord {
    EvidenceRecord {
        kind: evidence.kind,
        source: evidence.source.clone(),
        format: evidence.format,
        id: evidence.id.clone(),
        modified: evidence.modified.clone(),
        digest: evidence.digest,
        document: evidence.document.clone(),
    }
}

/// Streams the documents of the data files of the bundle `copy`, read on a blocking
/// thread. A problem is put in `failure` and ends the stream with an error, which makes
/// the store abandon the import; so does a file whose digest is not the manifest's, which
/// is found once the file is read, before the stream ends.
fn read_items(
    copy: PrivateCopy,
    data_files: BTreeMap<String, (Kind, Sha256Digest)>,
    limits: Limits,
    ingested_at: DateTime<Utc>,
    failure: Arc<Mutex<Option<ImportError>>>,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> BoxStream<'static, Result<NewEvidence, StoreError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(ITEMS_AHEAD);
    // Set by the reader once it has read and checked every data file: a reader that
    // stopped otherwise (a panic) closes the channel early, and the stream must then end
    // with an error, or the store would commit part of the bundle.
    let completed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = completed.clone();
    tokio::task::spawn_blocking(move || {
        let mut read = 0u64;
        // Set when the store stopped reading: it failed, and says why itself.
        let mut store_gone = false;
        let mut visit = |name: &str, data: &mut dyn Read| -> std::io::Result<()> {
            let Some((kind, _)) = data_files.get(name) else {
                return Ok(());
            };
            let mut lines = BufReader::with_capacity(1 << 20, data);
            let mut line = Vec::new();
            for number in 1.. {
                line.clear();
                if lines.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                let evidence = parse_record(&line, *kind, ingested_at)
                    .map_err(|reason| std::io::Error::other(format!("{name} line {number}: {reason}")))?;
                if sender.blocking_send(Ok(evidence)).is_err() {
                    store_gone = true;
                    return Err(std::io::Error::other("the store stopped reading"));
                }
                read += 1;
                if read.is_multiple_of(1_000) {
                    progress(read);
                }
            }
            Ok(())
        };
        let outcome = read_files(&copy.path(), &limits, &mut visit);
        if store_gone {
            return;
        }
        let problem = match outcome {
            Err(err @ (VerifyError::Corrupt { .. } | VerifyError::Refused { .. })) => {
                Some(ImportError::Integrity(err.to_string()))
            }
            Err(err) => Some(other(err)),
            Ok(digests) => data_files.iter().find_map(|(path, (_, expected))| {
                let found = digests.get(path).map(|(digest, _)| digest);
                (found != Some(expected))
                    .then(|| ImportError::Integrity(format!("{path} is not the file the manifest signed")))
            }),
        };
        if let Some(problem) = problem {
            let detail = problem.to_string();
            *failure.lock().expect("nothing panics holding it") = Some(problem);
            let _ = sender.blocking_send(Err(StoreError::corrupt("mirror bundle", detail)));
        } else {
            progress(read);
            done.store(true, std::sync::atomic::Ordering::Release);
        }
    });
    futures::stream::unfold(Some(receiver), move |receiver| {
        let completed = completed.clone();
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(item) => Some((item, Some(receiver))),
                None if completed.load(std::sync::atomic::Ordering::Acquire) => None,
                None => Some((
                    Err(StoreError::corrupt(
                        "mirror bundle",
                        "the bundle's reader stopped before its end",
                    )),
                    None,
                )),
            }
        }
    })
    .boxed()
}

/// The text `import --status` prints: the last applied bundle, then the history.
pub fn render_status(tenant: &TenantId, imports: &[MirrorImport]) -> String {
    let Some(last) = imports.first() else {
        return format!("{tenant}: nothing imported yet (the first bundle must be a full one)\n");
    };
    let mut out = format!(
        "{tenant}: generation {} ({} bundle), watermark {}, manifest {}\n  snapshot {}, expires {}, imported {}\n",
        last.generation,
        last.mode,
        last.watermark,
        last.manifest_digest,
        export_core::format_timestamp(last.snapshot_time),
        export_core::format_timestamp(last.expires_at),
        export_core::format_timestamp(last.imported_at),
    );
    out.push_str("history (newest first):\n");
    for import in imports {
        out.push_str(&format!(
            "  {:>4}  {:<5}  watermark {:<8}  {}  {} added, {} changed, {} unchanged, {} removed\n",
            import.generation,
            import.mode.as_str(),
            import.watermark,
            export_core::format_timestamp(import.imported_at),
            import.added,
            import.changed,
            import.unchanged,
            import.removed,
        ));
    }
    out
}

/// `import --status --json`: the same, as JSON.
pub fn status_json(tenant: &TenantId, imports: &[MirrorImport]) -> serde_json::Value {
    serde_json::json!({
        "tenant": tenant,
        "last": imports.first().map(import_json),
        "history": imports.iter().map(import_json).collect::<Vec<_>>(),
    })
}

/// One applied bundle as JSON, for `--status --json` and the readiness details.
pub fn import_json(import: &MirrorImport) -> serde_json::Value {
    serde_json::json!({
        "generation": import.generation,
        "mode": import.mode,
        "watermark": import.watermark,
        "manifestDigest": import.manifest_digest,
        "snapshotTime": export_core::format_timestamp(import.snapshot_time),
        "expiresAt": export_core::format_timestamp(import.expires_at),
        "importedAt": export_core::format_timestamp(import.imported_at),
        "added": import.added,
        "changed": import.changed,
        "unchanged": import.unchanged,
        "removed": import.removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(evidence: &NewEvidence) -> Vec<u8> {
        let mut out = Vec::new();
        record_of(evidence).write_canonical(&mut out);
        out.push(b'\n');
        out
    }

    fn osv(id: &str) -> NewEvidence {
        let document =
            format!(r#"{{"id":"{id}","modified":"2024-01-01T00:00:00Z","schema_version":"1.6.0"}}"#);
        let parsed = export_evidence::parse_document(document.as_bytes()).unwrap();
        new_evidence(
            parsed,
            &SourceName::parse("osv-go").unwrap(),
            DateTime::<Utc>::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_record_line_gives_back_its_document_exactly() {
        let evidence = osv("GO-2024-0001");
        assert_eq!(
            parse_record(&line(&evidence), Kind::Advisory, DateTime::<Utc>::UNIX_EPOCH).unwrap(),
            evidence
        );
    }

    #[test]
    fn a_line_that_is_not_the_record_of_its_document_is_refused() {
        let text = String::from_utf8(line(&osv("GO-2024-0001"))).unwrap();
        let at = DateTime::<Utc>::UNIX_EPOCH;
        // Another digest, another id field, or non-canonical spacing: each says so.
        let digest = osv("GO-2024-0001").digest.to_string();
        for bad in [
            text.replace(&digest, &format!("sha256:{}", "0".repeat(64))),
            text.replace(
                "\"id\":\"GO-2024-0001\",\"kind\"",
                "\"id\":\"GO-2024-0002\",\"kind\"",
            ),
            text.replace(",\"kind\"", ", \"kind\""),
        ] {
            assert!(parse_record(bad.as_bytes(), Kind::Advisory, at).is_err(), "{bad}");
        }
        assert!(parse_record(text.as_bytes(), Kind::Vex, at)
            .unwrap_err()
            .contains("in the vex file"));
        assert!(parse_record(
            b"{\"document\":{},\"source\":\"x\",\"extra\":1}",
            Kind::Advisory,
            at
        )
        .is_err());
    }

    #[test]
    fn tombstone_lines_must_be_canonical() {
        let good = b"{\"id\":\"GO-1\",\"kind\":\"advisory\",\"source\":\"osv-go\"}\n";
        assert_eq!(parse_tombstones(good).unwrap().len(), 1);
        let spaced = b"{\"id\": \"GO-1\",\"kind\":\"advisory\",\"source\":\"osv-go\"}\n";
        assert!(parse_tombstones(spaced)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        assert!(parse_tombstones(b"").unwrap().is_empty());
    }
}
