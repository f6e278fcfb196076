//! `RunView`: what the checks see of a run, built from a directory or a bundle file: the
//! bytes of the fixed files, the digest and size of every other file, and every file found
//! (for the files-not-in-the-manifest check). Building it is the only place that reads the
//! target.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use export_core::{Sha256Digest, CHECKSUMS_PATH, MANIFEST_DSSE_PATH, MANIFEST_PATH, PROVENANCE_PATH};
use walkdir::WalkDir;

use crate::archive::{names_bundle, read_bundle, safe_relative, HashingReader, Inventory, BUNDLE_NAMES};
use crate::report::{plural, Findings, Report, EXIT_CHECKSUM, EXIT_ERROR};
use crate::{Limits, VerifyOptions};

/// The files read whole, into memory.
const READ_WHOLE: [&str; 3] = [MANIFEST_PATH, MANIFEST_DSSE_PATH, CHECKSUMS_PATH];

/// A file's SHA-256 and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    pub(crate) digest: Sha256Digest,
    pub(crate) size: u64,
}

/// Why a file could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileProblem {
    Missing,
    Unsafe(String),
    Unreadable(String),
}

/// Where a file of the run is, if it can be checked at all.
pub(crate) enum Located {
    File(FileFacts),
    /// A digest known without a size (the decrypted bundle, hashed while decrypting).
    Digest(Sha256Digest),
    /// In an encrypted bundle that was not decrypted.
    Unavailable,
}

/// A file found in the target: its path in the run, and the bundle that holds it (`None`
/// for a file of the directory itself).
pub(crate) struct Found {
    pub(crate) path: String,
    pub(crate) within: Option<String>,
}

/// What is being verified.
#[derive(Default)]
pub(crate) struct RunView {
    /// Every file of the run found: path → digest and size, or why they are unknown.
    files: BTreeMap<String, Result<FileFacts, FileProblem>>,
    /// The bytes of `manifest.json`, `manifest.dsse.json` and `checksums.txt`, where found.
    fixed: BTreeMap<String, Vec<u8>>,
    /// False when the fixed files are sealed in a bundle that could not be opened.
    pub(crate) has_run_files: bool,
    pub(crate) found: Vec<Found>,
    /// The bundle file (the target, or the one in the directory), for its provenance subject.
    pub(crate) bundle: Option<(String, Result<FileFacts, FileProblem>)>,
    /// The decrypted bundle's file name (`bundle.tar.zst`) and digest.
    pub(crate) plain_bundle: Option<(String, Sha256Digest)>,
    pub(crate) provenance: Option<PathBuf>,
    /// Why the data files were not checked, when they were not.
    pub(crate) data_unavailable: Option<String>,
    /// Whether the target is a bundle file rather than a directory.
    pub(crate) target_is_bundle: bool,
}

impl RunView {
    /// Where `path`, as the manifest, checksums or a provenance subject names it, is found.
    pub(crate) fn locate(&self, path: &str) -> Result<Located, FileProblem> {
        if let Some((name, facts)) = &self.bundle {
            if names_bundle(path, name) {
                return facts.clone().map(Located::File);
            }
        }
        if let Some((name, digest)) = &self.plain_bundle {
            if name == path {
                return Ok(Located::Digest(*digest));
            }
        }
        safe_relative(path).map_err(|reason| FileProblem::Unsafe(reason.into()))?;
        match self.files.get(path) {
            Some(found) => found.clone().map(Located::File),
            None if !self.has_run_files || self.data_unavailable.is_some() => Ok(Located::Unavailable),
            None => Err(FileProblem::Missing),
        }
    }

    /// The bytes of a fixed file (`manifest.json`, `manifest.dsse.json`, `checksums.txt`).
    pub(crate) fn fixed(&self, name: &str) -> Result<&[u8], FileProblem> {
        if let Some(bytes) = self.fixed.get(name) {
            return Ok(bytes);
        }
        match self.files.get(name) {
            Some(Err(problem)) => Err(problem.clone()),
            _ => Err(FileProblem::Missing),
        }
    }

    fn add_inventory(&mut self, inventory: &Inventory, bundle: &str) {
        for (path, facts) in &inventory.entries {
            self.files.insert(path.clone(), Ok(*facts));
            self.found.push(Found {
                path: path.clone(),
                within: Some(bundle.to_owned()),
            });
        }
        for (path, bytes) in &inventory.fixed {
            self.fixed.entry(path.clone()).or_insert_with(|| bytes.clone());
        }
    }
}

/// Works out what the target holds, reading a bundle (decrypting it when needed) without
/// extracting it. Problems with the target or its bundle are reported as the `target` and
/// `bundle` checks.
pub(crate) fn prepare(options: &VerifyOptions, report: &mut Report) -> Option<RunView> {
    let target = &options.target;
    let metadata = match fs::metadata(target) {
        Ok(metadata) => metadata,
        Err(err) => {
            report.fail(
                "target",
                EXIT_ERROR,
                format!("cannot read {}: {err}", target.display()),
            );
            return None;
        }
    };
    let mut view = if metadata.is_dir() {
        from_directory(target, options, report)
    } else {
        from_bundle_file(target, options, report)
    };
    view.provenance = match &options.provenance {
        Some(path) => Some(path.clone()),
        None => {
            let beside = if metadata.is_dir() {
                Some(target.join(PROVENANCE_PATH))
            } else {
                target.parent().map(|parent| parent.join(PROVENANCE_PATH))
            };
            beside.filter(|path| path.exists())
        }
    };
    Some(view)
}

fn from_directory(dir: &Path, options: &VerifyOptions, report: &mut Report) -> RunView {
    let mut view = RunView {
        has_run_files: true,
        ..RunView::default()
    };
    list_directory(dir, &options.limits, &mut view, report);

    let top_level = |suffix: &str| {
        view.found
            .iter()
            .map(|found| found.path.as_str())
            .find(|path| !path.contains('/') && path.ends_with(suffix))
            .map(str::to_owned)
    };
    if let Some(age_name) = top_level(".age") {
        open_encrypted_bundle(dir, &age_name, options, &mut view, report);
    } else if let Some(name) = BUNDLE_NAMES.iter().find(|name| view.files.contains_key(**name)) {
        view.bundle = Some(((*name).to_owned(), view.files[*name].clone()));
        check_bundle_in_directory(dir, name, &options.limits, &mut view, report);
    }
    view
}

/// Hashes every file under `dir` (reading the fixed files whole) without following links:
/// anything but a regular file is recorded as unsafe.
fn list_directory(dir: &Path, limits: &Limits, view: &mut RunView, report: &mut Report) {
    for entry in WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                report.fail(
                    "target",
                    EXIT_ERROR,
                    format!("cannot list {}: {err}", dir.display()),
                );
                return;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        if view.found.len() >= limits.max_entries {
            report.fail(
                "target",
                EXIT_ERROR,
                format!(
                    "{} holds more than {} files (raise it with --max-entries)",
                    dir.display(),
                    limits.max_entries
                ),
            );
            return;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let path = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let facts = if relative.to_str().is_none() {
            Err(FileProblem::Unsafe("its name is not UTF-8".into()))
        } else if !entry.file_type().is_file() {
            Err(FileProblem::Unsafe(
                "not a regular file (a link, a device or a FIFO)".into(),
            ))
        } else if READ_WHOLE.contains(&path.as_str()) {
            match read_capped(entry.path(), limits.max_fixed_bytes) {
                Ok(bytes) => {
                    let facts = FileFacts {
                        digest: Sha256Digest::of(&bytes),
                        size: bytes.len() as u64,
                    };
                    view.fixed.insert(path.clone(), bytes);
                    Ok(facts)
                }
                Err(problem) => Err(problem),
            }
        } else {
            hash_file(entry.path())
        };
        view.files.insert(path.clone(), facts);
        view.found.push(Found { path, within: None });
    }
}

/// An encrypted bundle in a directory: with the identity its entries are the data files, and
/// the ones also in the clear must be the same.
fn open_encrypted_bundle(
    dir: &Path,
    age_name: &str,
    options: &VerifyOptions,
    view: &mut RunView,
    report: &mut Report,
) {
    view.bundle = Some((age_name.to_owned(), view.files[age_name].clone()));
    let Some(identity) = &options.identity else {
        report.skip(
            "bundle",
            format!("data files not checked: {age_name} is encrypted (pass --identity to decrypt it)"),
        );
        view.data_unavailable = Some("the bundle is encrypted".to_owned());
        return;
    };
    let inventory = match read_bundle(
        &dir.join(age_name),
        age_name,
        Some(identity),
        &options.limits,
        None,
    ) {
        Ok(inventory) => inventory,
        Err(err) => {
            report.fail("bundle", err.exit_code(), err.to_string());
            view.data_unavailable = Some(format!("{age_name} could not be opened"));
            return;
        }
    };
    let mut findings = Findings::default();
    for (path, sealed) in &inventory.entries {
        if matches!(view.files.get(path), Some(Ok(clear)) if clear != sealed) {
            findings.problem(
                EXIT_CHECKSUM,
                format!("{path} in {age_name} differs from the one in the clear"),
            );
        }
    }
    for name in READ_WHOLE {
        if view.files.contains_key(name) && !inventory.entries.contains_key(name) {
            findings.problem(EXIT_CHECKSUM, format!("{age_name} has no {name}"));
        }
    }
    let summary = format!(
        "decrypted {age_name}: {}; the bundled manifest, envelope and checksums match those in the clear",
        plural(inventory.entries.len(), "entry", "entries")
    );
    report.findings("bundle", findings, summary);
    view.add_inventory(&inventory, age_name);
    view.plain_bundle = inventory
        .plain_digest
        .map(|digest| (inventory.plain_name.clone(), digest));
}

/// A plaintext bundle beside the files: it must hold what the directory holds.
fn check_bundle_in_directory(
    dir: &Path,
    name: &str,
    limits: &Limits,
    view: &mut RunView,
    report: &mut Report,
) {
    let inventory = match read_bundle(&dir.join(name), name, None, limits, None) {
        Ok(inventory) => inventory,
        Err(err) => {
            report.fail("bundle", err.exit_code(), err.to_string());
            return;
        }
    };
    let mut findings = Findings::default();
    for (entry, inside) in &inventory.entries {
        match view.files.get(entry) {
            Some(Ok(beside)) if beside != inside => findings.problem(
                EXIT_CHECKSUM,
                format!("{entry} in {name} differs from the one in the directory"),
            ),
            Some(Ok(_)) => {}
            None => findings.warning(format!("{entry} is in {name} but not in the directory")),
            Some(Err(problem)) => findings.file_problem(entry, problem),
        }
    }
    for required in [MANIFEST_PATH, CHECKSUMS_PATH] {
        if !inventory.entries.contains_key(required) {
            findings.problem(EXIT_CHECKSUM, format!("{name} has no {required}"));
        }
    }
    if view.files.contains_key(MANIFEST_DSSE_PATH) && !inventory.entries.contains_key(MANIFEST_DSSE_PATH) {
        findings.problem(EXIT_CHECKSUM, format!("{name} has no {MANIFEST_DSSE_PATH}"));
    }
    if inventory.entries.contains_key(PROVENANCE_PATH) {
        findings.warning(format!("{name} holds {PROVENANCE_PATH}, which belongs beside it"));
    }
    let summary = format!(
        "{name}: {} match the directory",
        plural(inventory.entries.len(), "entry", "entries")
    );
    report.findings("bundle", findings, summary);
    // The directory's own files are what the checks look at; the bundle's entries only join
    // the files found, so that an entry the manifest does not name is caught.
    view.found.extend(inventory.entries.into_keys().map(|path| Found {
        path,
        within: Some(name.to_owned()),
    }));
}

fn from_bundle_file(file: &Path, options: &VerifyOptions, report: &mut Report) -> RunView {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut view = RunView {
        bundle: Some((name.clone(), hash_file(file))),
        data_unavailable: Some(format!("{name} could not be opened")),
        target_is_bundle: true,
        ..RunView::default()
    };
    match read_bundle(file, &name, options.identity.as_deref(), &options.limits, None) {
        Ok(inventory) => {
            let verb = if inventory.plain_digest.is_some() {
                "decrypted and read"
            } else {
                "read"
            };
            report.ok(
                "bundle",
                format!(
                    "{verb} {name}: {} (nothing extracted)",
                    plural(inventory.entries.len(), "entry", "entries")
                ),
            );
            view.add_inventory(&inventory, &name);
            view.plain_bundle = inventory
                .plain_digest
                .map(|digest| (inventory.plain_name.clone(), digest));
            view.has_run_files = true;
            view.data_unavailable = None;
        }
        Err(err) => {
            if matches!(err, crate::VerifyError::NeedsIdentity { .. }) {
                view.data_unavailable = Some("the bundle is encrypted".to_owned());
            }
            report.fail("bundle", err.exit_code(), err.to_string());
        }
    }
    view
}

/// A whole file, refused past `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, FileProblem> {
    let file = File::open(path).map_err(|err| FileProblem::Unreadable(err.to_string()))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|err| FileProblem::Unreadable(err.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(FileProblem::Unreadable(format!("it is over {limit} bytes")));
    }
    Ok(bytes)
}

fn hash_file(path: &Path) -> Result<FileFacts, FileProblem> {
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => FileProblem::Missing,
        _ => FileProblem::Unreadable(err.to_string()),
    })?;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 16, file));
    let size =
        io::copy(&mut reader, &mut io::sink()).map_err(|err| FileProblem::Unreadable(err.to_string()))?;
    Ok(FileFacts {
        digest: reader.digest(),
        size,
    })
}
