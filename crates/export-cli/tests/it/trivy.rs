//! The whole `trivy-db` flow a user follows (SPEC §14): `exportctl runs create --format
//! trivy-db`, download, unpack into a Trivy cache, and scan offline with the real Trivy
//! (`TEST_TRIVY_BIN`, installed by `scripts/test`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use export_oci::testing::RegistryServer;

use crate::support::{registry_config, Server, ServerOptions};

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
    let run_id = created.run_id();
    let downloaded = server.run(&["runs", "download", &run_id, "--out", out.to_str().unwrap()]);
    downloaded.success();
    assert!(downloaded.stdout.contains("trivy-db.tar.gz"), "{downloaded}");
    std::fs::read(out.join("trivy-db.tar.gz")).expect("reading the downloaded database")
}

/// Where Trivy takes its database from.
enum Db<'a> {
    /// Unpacked into `<cache>/db` already: no network at all.
    Unpacked,
    /// Pulled from this registry reference (`--db-repository … --insecure`): only
    /// loopback, and every other connection goes to `refusing_proxy`, which counts it.
    Registry {
        reference: &'a str,
        refusing_proxy: &'a RefusingProxy,
    },
}

/// A proxy that accepts connections, counts them and closes them: a Trivy that tries to
/// reach anything but the loopback registry gets nowhere, and the test sees it.
struct RefusingProxy {
    address: String,
    attempts: Arc<AtomicUsize>,
}

impl RefusingProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = attempts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { address, attempts }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

/// Trivy's findings (vulnerability ids) for a go.mod requiring `module` at `version`,
/// with its database from `db`.
fn scan_go_module(cache: &Path, db: &Db<'_>, module: &str, version: &str) -> Vec<String> {
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
    let mut command = match db {
        Db::Unpacked if offline => {
            let mut command = Command::new("unshare");
            command.arg("-n").arg(trivy_bin());
            command
        }
        _ => Command::new(trivy_bin()),
    };
    command.args(["fs", "--cache-dir"]).arg(cache);
    match db {
        Db::Unpacked => {
            command
                .args(["--skip-db-update", "--offline-scan"])
                .env("HTTPS_PROXY", "http://127.0.0.1:9")
                .env("HTTP_PROXY", "http://127.0.0.1:9");
        }
        Db::Registry {
            reference,
            refusing_proxy,
        } => {
            // Go never proxies loopback, so the registry is reached directly.
            let proxy = format!("http://{}", refusing_proxy.address);
            command
                .args(["--db-repository", reference, "--insecure"])
                .env("HTTPS_PROXY", &proxy)
                .env("HTTP_PROXY", &proxy);
        }
    }
    let output = command
        .args([
            "--skip-java-db-update",
            "--scanners",
            "vuln",
            "--format",
            "json",
            "--quiet",
            "--output",
        ])
        .arg(&report)
        .arg(&project)
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

/// GO-2020-0001 (CVE-2020-36567) affects github.com/gin-gonic/gin before 1.6.0: Trivy
/// reports it for v1.5.0 and not for v1.6.0.
#[track_caller]
fn assert_gin_findings(cache: &Path, db: &Db<'_>) {
    let vulnerable = scan_go_module(cache, db, "github.com/gin-gonic/gin", "v1.5.0");
    assert!(
        vulnerable.iter().any(|id| id == "CVE-2020-36567"),
        "gin v1.5.0 is not reported vulnerable: {vulnerable:?}"
    );
    let fixed = scan_go_module(cache, db, "github.com/gin-gonic/gin", "v1.6.0");
    assert!(
        !fixed.iter().any(|id| id == "CVE-2020-36567"),
        "gin v1.6.0 is reported vulnerable: {fixed:?}"
    );
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

    assert_gin_findings(&cache, &Db::Unpacked);
}

#[test]
fn a_trivy_db_run_pushed_to_a_registry_is_pulled_by_trivy_and_verifies() {
    let registry = RegistryServer::start();
    let server = Server::start_with(ServerOptions {
        config: Some(
            registry_config(&registry.address)
                + r#"
[tenants.tenant-default.profiles.scanner-feed]
targets = ["advisory"]
formats = ["trivy-db"]
distributions = ["oci"]
signing = { enabled = true, keys = ["kms://tenant-default/signer"] }
"#,
        ),
        signing_key: true,
        ..ServerOptions::default()
    });
    // No tag: the run is published under `:2`, the tag Trivy asks for.
    let repository = format!("{}/tenant-default/trivy-db", registry.address);
    let created = server.run(&[
        "runs",
        "create",
        "--profile",
        "scanner-feed",
        "--distribution",
        "oci",
        "--ref",
        &repository,
        "--follow",
        "--json",
    ]);
    created.success();
    let run_id = created.run_id();

    // Trivy pulls the database from the registry and finds what the advisories say.
    let proxy = RefusingProxy::start();
    let reference = format!("{repository}:2");
    let db = Db::Registry {
        reference: &reference,
        refusing_proxy: &proxy,
    };
    let cache = server.data_dir().join("trivy-registry-cache");
    assert_gin_findings(&cache, &db);
    assert_eq!(
        proxy.attempts(),
        0,
        "Trivy tried to reach something other than the registry"
    );

    // The run attached to Trivy's artifact pulls back whole and verifies with the key,
    // and its database is the one Trivy downloaded.
    let out = server.data_dir().join("pulled");
    let pulled = server.run(&[
        "runs",
        "pull",
        &run_id,
        "--insecure",
        "--out",
        out.to_str().unwrap(),
    ]);
    pulled.success();
    server.assert_verifies(&out);
    let unpacked = server.data_dir().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(out.join("trivy-db.tar.gz"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("running tar");
    assert!(status.success());
    assert!(
        std::fs::read(unpacked.join("trivy.db")).unwrap()
            == std::fs::read(cache.join("db/trivy.db")).unwrap(),
        "Trivy's database is not the run's"
    );
}
