//! The checks, each a function of the `RunView` and the trusted key: checksums, manifest
//! items, `rerunHash`, files the manifest does not name, the manifest signature, and the
//! provenance signature and subjects.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use export_core::{
    rerun_hash, Manifest, Sha256Digest, CHECKSUMS_PATH, MANIFEST_DSSE_PATH, MANIFEST_PATH, MANIFEST_SCHEMA,
    PROVENANCE_PATH,
};
use export_signing::{
    statement_subjects, verify_envelope, DsseEnvelope, SigningError, VerifyingKey, IN_TOTO_PAYLOAD_TYPE,
    MANIFEST_PAYLOAD_TYPE,
};

use crate::archive::{names_bundle, BUNDLE_NAMES, FIXED_FILES};
use crate::report::{plural, Findings, Report, Verdict, EXIT_CHECKSUM, EXIT_ERROR, EXIT_SIGNATURE};
use crate::view::{self, FileFacts, FileProblem, Located, RunView};
use crate::VerifyOptions;

#[derive(Default)]
pub(crate) struct Verifier {
    report: Report,
}

impl Verifier {
    pub(crate) fn run(mut self, options: &VerifyOptions) -> Verdict {
        let keys = self.load_keys(&options.keys);
        let keys = keys.as_deref();
        if let Some(view) = view::prepare(options, &mut self.report) {
            if view.has_run_files {
                let loaded = load_manifest(&view);
                let manifest = loaded.manifest.as_ref().ok();
                self.check_checksums(&view, manifest);
                self.check_manifest(&view, &loaded);
                self.check_files(&view, manifest);
                self.check_signature(&view, keys, loaded.bytes.as_deref());
                self.check_provenance(&view, keys, manifest);
            } else {
                self.check_provenance(&view, keys, None);
            }
        }
        self.report.finish()
    }

    /// The trusted keys, or `None` (and a failed `key` check) when any of them cannot be
    /// used: a mistyped key must not pass unnoticed because another one verified.
    fn load_keys(&mut self, paths: &[PathBuf]) -> Option<Vec<VerifyingKey>> {
        if paths.is_empty() {
            self.report
                .fail("key", EXIT_ERROR, "no trusted key given (--key)");
            return None;
        }
        let mut keys = Vec::with_capacity(paths.len());
        let mut problems = Vec::new();
        for path in paths {
            match load_key(path) {
                Ok(key) => keys.push((key, path)),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            self.report.fail("key", EXIT_ERROR, problems.join("; "));
            return None;
        }
        let described: Vec<String> = keys
            .iter()
            .map(|(key, path)| {
                format!(
                    "{} public key {} ({})",
                    key.algorithm(),
                    key.keyid(),
                    path.display()
                )
            })
            .collect();
        self.report.ok("key", described.join("; "));
        Some(keys.into_iter().map(|(key, _)| key).collect())
    }

    /// Checks every manifest item's file and the `rerunHash`.
    fn check_manifest(&mut self, view: &RunView, loaded: &LoadedManifest) {
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
            match view.locate(&item.path) {
                Err(problem) => findings.file_problem(&item.path, &problem),
                Ok(Located::Unavailable) => unchecked += 1,
                Ok(Located::Digest(digest)) => {
                    if digest != item.sha256 {
                        findings.problem(EXIT_CHECKSUM, format!("{} has sha256 {digest}", item.path));
                    }
                }
                Ok(Located::File(FileFacts { digest, size })) => {
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
            }
        }
        let mut summary = format!(
            "{} of {} match ({total_bytes} bytes)",
            checked,
            plural(manifest.items.len(), "item", "items")
        );
        if unchecked > 0 {
            let reason = view
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

    /// Checks every line of `checksums.txt`: each names a file the signed manifest names (or
    /// the manifest and its envelope) once, with the manifest's digest and the file's, and
    /// the manifest and every data file are listed.
    fn check_checksums(&mut self, view: &RunView, manifest: Option<&Manifest>) {
        let text = match view.fixed(CHECKSUMS_PATH) {
            Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Err(FileProblem::Missing) => {
                self.report
                    .fail("checksums", EXIT_CHECKSUM, format!("{CHECKSUMS_PATH} is missing"));
                return;
            }
            Err(problem) => {
                let mut findings = Findings::default();
                findings.file_problem(CHECKSUMS_PATH, &problem);
                self.report.findings("checksums", findings, String::new());
                return;
            }
        };
        // What the manifest says each listable file is; `None` for the manifest and its
        // envelope, which the manifest cannot name.
        let signed: Option<BTreeMap<&str, Option<Sha256Digest>>> = manifest.map(|manifest| {
            manifest
                .items
                .iter()
                .map(|item| (item.path.as_str(), Some(item.sha256)))
                .chain([(MANIFEST_PATH, None), (MANIFEST_DSSE_PATH, None)])
                .collect()
        });
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
                findings.problem(
                    EXIT_CHECKSUM,
                    format!("{path} is listed twice in {CHECKSUMS_PATH}"),
                );
                continue;
            }
            if let Some(signed) = &signed {
                match signed.get(path) {
                    None => {
                        findings.problem(
                            EXIT_CHECKSUM,
                            format!(
                                "{CHECKSUMS_PATH} line {} lists {}, which the signed manifest does not name",
                                number + 1,
                                path.escape_debug()
                            ),
                        );
                        continue;
                    }
                    Some(Some(digest)) if *digest != expected => findings.problem(
                        EXIT_CHECKSUM,
                        format!(
                            "{CHECKSUMS_PATH} lists {path} with sha256 {}, the manifest says {}",
                            expected.hex(),
                            digest.hex()
                        ),
                    ),
                    Some(_) => {}
                }
            }
            match view.locate(path) {
                Err(problem) => findings.file_problem(path, &problem),
                Ok(Located::Unavailable) => unchecked += 1,
                Ok(Located::Digest(digest)) | Ok(Located::File(FileFacts { digest, .. }))
                    if digest == expected =>
                {
                    matched += 1
                }
                Ok(Located::Digest(digest)) | Ok(Located::File(FileFacts { digest, .. })) => findings
                    .problem(
                        EXIT_CHECKSUM,
                        format!(
                            "{path} does not match: sha256 is {}, listed {}",
                            digest.hex(),
                            expected.hex()
                        ),
                    ),
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
        if view.fixed(MANIFEST_DSSE_PATH).is_ok() && !listed.contains(MANIFEST_DSSE_PATH) {
            findings.warning(format!("{MANIFEST_DSSE_PATH} is not listed in {CHECKSUMS_PATH}"));
        }
        let mut summary = format!("{} match", plural(matched, "file", "files"));
        if unchecked > 0 {
            let reason = view
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

    /// Checks that every file found (in the directory and in its bundle) is one the signed
    /// manifest names, a fixed file, or (in a directory) the run's bundle.
    fn check_files(&mut self, view: &RunView, manifest: Option<&Manifest>) {
        let Some(manifest) = manifest else {
            self.report.skip(
                "files",
                "not checked: no readable manifest (see the manifest check)",
            );
            return;
        };
        let named: BTreeSet<&str> = manifest
            .items
            .iter()
            .map(|item| item.path.as_str())
            .chain(FIXED_FILES)
            .collect();
        let mut findings = Findings::default();
        for found in &view.found {
            let path = found.path.as_str();
            let run_bundle =
                found.within.is_none() && BUNDLE_NAMES.contains(&path.strip_suffix(".age").unwrap_or(path));
            if named.contains(path) || run_bundle {
                continue;
            }
            let place = match &found.within {
                Some(bundle) => format!(" (in {bundle})"),
                None => String::new(),
            };
            findings.problem(
                EXIT_CHECKSUM,
                format!(
                    "{}{place} is not named by the signed manifest",
                    path.escape_debug()
                ),
            );
        }
        let summary = format!(
            "{}, all named by the manifest",
            plural(view.found.len(), "file", "files")
        );
        self.report.findings("files", findings, summary);
    }

    /// Checks `manifest.dsse.json`: signed by the key, and its payload is `manifest.json`.
    fn check_signature(&mut self, view: &RunView, keys: Option<&[VerifyingKey]>, manifest: Option<&[u8]>) {
        let bytes = match view.fixed(MANIFEST_DSSE_PATH) {
            Ok(bytes) => bytes,
            Err(FileProblem::Missing) => {
                self.report.fail(
                    "signature",
                    EXIT_SIGNATURE,
                    format!("manifest is not signed: {MANIFEST_DSSE_PATH} is missing"),
                );
                return;
            }
            Err(problem) => {
                let mut findings = Findings::default();
                findings.file_problem(MANIFEST_DSSE_PATH, &problem);
                self.report.findings("signature", findings, String::new());
                return;
            }
        };
        let envelope = match DsseEnvelope::from_json(bytes) {
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
        let Some(keys) = keys else {
            self.report
                .skip("signature", "not checked: no usable key (see the key check)");
            return;
        };
        let key = match verify_with_any(&envelope, keys, MANIFEST_DSSE_PATH) {
            Ok(key) => key,
            Err(problem) => {
                findings.problem(EXIT_SIGNATURE, problem);
                &keys[0]
            }
        };
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
    fn check_provenance(
        &mut self,
        view: &RunView,
        keys: Option<&[VerifyingKey]>,
        manifest: Option<&Manifest>,
    ) {
        let Some(path) = &view.provenance else {
            let place = match &view.bundle {
                Some((name, _)) if view.target_is_bundle || !name.ends_with(".age") => {
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
        match keys {
            Some(keys) => {
                let key = match verify_with_any(&envelope, keys, &shown) {
                    Ok(key) => key,
                    Err(problem) => {
                        findings.problem(EXIT_SIGNATURE, problem);
                        &keys[0]
                    }
                };
                self.report.findings(
                    "provenance",
                    findings,
                    format!("{shown} is signed by {} key {}", key.algorithm(), key.keyid()),
                );
            }
            None if !findings.has_problems() => {
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
            match view.locate(name) {
                Err(problem) => findings.file_problem(name, &problem),
                Ok(Located::Unavailable) => unchecked += 1,
                Ok(Located::Digest(digest)) if digest == *expected => matched += 1,
                Ok(Located::Digest(digest)) => findings.problem(
                    EXIT_CHECKSUM,
                    format!("subject {name} does not match: sha256 is {}", digest.hex()),
                ),
                Ok(Located::File(FileFacts { digest, .. })) if digest == *expected => matched += 1,
                Ok(Located::File(FileFacts { digest, .. })) => findings.problem(
                    EXIT_CHECKSUM,
                    format!(
                        "subject {name} does not match: sha256 is {}, the provenance says {}",
                        digest.hex(),
                        expected.hex()
                    ),
                ),
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
        if view.has_run_files && !names.contains(MANIFEST_PATH) {
            findings.warning(format!("{MANIFEST_PATH} is not a subject"));
        }
        let bundle_name = view.bundle.as_ref().map(|(name, _)| name.as_str());
        let plain_name = view.plain_bundle.as_ref().map(|(name, _)| name.as_str());
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
            let reason = view
                .data_unavailable
                .as_deref()
                .unwrap_or("they are not available");
            summary.push_str(&format!("; {unchecked} not checked: {reason}"));
        }
        self.report.findings("provenance-subjects", findings, summary);
    }
}

/// `manifest.json`: its exact bytes when it could be read, and the manifest or why not.
struct LoadedManifest {
    bytes: Option<Vec<u8>>,
    manifest: Result<Manifest, (u8, String)>,
}

fn load_manifest(view: &RunView) -> LoadedManifest {
    let bytes = match view.fixed(MANIFEST_PATH) {
        Ok(bytes) => bytes.to_vec(),
        Err(problem) => {
            let failure = match problem {
                FileProblem::Missing => (EXIT_CHECKSUM, format!("{MANIFEST_PATH} is missing")),
                FileProblem::Unsafe(reason) | FileProblem::Unreadable(reason) => {
                    (EXIT_ERROR, format!("cannot read {MANIFEST_PATH}: {reason}"))
                }
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

/// Reads one trusted public key; the problem names the file.
fn load_key(path: &Path) -> Result<VerifyingKey, String> {
    let text =
        fs::read_to_string(path).map_err(|err| format!("cannot read key file {}: {err}", path.display()))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|err| {
        if text.contains("PRIVATE KEY-----") {
            format!(
                "{} is a private key: pass the public key (the .pub.pem file) with --key",
                path.display()
            )
        } else {
            format!("{} is not a usable public key: {err}", path.display())
        }
    })
}

/// The first trusted key that verifies `envelope`, or why none does (with one key, the
/// precise reason; with several, that none of them signed it).
fn verify_with_any<'k>(
    envelope: &DsseEnvelope,
    keys: &'k [VerifyingKey],
    file: &str,
) -> Result<&'k VerifyingKey, String> {
    let mut problems = Vec::with_capacity(keys.len());
    for key in keys {
        match verify_envelope(envelope, key) {
            Ok(_) => return Ok(key),
            Err(err) => problems.push(signature_problem(file, &err, key)),
        }
    }
    match problems.len() {
        1 => Err(problems.remove(0)),
        _ => Err(format!(
            "{file} is signed by none of the {} trusted keys: {}",
            keys.len(),
            problems.join("; ")
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
