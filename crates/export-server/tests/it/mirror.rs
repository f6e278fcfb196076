//! Mirror bundles for sealed sites (SPEC §15): a full bundle, a delta of what changed
//! since its base with the removals, `mirror.json`, and the refusals of a delta without a
//! usable base.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use export_server::ingest::IngestMode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_problem, download_all, fixtures, TestApp};

/// A copy of the `osv-go` fixtures in which `changed` has another summary, `removed` is
/// missing and `GO-2099-0001` is new (a copy of GO-2020-0001 under that id).
pub(crate) fn changed_osv_go(dir: &Path, changed: &str, removed: &str) -> PathBuf {
    let out = dir.join("osv-go");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(fixtures().join("osv-go")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".json") || name == format!("{removed}.json") {
            continue;
        }
        let mut document: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if name == format!("{changed}.json") {
            document["summary"] = json!("Summary rewritten by the connected site");
        }
        std::fs::write(out.join(&name), serde_json::to_vec(&document).unwrap()).unwrap();
        if name == "GO-2020-0001.json" {
            document["id"] = json!("GO-2099-0001");
            std::fs::write(
                out.join("GO-2099-0001.json"),
                serde_json::to_vec(&document).unwrap(),
            )
            .unwrap();
        }
    }
    out
}

/// The ids of the records of an `ndjson` data file.
pub(crate) fn record_ids(ndjson: &[u8]) -> Vec<String> {
    ndjson
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let record: Value = serde_json::from_slice(line).unwrap();
            record["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Every file of a run but its provenance, which names the run.
fn content(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&String, &Vec<u8>> {
    files
        .iter()
        .filter(|(name, _)| name.as_str() != "provenance.dsse.json")
        .collect()
}

#[tokio::test]
async fn a_delta_holds_what_changed_since_its_base_and_the_removals_and_reruns_identically() {
    let app = TestApp::spawn().await;
    let public_key = app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let acme = app.tenant("acme");

    let full = acme
        .export("mirror", json!({ "mirror": { "mode": "full" } }))
        .await;
    assert_eq!(full.status, "succeeded", "{:?}", full.errors);
    let full_files = download_all(&app, &full).await;
    let full_mirror: Value = serde_json::from_slice(&full_files["mirror.json"]).unwrap();
    assert_eq!(full_mirror["schema"], "export-center/mirror/v1");
    assert_eq!(full_mirror["mode"], "full");
    assert_eq!(full_mirror["tenant"], "acme");
    assert_eq!(full_mirror["profile"], "export-profile::acme::mirror");
    assert!(full_mirror.get("base").is_none());
    assert!(!full_files.contains_key("tombstones.ndjson"));
    assert_eq!(
        full_files.keys().collect::<Vec<_>>(),
        [
            "advisory.ndjson",
            "bundle.tar.zst",
            "checksums.txt",
            "manifest.json",
            "mirror.json",
            "provenance.dsse.json",
            "vex.ndjson"
        ],
        "a mirror is every target of the profile in ndjson, signed and bundled"
    );
    assert!(
        full.outputs.iter().any(|output| output.dsse_url.is_some()),
        "the manifest is signed"
    );
    let manifest: Value = serde_json::from_slice(&full_files["manifest.json"]).unwrap();
    let mirror_item = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["path"] == "mirror.json")
        .expect("mirror.json is a manifest item");
    assert_eq!(mirror_item["sha256"], sha256(&full_files["mirror.json"]));
    assert_eq!(manifest["request"]["mirror"], json!({ "mode": "full" }));
    assert_eq!(record_ids(&full_files["advisory.ndjson"]).len(), 28);

    // One item changed, one added, one removed.
    let input = tempfile::tempdir().unwrap();
    let osv_go = changed_osv_go(input.path(), "GO-2020-0025", "GO-2020-0050");
    let report = app.ingest_as(IngestMode::Sync, "acme", "osv-go", &[osv_go]).await;
    assert_eq!((report.inserted, report.replaced, report.removed), (1, 1, 1));

    // The profile's mode is `delta`; its base is the newest mirror run.
    let delta = acme.export("mirror", json!({})).await;
    assert_eq!(delta.status, "succeeded", "{:?}", delta.errors);
    assert_eq!(
        (delta.progress.items_total, delta.progress.items_completed),
        (2, 2),
        "a delta counts what changed"
    );
    let files = download_all(&app, &delta).await;
    assert_eq!(
        record_ids(&files["advisory.ndjson"]),
        ["GO-2020-0025", "GO-2099-0001"]
    );
    assert!(files["vex.ndjson"].is_empty(), "nothing of vex changed");
    assert_eq!(
        files["tombstones.ndjson"],
        b"{\"id\":\"GO-2020-0050\",\"kind\":\"advisory\",\"source\":\"osv-go\"}\n"
    );
    let mirror: Value = serde_json::from_slice(&files["mirror.json"]).unwrap();
    assert_eq!(mirror["mode"], "delta");
    assert_eq!(
        mirror["base"],
        json!({ "watermark": full_mirror["watermark"], "manifestDigest": sha256(&full_files["manifest.json"]) })
    );
    assert!(mirror["watermark"].as_i64().unwrap() > full_mirror["watermark"].as_i64().unwrap());
    let snapshot_time =
        chrono::DateTime::parse_from_rfc3339(mirror["snapshotTime"].as_str().unwrap()).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(mirror["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires_at - snapshot_time,
        chrono::Duration::days(10),
        "the profile's valid_days"
    );
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let paths: Vec<&str> = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "advisory.ndjson",
            "mirror.json",
            "tombstones.ndjson",
            "vex.ndjson"
        ]
    );

    // The bundle verifies with the key alone, mirror.json and tombstones included.
    let key = input.path().join("signer.pub.pem");
    std::fs::write(&key, &public_key).unwrap();
    let bundle = input.path().join("bundle.tar.zst");
    std::fs::write(&bundle, &files["bundle.tar.zst"]).unwrap();
    let verdict = export_verify::verify(&export_verify::VerifyOptions {
        target: bundle,
        keys: vec![key],
        provenance: None,
        identity: None,
        limits: Default::default(),
    });
    assert!(verdict.verified(), "{}", export_verify::render_text(&verdict));

    // The same delta again, its base named: the same bytes.
    let again = acme
        .export(
            "mirror",
            json!({ "mirror": { "mode": "delta", "baseRunId": full.run_id } }),
        )
        .await;
    assert_ne!(again.run_id, delta.run_id);
    assert_eq!(content(&download_all(&app, &again).await), content(&files));
}

#[tokio::test]
async fn a_delta_without_a_usable_base_is_refused_naming_the_base() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.install_signing_key("globex", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    app.ingest_fixtures("globex").await;
    let (acme, globex) = (app.tenant("acme"), app.tenant("globex"));
    let refused = |response: reqwest::Response| async move {
        let body = assert_problem(response, 400, "ERR_EXPORT_BASE_MISSING").await;
        assert_eq!(body["errors"][0]["field"], "mirror.baseRunId", "{body}");
        body
    };
    let create = |client: &crate::helpers::TenantClient<'_>, body: Value| {
        let request = client.post("/export-center/runs").json(&body);
        async move { request.send().await.unwrap() }
    };

    // No mirror run yet.
    let body = refused(create(&acme, json!({ "profileId": acme.profile_id("mirror") })).await).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("make a `full` one first"),
        "{body}"
    );
    // Another tenant's run, a run that is no mirror, an unknown run.
    let theirs = globex.export("mirror", json!({})).await;
    assert_eq!(theirs.status, "succeeded", "{:?}", theirs.errors);
    let plain = acme.export("daily", json!({})).await;
    for base in [
        &theirs.run_id,
        &plain.run_id,
        "export-run::acme::2020-01-01::0001",
    ] {
        let body = json!({ "profileId": acme.profile_id("mirror"), "mirror": { "baseRunId": base } });
        refused(create(&acme, body).await).await;
    }
    // A base on a full request, or a mirror on a profile without one, is another mistake.
    let full_with_base = json!({
        "profileId": acme.profile_id("mirror"),
        "mirror": { "mode": "full", "baseRunId": plain.run_id },
    });
    let body = assert_problem(
        create(&acme, full_with_base).await,
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "mirror.baseRunId");
    let not_a_mirror = json!({ "profileId": acme.profile_id("daily"), "mirror": { "mode": "full" } });
    let body = assert_problem(
        create(&acme, not_a_mirror).await,
        400,
        "ERR_EXPORT_REQUEST_INVALID",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "mirror");

    // Once a full mirror exists, a delta finds it.
    let full = acme
        .export("mirror", json!({ "mirror": { "mode": "full" } }))
        .await;
    assert_eq!(full.status, "succeeded");
    let delta = acme.export("mirror", json!({})).await;
    assert_eq!(delta.status, "succeeded", "{:?}", delta.errors);
}

/// Stores `documents` (JSON) as source `source` of `tenant`, straight into the store.
async fn store_documents(app: &TestApp, tenant: &str, source: &str, documents: impl Iterator<Item = Value>) {
    use export_core::{Clock, SourceName, TenantId};
    let (tenant, source) = (
        TenantId::parse(tenant).unwrap(),
        SourceName::parse(source).unwrap(),
    );
    let now = app.clock.now();
    let mut batch = Vec::new();
    let mut documents = documents.peekable();
    while documents.peek().is_some() {
        batch.clear();
        for document in documents.by_ref().take(2_000) {
            let parsed = export_evidence::parse_document(&serde_json::to_vec(&document).unwrap()).unwrap();
            batch.push(export_server::ingest::new_evidence(parsed, &source, now));
        }
        app.app.state.store.ingest(&tenant, &batch).await.unwrap();
    }
}

/// The real Go advisories, as the templates of generated ones.
fn go_advisories() -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(crate::helpers::shared_data().join("osv-go"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        .collect()
}

/// Advisory `index`: a real Go advisory under a new id (the templates repeat every 4,291
/// documents, about 10 MB apart, beyond the reach of zstd's window, as distinct
/// documents would be).
fn generated_advisory(templates: &[Value], index: usize, revision: usize) -> Value {
    let mut document = templates[index % templates.len()].clone();
    document["id"] = json!(format!("GO-9{:03}-{:05}", index / 100_000, index % 100_000));
    if revision > 0 {
        document["summary"] = json!(format!(
            "{} (revision {revision})",
            document["summary"].as_str().unwrap_or("")
        ));
    }
    document
}

/// SPEC §15's size promise: a delta carries only what changed. On 100,000 advisories with
/// 1 % of them changed, the delta bundle is under 2 % of the full bundle.
#[tokio::test]
async fn a_delta_after_one_percent_of_changes_is_under_two_percent_of_the_full_bundle() {
    const DOCS: usize = 100_000;
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    let templates = go_advisories();
    store_documents(
        &app,
        "acme",
        "osv-go",
        (0..DOCS).map(|i| generated_advisory(&templates, i, 0)),
    )
    .await;
    let acme = app.tenant("acme");
    let bundle_bytes = |status: &export_api_types::RunStatusResponse| {
        assert_eq!(status.status, "succeeded", "{:?}", status.errors);
        status
            .outputs
            .iter()
            .find(|output| output.kind == "bundle")
            .unwrap()
            .bytes
    };
    let full = acme
        .export("mirror", json!({ "mirror": { "mode": "full" } }))
        .await;
    let changed = (0..DOCS)
        .step_by(100)
        .map(|i| generated_advisory(&templates, i, 1));
    store_documents(&app, "acme", "osv-go", changed).await;
    let delta = acme.export("mirror", json!({})).await;
    let (full, delta) = (bundle_bytes(&full), bundle_bytes(&delta));
    println!(
        "full bundle {full} bytes, delta bundle {delta} bytes ({:.2} %)",
        delta as f64 * 100.0 / full as f64
    );
    assert!(
        delta * 50 < full,
        "the delta is {delta} bytes, the full bundle {full}"
    );
}
