//! `export-center demo`: the quick start. Starts the service on the embedded defaults
//! (SQLite and the local filesystem) in a temporary data directory, ingests the sample
//! evidence, creates a run over HTTP, follows it, downloads every output through its
//! signed URL and checks each one against the manifest and `checksums.txt`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use export_api_types::{ProfileList, RunAccepted, RunStatusResponse};
use export_auth::client::DpopKey;
use export_auth::dev::DevIssuer;
use export_auth::http::DpopClient;
use export_auth::Alg;
use export_core::{Manifest, Sha256Digest, SourceName, SystemClock, TenantId};
use export_signing::KeyAlgorithm;
use reqwest::Method;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, LoggingConfig};
use crate::{ingest, telemetry, App, Config, Role};
use export_verify as verify;

const TENANT: &str = "tenant-default";

pub async fn run(data_dir: Option<PathBuf>, fixtures: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    telemetry::init(&LoggingConfig {
        format: LogFormat::Text,
        level: "warn".to_owned(),
    });
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("export-center-demo-")
            .tempdir()?
            .keep(),
    };
    let fixtures = fixtures.unwrap_or_else(default_fixtures);
    if !fixtures.is_dir() {
        bail!(
            "sample evidence not found at {} (pass --fixtures <dir>)",
            fixtures.display()
        );
    }

    // The demo's profile signs its exports with a key generated in the tenant's keyring.
    let mut config = Config::for_data_dir(&data_dir);
    let keyring = config.keyring_dir().join(TENANT);
    let public_key = keyring.join("demo-signer.pub.pem");
    if !public_key.exists() {
        crate::keys::generate_keys(KeyAlgorithm::Ed25519, &keyring, "demo-signer")?;
    }
    if let Some(profile) = config
        .tenants
        .get_mut(TENANT)
        .and_then(|t| t.profiles.get_mut("default"))
    {
        profile.signing.enabled = true;
        profile.signing.keys = vec![format!("kms://{TENANT}/demo-signer")];
    }
    let app = App::build(config).await?;
    let listeners = app.bind().await?;
    let base = format!("http://{}", listeners.public_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.clone().serve(listeners, Role::All, shutdown.clone()));
    println!("1. started export-center at {base}");
    println!("   data directory: {}", data_dir.display());

    let tenant = TenantId::parse(TENANT)?;
    println!("2. ingesting the sample evidence from {}", fixtures.display());
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&fixtures)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_dir())
        .collect();
    sources.sort();
    for dir in sources {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let source =
            SourceName::parse(&name).with_context(|| format!("source name from {}", dir.display()))?;
        let report = ingest::ingest_paths(
            app.state.store.as_ref(),
            &SystemClock,
            &tenant,
            &source,
            &[dir],
            ingest::IngestMode::Add,
        )
        .await?;
        println!(
            "   {name:<14} {:>3} documents",
            report.inserted + report.replaced + report.unchanged
        );
        if let Some(rejection) = report.rejected.first() {
            bail!("sample evidence rejected: {rejection}");
        }
    }

    // The demo speaks to the server as a real client would: a DPoP-bound token from the
    // dev issuer, and a fresh proof on every request.
    let issuer =
        DevIssuer::load_or_create(&data_dir)?.with_issuer(&app.config.auth.issuer, &app.config.auth.audience);
    let key = DpopKey::generate(Alg::ES256);
    let tenant_id = TenantId::parse(TENANT)?;
    let scopes = ["export:read", "export:write"];
    let token = issuer.mint(
        &tenant_id,
        &scopes,
        "demo",
        key.jwk_thumbprint(),
        Duration::from_secs(3600),
    );
    let api = DpopClient::new(reqwest::Client::new(), token, key);
    let get = |url: String| {
        let api = &api;
        async move {
            api.send(Method::GET, &url, |r| r.header("X-StellaOps-Tenant", TENANT))
                .await?
                .error_for_status()
        }
    };

    let profiles: ProfileList = get(format!("{base}/export-center/profiles"))
        .await?
        .json()
        .await?;
    let profile = profiles.items.first().context("the demo tenant has no profile")?;
    println!(
        "3. creating a run of {} (targets {}, signed)",
        profile.id,
        profile.targets.join(", ")
    );
    let body = serde_json::json!({ "profileId": profile.id });
    let accepted: RunAccepted = api
        .send(Method::POST, &format!("{base}/export-center/runs"), |r| {
            r.header("X-StellaOps-Tenant", TENANT)
                .header("Idempotency-Key", "demo-run")
                .json(&body)
        })
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "   {} is {} (estimate {} s)",
        accepted.run_id, accepted.status, accepted.estimate_seconds
    );

    let status = loop {
        let status: RunStatusResponse = get(format!("{base}{}", accepted.links.status))
            .await?
            .json()
            .await?;
        if !matches!(status.status.as_str(), "queued" | "running") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "4. run {}: {} items, {}%",
        status.status, status.progress.items_total, status.progress.percent
    );
    for warning in &status.warnings {
        println!("   warning {}: {}", warning.code, warning.message);
    }
    if status.status != "succeeded" {
        for error in &status.errors {
            println!("   error {}: {}", error.code, error.message);
        }
        shutdown.cancel();
        let _ = server.await;
        return Ok(ExitCode::from(1));
    }

    let download_dir = data_dir
        .join("downloads")
        .join(accepted.run_id.replace("::", "_"));
    std::fs::create_dir_all(&download_dir)?;
    println!(
        "5. downloading {} outputs through their signed URLs",
        status.outputs.len()
    );
    let mut files = BTreeMap::new();
    let download = reqwest::Client::new();
    let mut links: Vec<(String, String)> = status
        .outputs
        .iter()
        .map(|o| (o.url.clone(), o.sha256.clone()))
        .collect();
    for output in &status.outputs {
        if let Some(dsse_url) = &output.dsse_url {
            links.push((dsse_url.clone(), String::new()));
        }
    }
    for (url, expected) in links {
        let bytes = download
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let digest = Sha256Digest::of(&bytes).to_string();
        if !expected.is_empty() && digest != expected {
            bail!("{url} downloaded with digest {digest}, the run says {expected}");
        }
        let name = file_name(&url)?;
        std::fs::write(download_dir.join(&name), &bytes)?;
        println!("   {name:<24} {:>9} bytes  {}", bytes.len(), &digest[..19]);
        files.insert(name, bytes);
    }

    let manifest: Manifest = serde_json::from_slice(
        files
            .get("manifest.json")
            .context("the run has no manifest.json")?,
    )?;
    for item in &manifest.items {
        let bytes = files
            .get(&item.path)
            .with_context(|| format!("manifest lists {} but it was not served", item.path))?;
        if Sha256Digest::of(bytes) != item.sha256 || bytes.len() as u64 != item.bytes {
            bail!("{} does not match the manifest", item.path);
        }
    }
    let checksums = String::from_utf8(files.get("checksums.txt").context("no checksums.txt")?.to_vec())?;
    for line in checksums.lines() {
        let (hex, path) = line.split_once("  ").context("malformed checksums.txt line")?;
        let bytes = files
            .get(path)
            .with_context(|| format!("checksums.txt lists {path} but it was not served"))?;
        if Sha256Digest::of(bytes).hex() != hex {
            bail!("{path} does not match checksums.txt");
        }
    }
    println!(
        "6. verified {} data files against manifest.json (rerunHash {}) and {} checksums",
        manifest.items.len(),
        &manifest.rerun_hash[..19],
        checksums.lines().count()
    );
    println!("7. offline verification (export-center verify) with the signer's public key:");
    let verdict = verify::verify(&verify::VerifyOptions {
        target: download_dir.clone(),
        keys: vec![public_key.clone()],
        ..Default::default()
    });
    for line in verify::render_text(&verdict).lines() {
        println!("   {line}");
    }
    if !verdict.verified() {
        bail!("the downloaded run did not verify");
    }
    println!("   files: {}", download_dir.display());
    println!(
        "   again by hand: export-center verify {} --key {}",
        download_dir.display(),
        public_key.display()
    );
    println!(
        "   check them yourself: (cd {} && sha256sum -c checksums.txt)",
        download_dir.display()
    );

    shutdown.cancel();
    server.await.context("server task")??;
    Ok(ExitCode::SUCCESS)
}

fn file_name(url: &str) -> anyhow::Result<String> {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/')
        .next()
        .map(str::to_owned)
        .context("download URL without a file name")
}

/// `fixtures/evidence` in the working directory, else in the source tree this binary
/// was built from.
fn default_fixtures() -> PathBuf {
    let local = Path::new("fixtures/evidence");
    if local.is_dir() {
        return local.to_owned();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/evidence")
}
