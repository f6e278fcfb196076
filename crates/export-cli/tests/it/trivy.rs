//! The whole `trivy-db` flow a user follows (SPEC §14): `exportctl runs create --format
//! trivy-db`, download, unpack into a Trivy cache, and scan offline with the real Trivy
//! (`TEST_TRIVY_BIN`, installed by `scripts/test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Server, ServerOptions};

const PROFILE: &str = r#"
[tenants.tenant-default.profiles.scanners]
targets = ["advisory"]
formats = ["ndjson", "trivy-db"]
"#;

/// The Trivy binary `scripts/test` installs; the test fails (never skips) without it.
fn trivy_bin() -> PathBuf {
    let path = std::env::var_os("TEST_TRIVY_BIN").unwrap_or_else(|| {
        panic!("TEST_TRIVY_BIN is not set: run scripts/test (it installs Trivy 0.59.1), or set it to a trivy binary")
    });
    PathBuf::from(path)
}

/// Creates a `trivy-db` run, follows it, downloads it, and returns its tarball's bytes.
fn export_trivy_db(server: &Server, out: &Path) -> Vec<u8> {
    let created = server.run(&[
        "runs",
        "create",
        "--profile",
        "scanners",
        "--format",
        "trivy-db",
        "--follow",
        "--json",
    ]);
    created.success();
    let first: serde_json::Value = serde_json::from_str(created.stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}: {created}"));
    let run_id = first["runId"].as_str().expect("runId").to_owned();
    let downloaded = server.run(&["runs", "download", &run_id, "--out", out.to_str().unwrap()]);
    downloaded.success();
    assert!(downloaded.stdout.contains("trivy-db.tar.gz"), "{downloaded}");
    std::fs::read(out.join("trivy-db.tar.gz")).expect("reading the downloaded database")
}

/// Trivy's findings (vulnerability ids) for a go.mod requiring `module` at `version`,
/// scanned offline with the database unpacked into `cache/db`.
fn scan_go_module(cache: &Path, module: &str, version: &str) -> Vec<String> {
    let project = cache.join(format!("project-{version}"));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("go.mod"),
        format!("module example.com/app\n\ngo 1.21\n\nrequire {module} {version}\n"),
    )
    .unwrap();
    let report = cache.join(format!("report-{version}.json"));
    // No network at all where unshare works (root here and in CI); a refusing proxy too.
    let offline = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut command = if offline {
        let mut command = Command::new("unshare");
        command.arg("-n").arg(trivy_bin());
        command
    } else {
        Command::new(trivy_bin())
    };
    let output = command
        .args(["fs", "--cache-dir"])
        .arg(cache)
        .args([
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--scanners",
            "vuln",
            "--format",
            "json",
            "--quiet",
            "--output",
        ])
        .arg(&report)
        .arg(&project)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .output()
        .expect("running trivy");
    assert!(
        output.status.success(),
        "trivy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    report["Results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|result| result["Vulnerabilities"].as_array().cloned().unwrap_or_default())
        .filter(|finding| finding["PkgName"] == module)
        .filter_map(|finding| finding["VulnerabilityID"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_trivy_db_run_is_deterministic_and_feeds_the_real_trivy_offline() {
    let server = Server::start_with(ServerOptions {
        config: Some(PROFILE.to_owned()),
        ..ServerOptions::default()
    });
    let first = export_trivy_db(&server, &server.data_dir().join("first"));
    let second = export_trivy_db(&server, &server.data_dir().join("second"));
    assert!(
        first == second,
        "two runs of one snapshot gave different databases"
    );

    let cache = server.data_dir().join("trivy-cache");
    std::fs::create_dir_all(cache.join("db")).unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(server.data_dir().join("first/trivy-db.tar.gz"))
        .arg("-C")
        .arg(cache.join("db"))
        .status()
        .expect("running tar");
    assert!(unpacked.success());
    let mut entries: Vec<String> = std::fs::read_dir(cache.join("db"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["metadata.json", "trivy.db"]);

    // GO-2020-0001 (CVE-2020-36567): github.com/gin-gonic/gin before 1.6.0.
    let vulnerable = scan_go_module(&cache, "github.com/gin-gonic/gin", "v1.5.0");
    assert!(
        vulnerable.iter().any(|id| id == "CVE-2020-36567"),
        "gin v1.5.0 is not reported vulnerable: {vulnerable:?}"
    );
    let fixed = scan_go_module(&cache, "github.com/gin-gonic/gin", "v1.6.0");
    assert!(
        !fixed.iter().any(|id| id == "CVE-2020-36567"),
        "gin v1.6.0 is reported vulnerable: {fixed:?}"
    );
}
