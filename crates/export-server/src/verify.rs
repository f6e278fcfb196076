//! `export-center verify`: offline verification of a run's outputs (SPEC §6) — a run directory
//! or a bundle file — against a trusted public key: checksums, manifest items, `rerunHash`,
//! the manifest signature, and the provenance signature and subjects.
//!
//! Every check is reported, even after one has failed, and the exit code is the most severe
//! one: `1` when an operational error prevented checking, else `3` when a signature failed or
//! the key is not trusted, else `2` for a checksum mismatch or a missing file, else `0`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use export_core::{
    rerun_hash, Manifest, Sha256Digest, CHECKSUMS_PATH, MANIFEST_DSSE_PATH, MANIFEST_PATH, MANIFEST_SCHEMA,
    PROVENANCE_PATH,
};
use export_signing::{
    statement_subjects, verify_envelope, DsseEnvelope, SigningError, VerifyingKey, IN_TOTO_PAYLOAD_TYPE,
    MANIFEST_PAYLOAD_TYPE,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Everything checked out.
pub const EXIT_VERIFIED: u8 = 0;
/// A usage or other operational error prevented checking.
pub const EXIT_ERROR: u8 = 1;
/// A checksum mismatch or a missing file.
pub const EXIT_CHECKSUM: u8 = 2;
/// A signature is invalid, missing, or not by the trusted key.
pub const EXIT_SIGNATURE: u8 = 3;

/// What `verify` checks and with what.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyOptions {
    /// A run's output directory, or a bundle file (`bundle.tar.zst`, `bundle.tar.gz`,
    /// `bundle.zip`, `bundle.tar.zst.age`).
    pub target: PathBuf,
    /// The trusted public key (SPKI PEM).
    pub key: PathBuf,
    /// The provenance envelope, when it is not `provenance.dsse.json` in the directory or
    /// beside the bundle file.
    pub provenance: Option<PathBuf>,
    /// An age identity file that decrypts an encrypted bundle.
    pub identity: Option<PathBuf>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Checked and passed.
    Ok,
    /// Passed, with something worth a look (e.g. a data file that is not a provenance subject).
    Warn,
    /// Could not be checked, for a reason that is not itself a failure (e.g. an encrypted
    /// bundle without `--identity`, or no provenance).
    Skip,
    /// Failed; `code` says how.
    Fail,
}

impl CheckStatus {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Skip => "skip",
            Self::Fail => "FAIL",
        }
    }
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `key`, `bundle`, `checksums`, `manifest`, `rerun-hash`, `signature`, `provenance` or
    /// `provenance-subjects`.
    pub name: String,
    /// False only when the check failed.
    pub ok: bool,
    pub status: CheckStatus,
    /// The exit code this check calls for: `0` unless it failed.
    pub code: u8,
    /// What was checked, or everything that was wrong, on one line.
    pub detail: String,
}

/// Every check, and the exit code they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub exit_code: u8,
}

impl Verdict {
    pub fn verified(&self) -> bool {
        self.exit_code == EXIT_VERIFIED
    }
}

/// Verifies `options.target` offline. Never panics: any error becomes a failed check.
pub fn verify(options: &VerifyOptions) -> Verdict {
    match catch_unwind(AssertUnwindSafe(|| Verifier::default().run(options))) {
        Ok(verdict) => verdict,
        Err(_) => {
            let mut report = Report::default();
            report.fail(
                "verify",
                EXIT_ERROR,
                "internal error while verifying (this is a bug)",
            );
            report.finish()
        }
    }
}

/// The human-readable verdict: one line per check, then the result.
pub fn render_text(verdict: &Verdict) -> String {
    let width = verdict
        .checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for check in &verdict.checks {
        out.push_str(&format!(
            "{:<6}{:<width$}  {}\n",
            check.status.label(),
            check.name,
            check.detail
        ));
    }
    let result = match verdict.exit_code {
        EXIT_VERIFIED => "verified".to_owned(),
        code => format!("NOT verified (exit {code}: {})", describe_code(code)),
    };
    out.push_str(&result);
    out.push('\n');
    out
}

fn describe_code(code: u8) -> &'static str {
    match code {
        EXIT_CHECKSUM => "checksum mismatch or missing file",
        EXIT_SIGNATURE => "signature invalid or key not trusted",
        _ => "could not verify",
    }
}

/// How severe an exit code is: an operational error outranks a signature failure, which
/// outranks a checksum failure.
fn severity(code: u8) -> u8 {
    match code {
        EXIT_VERIFIED => 0,
        EXIT_CHECKSUM => 1,
        EXIT_SIGNATURE => 2,
        _ => 3,
    }
}

fn most_severe(a: u8, b: u8) -> u8 {
    if severity(b) > severity(a) {
        b
    } else {
        a
    }
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &str, status: CheckStatus, code: u8, detail: impl Into<String>) {
        let detail: String = detail.into();
        self.checks.push(Check {
            name: name.to_owned(),
            ok: status != CheckStatus::Fail,
            status,
            code: if status == CheckStatus::Fail { code } else { 0 },
            detail: detail.replace(['\n', '\r'], " "),
        });
    }

    fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, CheckStatus::Ok, 0, detail);
    }

    fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, CheckStatus::Skip, 0, detail);
    }

    fn fail(&mut self, name: &str, code: u8, detail: impl Into<String>) {
        self.push(name, CheckStatus::Fail, code, detail);
    }

    /// A check made of many findings: failed when there are problems, warned when there are
    /// only warnings.
    fn findings(&mut self, name: &str, findings: Findings, summary: String) {
        let mut detail = summary;
        if !findings.problems.is_empty() {
            detail = list(&findings.problems);
        }
        if !findings.warnings.is_empty() {
            detail.push_str(&format!("; warning: {}", list(&findings.warnings)));
        }
        if !findings.problems.is_empty() {
            self.fail(name, findings.code, detail);
        } else if !findings.warnings.is_empty() {
            self.push(name, CheckStatus::Warn, 0, detail);
        } else {
            self.ok(name, detail);
        }
    }

    fn finish(self) -> Verdict {
        let exit_code = self
            .checks
            .iter()
            .filter(|check| !check.ok)
            .fold(EXIT_VERIFIED, |code, check| most_severe(code, check.code));
        Verdict {
            checks: self.checks,
            exit_code,
        }
    }
}

/// The problems and warnings one check found.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    warnings: Vec<String>,
    code: u8,
}

impl Findings {
    fn problem(&mut self, code: u8, text: impl Into<String>) {
        self.problems.push(text.into());
        self.code = most_severe(self.code, code);
    }

    fn file_problem(&mut self, path: &str, problem: &FileProblem) {
        match problem {
            FileProblem::Missing => self.problem(EXIT_CHECKSUM, format!("{path} is missing")),
            FileProblem::Unsafe(reason) => {
                self.problem(EXIT_CHECKSUM, format!("refusing path `{path}`: {reason}"))
            }
            FileProblem::Unreadable(err) => self.problem(EXIT_ERROR, format!("cannot read {path}: {err}")),
        }
    }

    fn warning(&mut self, text: impl Into<String>) {
        self.warnings.push(text.into());
    }
}

/// At most eight items joined by `; `, then how many more there are.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > SHOWN {
        out.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    out
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Why a file could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileProblem {
    Missing,
    Unsafe(String),
    Unreadable(String),
}

/// Where a file of the run is, if it can be checked at all.
enum Located {
    File(PathBuf),
    /// A digest known without a file (the decrypted bundle, hashed while decrypting).
    Digest(Sha256Digest),
    /// In an encrypted bundle that was not decrypted.
    Unavailable,
}

/// What is being verified, once a bundle has been extracted or decrypted.
#[derive(Default)]
struct Layout {
    /// Where `manifest.json`, `manifest.dsse.json` and `checksums.txt` are; `None` when they
    /// are sealed in a bundle that could not be opened.
    run_dir: Option<PathBuf>,
    /// Where the data files are; `None` when they are sealed in an encrypted bundle.
    data_dir: Option<PathBuf>,
    /// The bundle file (the target, or the one in the directory), for its provenance subject.
    bundle: Option<(String, PathBuf)>,
    /// The decrypted bundle's file name (`bundle.tar.zst`) and digest.
    plain_bundle: Option<(String, Sha256Digest)>,
    provenance: Option<PathBuf>,
    /// Why the data files were not checked, when they were not.
    data_unavailable: Option<String>,
    /// Keeps extracted files alive until verification is done.
    _scratch: Option<tempfile::TempDir>,
}

impl Layout {
    /// Where `path`, as the manifest, checksums or a provenance subject names it, is found.
    fn locate(&self, path: &str) -> Result<Located, FileProblem> {
        if let Some((name, file)) = &self.bundle {
            if names_bundle(path, name) {
                return Ok(Located::File(file.clone()));
            }
        }
        if let Some((name, digest)) = &self.plain_bundle {
            if name == path {
                return Ok(Located::Digest(*digest));
            }
        }
        let relative = safe_relative(path).map_err(FileProblem::Unsafe)?;
        if matches!(path, MANIFEST_PATH | MANIFEST_DSSE_PATH | CHECKSUMS_PATH) {
            return Ok(match &self.run_dir {
                Some(dir) => Located::File(dir.join(relative)),
                None => Located::Unavailable,
            });
        }
        if let Some(dir) = &self.data_dir {
            return Ok(Located::File(dir.join(relative)));
        }
        // Data files of an encrypted run are only in the bundle; anything else beside the
        // manifest (such as a plaintext bundle) is still checkable.
        if let Some(dir) = &self.run_dir {
            let candidate = dir.join(&relative);
            if candidate.is_file() {
                return Ok(Located::File(candidate));
            }
        }
        Ok(Located::Unavailable)
    }
}

/// The bundle formats a target file can be, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BundleKind {
    TarZst,
    TarGz,
    Zip,
}

impl BundleKind {
    fn of(name: &str) -> Option<Self> {
        if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            Some(Self::TarZst)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if name.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

const BUNDLE_NAMES: [&str; 3] = ["bundle.tar.zst", "bundle.tar.gz", "bundle.zip"];

/// Whether the provenance subject `subject` names the bundle file `file_name`: the same name,
/// or the run's own bundle name (`bundle.tar.zst`, `bundle.zip.age`…) for a bundle of the same
/// kind that was renamed after download.
fn names_bundle(subject: &str, file_name: &str) -> bool {
    if subject == file_name {
        return true;
    }
    let (subject_plain, file_plain) = (
        subject.strip_suffix(".age").unwrap_or(subject),
        file_name.strip_suffix(".age").unwrap_or(file_name),
    );
    BUNDLE_NAMES.contains(&subject_plain)
        && subject.ends_with(".age") == file_name.ends_with(".age")
        && BundleKind::of(subject_plain) == BundleKind::of(file_plain)
}

#[derive(Default)]
struct Verifier {
    report: Report,
    digests: HashMap<PathBuf, Result<(Sha256Digest, u64), FileProblem>>,
}

impl Verifier {
    fn run(mut self, options: &VerifyOptions) -> Verdict {
        let key = self.load_key(&options.key);
        if let Some(layout) = self.prepare(options) {
            if let Some(run_dir) = &layout.run_dir {
                let loaded = load_manifest(run_dir);
                let manifest = loaded.manifest.as_ref().ok();
                self.check_checksums(&layout, manifest);
                self.check_manifest(&layout, &loaded);
                self.check_signature(&layout, key.as_ref(), loaded.bytes.as_deref());
                self.check_provenance(&layout, key.as_ref(), manifest);
            } else {
                self.check_provenance(&layout, key.as_ref(), None);
            }
        }
        self.report.finish()
    }

    fn load_key(&mut self, path: &Path) -> Option<VerifyingKey> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                self.report.fail(
                    "key",
                    EXIT_ERROR,
                    format!("cannot read key file {}: {err}", path.display()),
                );
                return None;
            }
        };
        match VerifyingKey::from_public_key_pem(&text) {
            Ok(key) => {
                self.report.ok(
                    "key",
                    format!(
                        "{} public key {} ({})",
                        key.algorithm(),
                        key.keyid(),
                        path.display()
                    ),
                );
                Some(key)
            }
            Err(err) => {
                let detail = if text.contains("PRIVATE KEY-----") {
                    format!(
                        "{} is a private key: pass the public key (the .pub.pem file) with --key",
                        path.display()
                    )
                } else {
                    format!("{} is not a usable public key: {err}", path.display())
                };
                self.report.fail("key", EXIT_ERROR, detail);
                None
            }
        }
    }

    /// Works out the layout of the target, extracting or decrypting a bundle when needed.
    fn prepare(&mut self, options: &VerifyOptions) -> Option<Layout> {
        let target = &options.target;
        let metadata = match fs::metadata(target) {
            Ok(metadata) => metadata,
            Err(err) => {
                self.report.fail(
                    "target",
                    EXIT_ERROR,
                    format!("cannot read {}: {err}", target.display()),
                );
                return None;
            }
        };
        let mut layout = if metadata.is_dir() {
            self.prepare_directory(target, options)
        } else {
            self.prepare_bundle_file(target, options)
        };
        match &options.provenance {
            Some(path) => layout.provenance = Some(path.clone()),
            None => {
                let beside = if metadata.is_dir() {
                    Some(target.join(PROVENANCE_PATH))
                } else {
                    target.parent().map(|parent| parent.join(PROVENANCE_PATH))
                };
                layout.provenance = beside.filter(|path| path.exists());
            }
        }
        Some(layout)
    }

    fn prepare_directory(&mut self, dir: &Path, options: &VerifyOptions) -> Layout {
        let encrypted = match encrypted_bundles(dir) {
            Ok(found) => found.into_iter().next(),
            Err(err) => {
                self.report.fail(
                    "target",
                    EXIT_ERROR,
                    format!("cannot list {}: {err}", dir.display()),
                );
                None
            }
        };
        let mut layout = Layout {
            run_dir: Some(dir.to_owned()),
            ..Layout::default()
        };

        let Some(age_name) = encrypted else {
            layout.data_dir = Some(dir.to_owned());
            if let Some(name) = BUNDLE_NAMES.iter().find(|name| dir.join(name).is_file()) {
                layout.bundle = Some(((*name).to_owned(), dir.join(name)));
                self.check_bundle_in_directory(dir, name);
            }
            return layout;
        };

        let age_path = dir.join(&age_name);
        layout.bundle = Some((age_name.clone(), age_path.clone()));
        let Some(identity) = &options.identity else {
            self.report.skip(
                "bundle",
                format!("data files not checked: {age_name} is encrypted (pass --identity to decrypt it)"),
            );
            layout.data_unavailable = Some("the bundle is encrypted".to_owned());
            return layout;
        };
        match open_bundle(&age_path, &age_name, Some(identity), true) {
            Ok(opened) => {
                let mut findings = Findings::default();
                for name in [MANIFEST_PATH, MANIFEST_DSSE_PATH, CHECKSUMS_PATH] {
                    let clear = fs::read(dir.join(name));
                    let sealed = fs::read(opened.files.join(name));
                    match (clear, sealed) {
                        (Ok(clear), Ok(sealed)) if clear != sealed => findings.problem(
                            EXIT_CHECKSUM,
                            format!("{name} in {age_name} differs from the one in the clear"),
                        ),
                        (Ok(_), Err(_)) => {
                            findings.problem(EXIT_CHECKSUM, format!("{age_name} has no {name}"))
                        }
                        _ => {}
                    }
                }
                let summary = format!(
                    "decrypted {age_name}: {}; the bundled manifest, envelope and checksums match those in the clear",
                    plural(opened.entries.len(), "entry", "entries")
                );
                self.report.findings("bundle", findings, summary);
                self.remember(&opened);
                layout.data_dir = Some(opened.files.clone());
                layout.plain_bundle = opened
                    .plain_digest
                    .map(|digest| (opened.plain_name.clone(), digest));
                layout._scratch = Some(opened.scratch);
            }
            Err(err) => {
                self.report.fail("bundle", EXIT_ERROR, err);
                layout.data_unavailable = Some(format!("{age_name} could not be opened"));
            }
        }
        layout
    }

    fn prepare_bundle_file(&mut self, file: &Path, options: &VerifyOptions) -> Layout {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut layout = Layout {
            bundle: Some((name.clone(), file.to_owned())),
            data_unavailable: Some(format!("{name} could not be opened")),
            ..Layout::default()
        };
        let encrypted = name.ends_with(".age");
        if BundleKind::of(name.strip_suffix(".age").unwrap_or(&name)).is_none() {
            self.report.fail(
                "bundle",
                EXIT_ERROR,
                format!(
                    "{} is not a bundle: expected a directory or a .tar.zst, .tar.gz, .zip or .tar.zst.age file",
                    file.display()
                ),
            );
            return layout;
        }
        if encrypted && options.identity.is_none() {
            self.report.fail(
                "bundle",
                EXIT_ERROR,
                format!("the bundle is encrypted: pass --identity to decrypt {name}"),
            );
            layout.data_unavailable = Some("the bundle is encrypted".to_owned());
            return layout;
        }
        match open_bundle(file, &name, options.identity.as_deref(), true) {
            Ok(opened) => {
                let verb = if encrypted {
                    "decrypted and extracted"
                } else {
                    "extracted"
                };
                self.report.ok(
                    "bundle",
                    format!(
                        "{verb} {name}: {}",
                        plural(opened.entries.len(), "entry", "entries")
                    ),
                );
                self.remember(&opened);
                layout.run_dir = Some(opened.files.clone());
                layout.data_dir = Some(opened.files.clone());
                layout.plain_bundle = opened
                    .plain_digest
                    .map(|digest| (opened.plain_name.clone(), digest));
                layout.data_unavailable = None;
                layout._scratch = Some(opened.scratch);
            }
            Err(err) => self.report.fail("bundle", EXIT_ERROR, err),
        }
        layout
    }

    /// A plaintext bundle beside the files: it must hold what the directory holds.
    fn check_bundle_in_directory(&mut self, dir: &Path, name: &str) {
        let opened = match open_bundle(&dir.join(name), name, None, false) {
            Ok(opened) => opened,
            Err(err) => {
                self.report.fail("bundle", EXIT_ERROR, err);
                return;
            }
        };
        let mut findings = Findings::default();
        for (entry, inside) in &opened.entries {
            let Ok(relative) = safe_relative(entry) else {
                continue;
            };
            match self.digest(&dir.join(&relative)) {
                Ok(beside) if beside != *inside => findings.problem(
                    EXIT_CHECKSUM,
                    format!("{entry} in {name} differs from the one in the directory"),
                ),
                Ok(_) => {}
                Err(FileProblem::Missing) => {
                    findings.warning(format!("{entry} is in {name} but not in the directory"))
                }
                Err(problem) => findings.file_problem(entry, &problem),
            }
        }
        for required in [MANIFEST_PATH, CHECKSUMS_PATH] {
            if !opened.entries.contains_key(required) {
                findings.problem(EXIT_CHECKSUM, format!("{name} has no {required}"));
            }
        }
        if dir.join(MANIFEST_DSSE_PATH).is_file() && !opened.entries.contains_key(MANIFEST_DSSE_PATH) {
            findings.problem(EXIT_CHECKSUM, format!("{name} has no {MANIFEST_DSSE_PATH}"));
        }
        if opened.entries.contains_key(PROVENANCE_PATH) {
            findings.warning(format!("{name} holds {PROVENANCE_PATH}, which belongs beside it"));
        }
        let summary = format!(
            "{name}: {} match the directory",
            plural(opened.entries.len(), "entry", "entries")
        );
        self.report.findings("bundle", findings, summary);
    }

    /// Records the digests taken while extracting, so the extracted files are not read again.
    fn remember(&mut self, opened: &OpenedBundle) {
        for (path, digest) in &opened.entries {
            if let Ok(relative) = safe_relative(path) {
                self.digests.insert(opened.files.join(relative), Ok(*digest));
            }
        }
    }

    /// Checks every manifest item's file and the `rerunHash`.
    fn check_manifest(&mut self, layout: &Layout, loaded: &LoadedManifest) {
        let manifest = match &loaded.manifest {
            Ok(manifest) => manifest,
            Err((code, detail)) => {
                self.report.fail("manifest", *code, detail.clone());
                return;
            }
        };
        let mut findings = Findings::default();
        let mut checked = 0usize;
        let mut total_bytes = 0u64;
        let mut unchecked = 0usize;
        for item in &manifest.items {
            match layout.locate(&item.path) {
                Err(problem) => findings.file_problem(&item.path, &problem),
                Ok(Located::Unavailable) => unchecked += 1,
                Ok(Located::Digest(digest)) => {
                    if digest != item.sha256 {
                        findings.problem(EXIT_CHECKSUM, format!("{} has sha256 {digest}", item.path));
                    }
                }
                Ok(Located::File(path)) => match self.digest(&path) {
                    Err(problem) => findings.file_problem(&item.path, &problem),
                    Ok((digest, size)) => {
                        if digest != item.sha256 {
                            findings.problem(
                                EXIT_CHECKSUM,
                                format!(
                                    "{} does not match: sha256 is {digest}, the manifest says {}",
                                    item.path, item.sha256
                                ),
                            );
                        } else if size != item.bytes {
                            findings.problem(
                                EXIT_CHECKSUM,
                                format!("{} is {size} bytes, the manifest says {}", item.path, item.bytes),
                            );
                        } else {
                            checked += 1;
                            total_bytes += size;
                        }
                    }
                },
            }
        }
        let mut summary = format!(
            "{} of {} match ({total_bytes} bytes)",
            checked,
            plural(manifest.items.len(), "item", "items")
        );
        if unchecked > 0 {
            let reason = layout
                .data_unavailable
                .as_deref()
                .unwrap_or("they are not available");
            summary = format!(
                "{} not checked: {reason}",
                plural(unchecked, "data file", "data files")
            );
            if checked > 0 {
                summary = format!("{checked} checked, {summary}");
            }
        }
        self.report.findings("manifest", findings, summary);

        let recomputed = rerun_hash(manifest.items.iter().map(|item| item.sha256));
        if recomputed == manifest.rerun_hash {
            self.report
                .ok("rerun-hash", format!("{recomputed} matches the items"));
        } else {
            self.report.fail(
                "rerun-hash",
                EXIT_CHECKSUM,
                format!(
                    "the manifest says {}, the items give {recomputed}",
                    manifest.rerun_hash.chars().take(80).collect::<String>()
                ),
            );
        }
    }

    /// Checks every line of `checksums.txt`, and that it lists the manifest and every data file.
    fn check_checksums(&mut self, layout: &Layout, manifest: Option<&Manifest>) {
        let Some(run_dir) = &layout.run_dir else {
            return;
        };
        let text = match fs::read(run_dir.join(CHECKSUMS_PATH)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.report
                    .fail("checksums", EXIT_CHECKSUM, format!("{CHECKSUMS_PATH} is missing"));
                return;
            }
            Err(err) => {
                self.report.fail(
                    "checksums",
                    EXIT_ERROR,
                    format!("cannot read {CHECKSUMS_PATH}: {err}"),
                );
                return;
            }
        };
        let mut findings = Findings::default();
        let mut listed = BTreeSet::new();
        let mut matched = 0usize;
        let mut unchecked = 0usize;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((expected, path)) = parse_checksum_line(line) else {
                findings.problem(
                    EXIT_CHECKSUM,
                    format!("{CHECKSUMS_PATH} line {} is not `<sha256>  <path>`", number + 1),
                );
                continue;
            };
            if !listed.insert(path.to_owned()) {
                findings.warning(format!("{path} is listed twice"));
            }
            match layout.locate(path) {
                Err(problem) => findings.file_problem(path, &problem),
                Ok(Located::Unavailable) => unchecked += 1,
                Ok(Located::Digest(digest)) if digest == expected => matched += 1,
                Ok(Located::Digest(digest)) => {
                    findings.problem(EXIT_CHECKSUM, format!("{path} has sha256 {digest}"))
                }
                Ok(Located::File(file)) => match self.digest(&file) {
                    Err(problem) => findings.file_problem(path, &problem),
                    Ok((digest, _)) if digest == expected => matched += 1,
                    Ok((digest, _)) => findings.problem(
                        EXIT_CHECKSUM,
                        format!(
                            "{path} does not match: sha256 is {}, listed {}",
                            digest.hex(),
                            expected.hex()
                        ),
                    ),
                },
            }
        }
        let mut required: Vec<&str> = vec![MANIFEST_PATH];
        if let Some(manifest) = manifest {
            required.extend(manifest.items.iter().map(|item| item.path.as_str()));
        }
        for path in required {
            if !listed.contains(path) {
                findings.problem(EXIT_CHECKSUM, format!("{path} is not listed in {CHECKSUMS_PATH}"));
            }
        }
        if run_dir.join(MANIFEST_DSSE_PATH).is_file() && !listed.contains(MANIFEST_DSSE_PATH) {
            findings.warning(format!("{MANIFEST_DSSE_PATH} is not listed in {CHECKSUMS_PATH}"));
        }
        let mut summary = format!("{} match", plural(matched, "file", "files"));
        if unchecked > 0 {
            let reason = layout
                .data_unavailable
                .as_deref()
                .unwrap_or("they are not available");
            summary.push_str(&format!(
                "; {} not checked: {reason}",
                plural(unchecked, "data file", "data files")
            ));
        }
        self.report.findings("checksums", findings, summary);
    }

    /// Checks `manifest.dsse.json`: signed by the key, and its payload is `manifest.json`.
    fn check_signature(&mut self, layout: &Layout, key: Option<&VerifyingKey>, manifest: Option<&[u8]>) {
        let Some(run_dir) = &layout.run_dir else {
            return;
        };
        let bytes = match fs::read(run_dir.join(MANIFEST_DSSE_PATH)) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.report.fail(
                    "signature",
                    EXIT_SIGNATURE,
                    format!("manifest is not signed: {MANIFEST_DSSE_PATH} is missing"),
                );
                return;
            }
            Err(err) => {
                self.report.fail(
                    "signature",
                    EXIT_ERROR,
                    format!("cannot read {MANIFEST_DSSE_PATH}: {err}"),
                );
                return;
            }
        };
        let envelope = match DsseEnvelope::from_json(&bytes) {
            Ok(envelope) => envelope,
            Err(err) => {
                self.report.fail(
                    "signature",
                    EXIT_SIGNATURE,
                    format!("{MANIFEST_DSSE_PATH}: {err}"),
                );
                return;
            }
        };
        let mut findings = Findings::default();
        if envelope.payload_type != MANIFEST_PAYLOAD_TYPE {
            findings.problem(
                EXIT_SIGNATURE,
                format!(
                    "{MANIFEST_DSSE_PATH} has payloadType `{}`, expected `{MANIFEST_PAYLOAD_TYPE}`",
                    envelope.payload_type.chars().take(80).collect::<String>()
                ),
            );
        }
        let Some(key) = key else {
            self.report
                .skip("signature", "not checked: no usable key (see the key check)");
            return;
        };
        if let Err(err) = verify_envelope(&envelope, key) {
            findings.problem(EXIT_SIGNATURE, signature_problem(MANIFEST_DSSE_PATH, &err, key));
        }
        if let Some(manifest) = manifest {
            if envelope.payload != manifest {
                findings.problem(
                    EXIT_SIGNATURE,
                    format!("{MANIFEST_PATH} differs from the payload signed in {MANIFEST_DSSE_PATH}"),
                );
            }
        }
        self.report.findings(
            "signature",
            findings,
            format!(
                "{MANIFEST_PATH} is signed by {} key {}",
                key.algorithm(),
                key.keyid()
            ),
        );
    }

    /// Checks the provenance envelope's signature, and every subject against its file.
    fn check_provenance(&mut self, layout: &Layout, key: Option<&VerifyingKey>, manifest: Option<&Manifest>) {
        let Some(path) = &layout.provenance else {
            let place = match &layout.bundle {
                Some((name, _)) if layout.run_dir.is_none() || layout.data_dir == layout.run_dir => {
                    format!("no {PROVENANCE_PATH} beside {name}")
                }
                _ => format!("no {PROVENANCE_PATH}"),
            };
            self.report
                .skip("provenance", format!("not checked: {place} (pass --provenance)"));
            return;
        };
        let shown = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) => {
                self.report.fail(
                    "provenance",
                    EXIT_ERROR,
                    format!("cannot read {}: {err}", path.display()),
                );
                return;
            }
        };
        let envelope = match DsseEnvelope::from_json(&bytes) {
            Ok(envelope) => envelope,
            Err(err) => {
                self.report
                    .fail("provenance", EXIT_SIGNATURE, format!("{shown}: {err}"));
                return;
            }
        };

        let mut findings = Findings::default();
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            findings.problem(
                EXIT_SIGNATURE,
                format!(
                    "{shown} has payloadType `{}`, expected `{IN_TOTO_PAYLOAD_TYPE}`",
                    envelope.payload_type.chars().take(80).collect::<String>()
                ),
            );
        }
        match key {
            Some(key) => {
                if let Err(err) = verify_envelope(&envelope, key) {
                    findings.problem(EXIT_SIGNATURE, signature_problem(&shown, &err, key));
                }
                self.report.findings(
                    "provenance",
                    findings,
                    format!("{shown} is signed by {} key {}", key.algorithm(), key.keyid()),
                );
            }
            None if findings.problems.is_empty() => {
                self.report.skip(
                    "provenance",
                    "signature not checked: no usable key (see the key check)",
                );
            }
            None => self.report.findings("provenance", findings, String::new()),
        }

        let subjects = match statement_subjects(&envelope.payload) {
            Ok(subjects) => subjects,
            Err(err) => {
                self.report
                    .fail("provenance-subjects", EXIT_ERROR, format!("{shown}: {err}"));
                return;
            }
        };
        let mut findings = Findings::default();
        let mut matched = 0usize;
        let mut unchecked = 0usize;
        let names: BTreeSet<&str> = subjects.iter().map(|(name, _)| name.as_str()).collect();
        for (name, expected) in &subjects {
            match layout.locate(name) {
                Err(problem) => findings.file_problem(name, &problem),
                Ok(Located::Unavailable) => unchecked += 1,
                Ok(Located::Digest(digest)) if digest == *expected => matched += 1,
                Ok(Located::Digest(digest)) => findings.problem(
                    EXIT_CHECKSUM,
                    format!("subject {name} does not match: sha256 is {}", digest.hex()),
                ),
                Ok(Located::File(file)) => match self.digest(&file) {
                    Err(problem) => findings.file_problem(name, &problem),
                    Ok((digest, _)) if digest == *expected => matched += 1,
                    Ok((digest, _)) => findings.problem(
                        EXIT_CHECKSUM,
                        format!(
                            "subject {name} does not match: sha256 is {}, the provenance says {}",
                            digest.hex(),
                            expected.hex()
                        ),
                    ),
                },
            }
        }
        if let Some(manifest) = manifest {
            let missing: Vec<&str> = manifest
                .items
                .iter()
                .map(|item| item.path.as_str())
                .filter(|path| !names.contains(path))
                .collect();
            if !missing.is_empty() {
                findings.warning(format!("not a subject: {}", missing.join(", ")));
            }
        }
        if layout.run_dir.is_some() && !names.contains(MANIFEST_PATH) {
            findings.warning(format!("{MANIFEST_PATH} is not a subject"));
        }
        let bundle_name = layout.bundle.as_ref().map(|(name, _)| name.as_str());
        let plain_name = layout.plain_bundle.as_ref().map(|(name, _)| name.as_str());
        let bundle_is_subject = names.iter().any(|subject| {
            bundle_name.is_some_and(|name| names_bundle(subject, name)) || plain_name == Some(*subject)
        });
        if let Some(bundle_name) = bundle_name {
            if !bundle_is_subject {
                findings.warning(format!("the bundle {bundle_name} is not a subject"));
            }
        }
        let mut summary = format!(
            "{} of {} match",
            matched,
            plural(subjects.len(), "subject", "subjects")
        );
        if bundle_is_subject {
            summary.push_str(", the bundle's included");
        }
        if unchecked > 0 {
            let reason = layout
                .data_unavailable
                .as_deref()
                .unwrap_or("they are not available");
            summary.push_str(&format!("; {unchecked} not checked: {reason}"));
        }
        self.report.findings("provenance-subjects", findings, summary);
    }

    /// The SHA-256 and size of a file, hashed once however many checks ask.
    fn digest(&mut self, path: &Path) -> Result<(Sha256Digest, u64), FileProblem> {
        if let Some(known) = self.digests.get(path) {
            return known.clone();
        }
        let result = hash_file(path);
        self.digests.insert(path.to_owned(), result.clone());
        result
    }
}

/// `manifest.json`: its exact bytes when it could be read, and the manifest or why not.
struct LoadedManifest {
    bytes: Option<Vec<u8>>,
    manifest: Result<Manifest, (u8, String)>,
}

fn load_manifest(run_dir: &Path) -> LoadedManifest {
    let bytes = match fs::read(run_dir.join(MANIFEST_PATH)) {
        Ok(bytes) => bytes,
        Err(err) => {
            let failure = if err.kind() == io::ErrorKind::NotFound {
                (EXIT_CHECKSUM, format!("{MANIFEST_PATH} is missing"))
            } else {
                (EXIT_ERROR, format!("cannot read {MANIFEST_PATH}: {err}"))
            };
            return LoadedManifest {
                bytes: None,
                manifest: Err(failure),
            };
        }
    };
    let manifest = match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(manifest) if manifest.schema == MANIFEST_SCHEMA => Ok(manifest),
        Ok(manifest) => Err((
            EXIT_ERROR,
            format!(
                "{MANIFEST_PATH} has schema `{}`, expected `{MANIFEST_SCHEMA}`",
                manifest.schema.chars().take(80).collect::<String>()
            ),
        )),
        Err(err) => Err((EXIT_ERROR, format!("cannot parse {MANIFEST_PATH}: {err}"))),
    };
    LoadedManifest {
        bytes: Some(bytes),
        manifest,
    }
}

fn signature_problem(file: &str, err: &SigningError, key: &VerifyingKey) -> String {
    match err {
        SigningError::NoSignatureByKey { keyid } => {
            format!("{file} has no signature by key {keyid}: the key is not trusted for it")
        }
        SigningError::SignatureInvalid => {
            format!("the signature in {file} by key {} does not verify", key.keyid())
        }
        other => format!("{file}: {other}"),
    }
}

/// `<64 hex>  <path>` (text mode) or `<64 hex> *<path>` (binary mode), as `sha256sum` writes.
fn parse_checksum_line(line: &str) -> Option<(Sha256Digest, &str)> {
    let (hex, rest) = line.split_at_checked(64)?;
    let path = rest.strip_prefix("  ").or_else(|| rest.strip_prefix(" *"))?;
    if path.is_empty() {
        return None;
    }
    Some((Sha256Digest::parse(hex)?, path))
}

/// A relative path that stays inside the directory it is joined to: no absolute path, no
/// empty, `.` or `..` component, no backslash or NUL.
fn safe_relative(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    if path.contains(['\\', '\0']) {
        return Err("contains a backslash or NUL".into());
    }
    if path.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err("has an empty, `.` or `..` component".into());
    }
    Ok(PathBuf::from(path))
}

fn hash_file(path: &Path) -> Result<(Sha256Digest, u64), FileProblem> {
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => FileProblem::Missing,
        _ => FileProblem::Unreadable(err.to_string()),
    })?;
    if file.metadata().map(|metadata| metadata.is_dir()).unwrap_or(false) {
        return Err(FileProblem::Unreadable("is a directory".into()));
    }
    let mut writer = HashingWriter::<io::Sink>::default();
    let size = io::copy(&mut BufReader::with_capacity(1 << 16, file), &mut writer)
        .map_err(|err| FileProblem::Unreadable(err.to_string()))?;
    Ok((writer.digest(), size))
}

/// A writer that only hashes (and optionally forwards) what it is given.
#[derive(Default)]
struct HashingWriter<W = io::Sink> {
    hasher: Sha256,
    inner: W,
}

impl<W> HashingWriter<W> {
    fn digest(self) -> Sha256Digest {
        Sha256Digest::from(self.hasher)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The `*.age` files in a run directory, sorted.
fn encrypted_bundles(dir: &Path) -> io::Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".age") && entry.file_type()?.is_file() {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

/// A bundle, decrypted if needed and extracted into a scratch directory.
struct OpenedBundle {
    /// Where the extracted files are, inside `scratch` (empty when not extracting).
    files: PathBuf,
    scratch: tempfile::TempDir,
    /// Every entry's path, digest and size.
    entries: Entries,
    /// The name without `.age` and, for an encrypted bundle, the digest of the plaintext.
    plain_name: String,
    plain_digest: Option<Sha256Digest>,
}

/// A bundle's entries: path → (digest, size).
type Entries = BTreeMap<String, (Sha256Digest, u64)>;

/// Decrypts (when `name` ends with `.age`) the bundle `file` and reads every entry, extracting
/// them when `extract` is set; the error is one line that names the file.
fn open_bundle(
    file: &Path,
    name: &str,
    identity: Option<&Path>,
    extract: bool,
) -> Result<OpenedBundle, String> {
    let plain_name = name.strip_suffix(".age").unwrap_or(name).to_owned();
    let kind = BundleKind::of(&plain_name).ok_or_else(|| format!("{name} is not a known bundle type"))?;
    let scratch = tempfile::Builder::new()
        .prefix("export-center-verify.")
        .tempdir()
        .map_err(|err| format!("cannot create a scratch directory: {err}"))?;
    let extracted = scratch.path().join("files");
    fs::create_dir(&extracted).map_err(|err| format!("cannot create a scratch directory: {err}"))?;

    let (archive_path, plain_digest) = if name.ends_with(".age") {
        let identity =
            identity.ok_or_else(|| format!("the bundle is encrypted: pass --identity to decrypt {name}"))?;
        let plain = scratch.path().join(&plain_name);
        let digest = decrypt(file, name, identity, &plain)?;
        (plain, Some(digest))
    } else {
        (file.to_owned(), None)
    };

    let into = extract.then_some(extracted.as_path());
    let entries = match kind {
        BundleKind::TarZst => {
            let archive = File::open(&archive_path).map_err(|err| format!("cannot read {name}: {err}"))?;
            let decoder = zstd::stream::read::Decoder::new(archive)
                .map_err(|err| format!("{name} is not a valid zstd stream: {err}"))?;
            extract_tar(decoder, into)
        }
        BundleKind::TarGz => {
            let archive = File::open(&archive_path).map_err(|err| format!("cannot read {name}: {err}"))?;
            extract_tar(flate2::read::GzDecoder::new(BufReader::new(archive)), into)
        }
        BundleKind::Zip => {
            let archive = File::open(&archive_path).map_err(|err| format!("cannot read {name}: {err}"))?;
            extract_zip(archive, into)
        }
    }
    .map_err(|err| format!("{name} is corrupt or truncated: {err}"))?;

    if archive_path != file {
        // The extracted files are all that is needed from here on.
        let _ = fs::remove_file(&archive_path);
    }
    Ok(OpenedBundle {
        files: extracted,
        scratch,
        entries,
        plain_name,
        plain_digest,
    })
}

/// Decrypts the age file `file` with the identities in `identity` into `out`, returning the
/// plaintext's digest.
fn decrypt(file: &Path, name: &str, identity: &Path, out: &Path) -> Result<Sha256Digest, String> {
    let identities = age::IdentityFile::from_file(identity.to_string_lossy().into_owned())
        .map_err(|err| format!("cannot read age identity file {}: {err}", identity.display()))?
        .into_identities()
        .map_err(|err| format!("cannot use age identity file {}: {err}", identity.display()))?;
    if identities.is_empty() {
        return Err(format!(
            "age identity file {} holds no identity",
            identity.display()
        ));
    }
    let input = File::open(file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let decryptor = age::Decryptor::new_buffered(BufReader::new(input))
        .map_err(|err| format!("{name} is not a readable age file: {err}"))?;
    let mut reader = decryptor
        .decrypt(
            identities
                .iter()
                .map(|identity| identity.as_ref() as &dyn age::Identity),
        )
        .map_err(|err| match err {
            age::DecryptError::NoMatchingKeys => {
                format!("no identity in {} can decrypt {name}", identity.display())
            }
            other => format!("cannot decrypt {name}: {other}"),
        })?;
    let output = File::create(out).map_err(|err| format!("cannot write the decrypted bundle: {err}"))?;
    let mut writer = HashingWriter {
        hasher: Sha256::new(),
        inner: io::BufWriter::new(output),
    };
    io::copy(&mut reader, &mut writer).map_err(|err| format!("{name} is corrupt or truncated: {err}"))?;
    writer
        .flush()
        .map_err(|err| format!("cannot write the decrypted bundle: {err}"))?;
    Ok(writer.digest())
}

/// Extracts the regular files of a tar stream into `into`, refusing unsafe or duplicate paths
/// and anything but regular files and directories, then reads the stream to its end so a
/// truncated or corrupt compression stream is noticed.
fn extract_tar<R: Read>(reader: R, into: Option<&Path>) -> Result<Entries, String> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = Entries::new();
    for entry in archive.entries().map_err(|err| err.to_string())? {
        let mut entry = entry.map_err(|err| err.to_string())?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| "an entry path is not UTF-8".to_owned())?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            other => return Err(format!("entry `{path}` is not a regular file ({other:?})")),
        }
        let size = entry
            .header()
            .size()
            .map_err(|err| format!("entry `{path}`: {err}"))?;
        let copied = write_entry(&path, &mut entry, into, &mut entries)?;
        if copied != size {
            return Err(format!("entry `{path}` has {copied} of its {size} bytes"));
        }
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|err| err.to_string())?;
    Ok(entries)
}

fn extract_zip(file: File, into: Option<&Path>) -> Result<Entries, String> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|err| err.to_string())?;
    let mut entries = Entries::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|err| err.to_string())?;
        let path = entry.name().to_owned();
        if entry.is_dir() {
            continue;
        }
        if entry.is_symlink() {
            return Err(format!("entry `{path}` is a symbolic link"));
        }
        let size = entry.size();
        let copied = write_entry(&path, &mut entry, into, &mut entries)?;
        if copied != size {
            return Err(format!("entry `{path}` has {copied} of its {size} bytes"));
        }
    }
    Ok(entries)
}

/// Hashes one entry's bytes and, with `into`, writes them to their path under it.
fn write_entry(
    path: &str,
    data: &mut impl Read,
    into: Option<&Path>,
    entries: &mut Entries,
) -> Result<u64, String> {
    let relative = safe_relative(path).map_err(|reason| format!("refusing entry `{path}`: {reason}"))?;
    if entries.contains_key(path) {
        return Err(format!("entry `{path}` appears twice"));
    }
    let (digest, size) = match into {
        Some(into) => {
            let dest = into.join(relative);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|err| format!("cannot extract `{path}`: {err}"))?;
            }
            let file = File::create_new(&dest).map_err(|err| format!("cannot extract `{path}`: {err}"))?;
            let mut writer = HashingWriter {
                hasher: Sha256::new(),
                inner: io::BufWriter::new(file),
            };
            let size = io::copy(data, &mut writer).map_err(|err| format!("entry `{path}`: {err}"))?;
            writer
                .flush()
                .map_err(|err| format!("cannot extract `{path}`: {err}"))?;
            (writer.digest(), size)
        }
        None => {
            let mut writer = HashingWriter::<io::Sink>::default();
            let size = io::copy(data, &mut writer).map_err(|err| format!("entry `{path}`: {err}"))?;
            (writer.digest(), size)
        }
    };
    entries.insert(path.to_owned(), (digest, size));
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_prefers_errors_then_signatures_then_checksums() {
        assert_eq!(most_severe(EXIT_CHECKSUM, EXIT_SIGNATURE), EXIT_SIGNATURE);
        assert_eq!(most_severe(EXIT_SIGNATURE, EXIT_CHECKSUM), EXIT_SIGNATURE);
        assert_eq!(most_severe(EXIT_SIGNATURE, EXIT_ERROR), EXIT_ERROR);
        assert_eq!(most_severe(EXIT_VERIFIED, EXIT_CHECKSUM), EXIT_CHECKSUM);
    }

    #[test]
    fn checksum_lines_parse_as_sha256sum_writes_them() {
        let hex = "a".repeat(64);
        let text = format!("{hex}  advisory.json");
        assert_eq!(parse_checksum_line(&text).unwrap().1, "advisory.json");
        let binary = format!("{hex} *data/vex.ndjson");
        assert_eq!(parse_checksum_line(&binary).unwrap().1, "data/vex.ndjson");
        assert!(parse_checksum_line(&format!("{hex} advisory.json")).is_none());
        assert!(parse_checksum_line("short  advisory.json").is_none());
        assert!(parse_checksum_line(&format!("{}  x", "A".repeat(64))).is_none());
        assert!(parse_checksum_line("é").is_none());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for path in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b"] {
            assert!(safe_relative(path).is_err(), "{path:?}");
        }
        assert!(safe_relative("data/advisory.json").is_ok());
    }
}
