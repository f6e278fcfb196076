//! The air-gap loop of SPEC §15 between two real sites, each with its own data directory
//! (and, on PostgreSQL, its own schema): the connected site exports mirror bundles, the
//! test carries them, the sealed site applies them with the real `export-center import`
//! command, and its runs then give the connected site's data files byte for byte. Every
//! refusal leaves the sealed store as it was, and so does an import killed mid-apply.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{Duration, Utc};
use export_server::ingest::IngestMode;
use export_store_postgres::testing::{fresh_schema, url_for};
use serde_json::{json, Value};

use crate::helpers::{download_all, fixtures, shared_data, TestApp, TestClock};
use crate::mirror::changed_osv_go;

/// The data files compared between the sites: every target the mirror carries, in both
/// per-target formats.
const COMPARED: &str = r#"{ "targets": ["advisory", "vex"], "formats": ["json", "ndjson"] }"#;

struct Sites {
    connected: TestApp,
    sealed: TestApp,
    sealed_database: Option<String>,
    /// Where bundles and keys are carried.
    carry: tempfile::TempDir,
    key: PathBuf,
    bundles: usize,
}

impl Sites {
    /// Two sites whose clocks are now (the import command reads the wall clock), with the
    /// sample evidence on the connected one; `database` gives each site a PostgreSQL
    /// schema of its own.
    async fn new(postgres: bool) -> Self {
        let (connected_database, sealed_database) = match postgres {
            true => (
                Some(url_for(&fresh_schema().await)),
                Some(url_for(&fresh_schema().await)),
            ),
            false => (None, None),
        };
        let now = || TestClock::starting_at(Utc::now());
        let connected = TestApp::spawn_at(now(), |config| config.database.url = connected_database).await;
        let url = sealed_database.clone();
        let sealed = TestApp::spawn_at(now(), move |config| {
            config.database.url = url;
            config.sealed = true;
        })
        .await;
        let carry = tempfile::tempdir().unwrap();
        let key = carry.path().join("signer.pub.pem");
        std::fs::write(&key, connected.install_signing_key("acme", "signer", "ed25519")).unwrap();
        sealed.install_signing_key("acme", "signer", "p256");
        connected.ingest_fixtures("acme").await;
        Self {
            connected,
            sealed,
            sealed_database,
            carry,
            key,
            bundles: 0,
        }
    }

    /// A mirror run on the connected site; its bundle, carried.
    async fn mirror(&mut self, request: Value) -> PathBuf {
        let status = self.connected.tenant("acme").export("mirror", request).await;
        assert_eq!(status.status, "succeeded", "{:?}", status.errors);
        let bundle = download_all(&self.connected, &status)
            .await
            .remove("bundle.tar.zst")
            .unwrap();
        self.bundles += 1;
        let path = self.carry.path().join(format!("{}-bundle.tar.zst", self.bundles));
        std::fs::write(&path, bundle).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_export-center"));
        command
            .arg("import")
            .args(["--tenant", "acme"])
            .args(args)
            .env("EXPORT_CENTER_SERVER__DATA_DIR", &self.sealed.data_dir)
            .env("EXPORT_CENTER_LOGGING__LEVEL", "warn");
        if let Some(url) = &self.sealed_database {
            command.env("EXPORT_CENTER_DATABASE__URL", url);
        }
        command
    }

    fn import_with(&self, bundle: &Path, key: &Path) -> Output {
        let (bundle, key) = (bundle.to_str().unwrap(), key.to_str().unwrap());
        self.command(&["--key", key, bundle]).output().unwrap()
    }

    /// Imports `bundle` with the connected site's key and asserts the exit code.
    fn import(&self, bundle: &Path, code: i32) -> Output {
        let output = self.import_with(bundle, &self.key);
        assert_eq!(output.status.code(), Some(code), "{}", describe(&output));
        output
    }

    /// `import --status --json`.
    fn status(&self) -> Value {
        let output = self.command(&["--status", "--json"]).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Asserts that the sealed site's runs give the connected site's data files.
    async fn assert_equivalent(&self) -> BTreeMap<String, Vec<u8>> {
        let theirs = data_files(&self.connected, "daily").await;
        let ours = data_files(&self.sealed, "signed").await;
        assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>());
        for (name, bytes) in &theirs {
            assert!(bytes == &ours[name], "{name} differs between the sites");
        }
        ours
    }

    /// Asserts that a refused import left the sealed site as it was: the same import
    /// state, and the same data files.
    async fn assert_unchanged(&self, state: &Value, files: &BTreeMap<String, Vec<u8>>) {
        assert_eq!(&self.status(), state);
        assert!(
            &data_files(&self.sealed, "signed").await == files,
            "the sealed store changed"
        );
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The data files of a run of `profile` over the advisory and vex targets.
async fn data_files(app: &TestApp, profile: &str) -> BTreeMap<String, Vec<u8>> {
    let status = app
        .tenant("acme")
        .export(profile, serde_json::from_str(COMPARED).unwrap())
        .await;
    assert_eq!(status.status, "succeeded", "{:?}", status.errors);
    download_all(app, &status)
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with("advisory.") || name.starts_with("vex."))
        .collect()
}

/// Rewrites a tar.zst bundle through `change`, which may edit, add or drop entries.
fn repack(bundle: &Path, out: &Path, change: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) {
    let mut entries = BTreeMap::new();
    let decoder = zstd::stream::read::Decoder::new(std::fs::File::open(bundle).unwrap()).unwrap();
    for entry in tar::Archive::new(decoder).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.insert(path, bytes);
    }
    change(&mut entries);
    let encoder = zstd::stream::write::Encoder::new(std::fs::File::create(out).unwrap(), 3).unwrap();
    let mut builder = tar::Builder::new(encoder);
    for (path, bytes) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

async fn a_chain_of_bundles_makes_the_sealed_site_export_what_the_connected_site_does(postgres: bool) {
    let mut sites = Sites::new(postgres).await;
    assert_eq!(sites.status()["last"], Value::Null);

    // A delta before any full bundle has nothing to continue.
    let full = sites.mirror(json!({ "mirror": { "mode": "full" } })).await;
    let empty_delta = sites.mirror(json!({})).await;
    let output = sites.import(&empty_delta, 4);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("import a full bundle first"),
        "{}",
        describe(&output)
    );
    assert_eq!(sites.status()["last"], Value::Null);
    let output = sites.import(&full, 0);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("imported full bundle into acme: generation 1"),
        "{}",
        describe(&output)
    );
    sites.assert_equivalent().await;
    sites.import(&empty_delta, 0);

    // Round 1: a changed, an added and a removed advisory.
    let input = tempfile::tempdir().unwrap();
    let osv_go = changed_osv_go(input.path(), "GO-2020-0025", "GO-2020-0050");
    let connected = &sites.connected;
    connected
        .ingest_as(IngestMode::Sync, "acme", "osv-go", std::slice::from_ref(&osv_go))
        .await;
    let delta1 = sites.mirror(json!({})).await;
    let output = sites.import(&delta1, 0);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 added, 1 changed, 0 unchanged, 1 removed"),
        "{}",
        describe(&output)
    );
    let after_delta1 = sites.assert_equivalent().await;

    // Round 2: the removed advisory is back, another goes, and a VEX statement arrives.
    std::fs::copy(
        fixtures().join("osv-go/GO-2020-0050.json"),
        osv_go.join("GO-2020-0050.json"),
    )
    .unwrap();
    std::fs::remove_file(osv_go.join("GO-2021-0067.json")).unwrap();
    let connected = &sites.connected;
    connected
        .ingest_as(IngestMode::Sync, "acme", "osv-go", std::slice::from_ref(&osv_go))
        .await;
    connected
        .ingest("acme", "openvex-more", &[shared_data().join("openvex")])
        .await;
    let delta2 = sites.mirror(json!({})).await;
    // Round 3: nothing changed; the delta is empty but continues the chain.
    let delta3 = sites.mirror(json!({})).await;

    // Refusals, each leaving the sealed site as it was after delta 1.
    let state = sites.status();
    assert_eq!(state["last"]["generation"], 3);
    let refused = |output: &Output, code: i32, reason: &str| {
        assert_eq!(output.status.code(), Some(code), "{}", describe(output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("nothing changed") && stderr.contains(reason),
            "{reason}: {}",
            describe(output)
        );
    };
    // A delta that skips one: its base is delta 1's successor.
    refused(
        &sites.import_with(&delta3, &sites.key),
        4,
        "import the missing deltas",
    );
    // The full bundle again, older than what was applied since.
    refused(&sites.import_with(&full, &sites.key), 4, "rollback");
    // Another key.
    let other_key = sites.carry.path().join("other.pub.pem");
    let (_, other) = export_signing::generate("ed25519".parse().unwrap()).unwrap();
    std::fs::write(&other_key, other).unwrap();
    refused(&sites.import_with(&delta2, &other_key), 3, "no signature by key");
    // A flipped byte in a data file, an extra file, a byte flipped in the archive itself.
    let flipped = sites.carry.path().join("flipped-bundle.tar.zst");
    repack(&delta2, &flipped, |entries| {
        let advisories = entries.get_mut("advisory.ndjson").unwrap();
        let middle = advisories.len() / 2;
        advisories[middle] ^= 0x01;
    });
    refused(&sites.import_with(&flipped, &sites.key), 2, "advisory.ndjson");
    let extra = sites.carry.path().join("extra-bundle.tar.zst");
    repack(&delta2, &extra, |entries| {
        entries.insert("notes.txt".to_owned(), b"hello".to_vec());
    });
    refused(&sites.import_with(&extra, &sites.key), 2, "notes.txt");
    let damaged = sites.carry.path().join("damaged-bundle.tar.zst");
    let mut bytes = std::fs::read(&delta2).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    refused(&sites.import_with(&damaged, &sites.key), 2, "corrupt");
    sites.assert_unchanged(&state, &after_delta1).await;

    // The chain goes on, and the last bundle applied again is a no-op.
    sites.import(&delta2, 0);
    sites.assert_equivalent().await;
    sites.import(&delta3, 0);
    let state = sites.status();
    assert_eq!(state["last"]["generation"], 5);
    assert_eq!(state["history"].as_array().unwrap().len(), 5);
    let output = sites.import(&delta3, 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("already applied"));
    let files = sites.assert_equivalent().await;
    sites.assert_unchanged(&state, &files).await;

    // A newer full bundle re-seeds; an expired one is refused (freeze).
    let connected = &sites.connected;
    connected
        .ingest("acme", "csaf-vex-more", &[fixtures().join("csaf-vex")])
        .await;
    let reseed = sites.mirror(json!({ "mirror": { "mode": "full" } })).await;
    sites.import(&reseed, 0);
    sites.assert_equivalent().await;
    let stale = TestApp::spawn_at(TestClock::starting_at(Utc::now() - Duration::days(11)), |_| {}).await;
    let stale_key = sites.carry.path().join("stale.pub.pem");
    std::fs::write(&stale_key, stale.install_signing_key("acme", "signer", "ed25519")).unwrap();
    stale.ingest_fixtures("acme").await;
    let status = stale
        .tenant("acme")
        .export("mirror", json!({ "mirror": { "mode": "full" } }))
        .await;
    let expired = sites.carry.path().join("expired-bundle.tar.zst");
    std::fs::write(
        &expired,
        download_all(&stale, &status)
            .await
            .remove("bundle.tar.zst")
            .unwrap(),
    )
    .unwrap();
    let state = sites.status();
    refused(&sites.import_with(&expired, &stale_key), 4, "expired");
    assert_eq!(sites.status(), state);

    // The operator's readiness details show the import.
    let details: Value = sites.sealed.admin_get("/readyz").await.json().await.unwrap();
    assert_eq!(details["mirrorImports"]["acme"]["generation"], 6, "{details}");
}

#[tokio::test]
async fn a_chain_of_bundles_makes_the_sealed_site_export_what_the_connected_site_does_on_sqlite() {
    a_chain_of_bundles_makes_the_sealed_site_export_what_the_connected_site_does(false).await;
}

#[tokio::test]
async fn a_chain_of_bundles_makes_the_sealed_site_export_what_the_connected_site_does_on_postgres() {
    a_chain_of_bundles_makes_the_sealed_site_export_what_the_connected_site_does(true).await;
}

/// `kill -9` of the import process while it applies a full bundle of the Go database:
/// nothing was applied, and the same bundle then imports.
async fn an_import_killed_mid_apply_leaves_the_store_as_before_it(postgres: bool) {
    let mut sites = Sites::new(postgres).await;
    sites
        .connected
        .ingest("acme", "osv-go-full", &[shared_data().join("osv-go")])
        .await;
    let full = sites.mirror(json!({ "mirror": { "mode": "full" } })).await;
    let before = data_files(&sites.sealed, "signed").await;

    let key = sites.key.to_str().unwrap().to_owned();
    let mut child = sites
        .command(&["--key", &key, full.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let applying = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("1000 items read"));
    assert!(applying, "the import never reported progress");
    let killed = child.id();
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let leftovers = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(&format!(".export-center-import-{killed}-"))
            })
            .count()
    };
    assert_eq!(leftovers(), 1, "the killed import's private copy");

    assert_eq!(sites.status()["last"], Value::Null);
    assert!(
        data_files(&sites.sealed, "signed").await == before,
        "a killed import changed the store"
    );
    sites.import(&full, 0);
    assert_eq!(leftovers(), 0, "the next import removes what a killed one left");
    sites.assert_equivalent().await;
}

#[tokio::test]
async fn an_import_killed_mid_apply_leaves_the_store_as_before_it_on_sqlite() {
    an_import_killed_mid_apply_leaves_the_store_as_before_it(false).await;
}

#[tokio::test]
async fn an_import_killed_mid_apply_leaves_the_store_as_before_it_on_postgres() {
    an_import_killed_mid_apply_leaves_the_store_as_before_it(true).await;
}
