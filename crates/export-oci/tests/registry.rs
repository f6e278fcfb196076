//! Pushing runs to a real registry (Debian's docker-registry, the CNCF distribution
//! registry 2.8, which has no Referrers API) and pulling them back, with our client and
//! with skopeo.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use export_core::{OciReference, Sha256Digest};
use export_oci::testing::RegistryServer;
use export_oci::{
    BlobOpener, Layer, OciError, OciPublisher, Pushed, RunArtifact, DSSE_ARTIFACT_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, RUN_ARTIFACT_TYPE, TRIVY_CONFIG_MEDIA_TYPE, TRIVY_DB_LAYER_MEDIA_TYPE,
};
use futures::FutureExt;

fn files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert(
        "advisory.ndjson".to_owned(),
        b"{\"id\":\"GO-2024-0001\"}\n".to_vec(),
    );
    files.insert("manifest.json".to_owned(), b"{\"schema\":\"manifest\"}".to_vec());
    files.insert(
        "manifest.dsse.json".to_owned(),
        b"{\"payload\":\"e30=\"}".to_vec(),
    );
    // Bigger than one chunk of the client's chunked upload.
    files.insert(
        "bundle.tar.zst".to_owned(),
        (0..9_000_000u32).map(|i| (i * 7 % 251) as u8).collect(),
    );
    files
}

fn layer(path: &str, bytes: &[u8]) -> Layer {
    Layer {
        path: path.to_owned(),
        media_type: "application/octet-stream".to_owned(),
        digest: Sha256Digest::of(bytes),
        size: bytes.len() as u64,
    }
}

fn artifact(files: &BTreeMap<String, Vec<u8>>) -> RunArtifact {
    RunArtifact {
        run_id: "export-run::acme::2025-12-06::0003".to_owned(),
        tenant: "acme".to_owned(),
        manifest_digest: Sha256Digest::of(&files["manifest.json"]),
        created: "2025-12-06T10:00:00Z".parse().unwrap(),
        layers: files.iter().map(|(path, bytes)| layer(path, bytes)).collect(),
        dsse: Some(layer("manifest.dsse.json", &files["manifest.dsse.json"])),
        trivy_db: None,
    }
}

/// Serves `files` in 64 KiB chunks; `fail` names a path whose stream breaks halfway.
fn opener(files: BTreeMap<String, Vec<u8>>, fail: Option<&'static str>) -> BlobOpener {
    let files = Arc::new(files);
    Arc::new(move |path: String| {
        let files = files.clone();
        async move {
            let bytes = files
                .get(&path)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.clone()))?;
            let mut chunks: Vec<io::Result<Bytes>> = bytes
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            if fail == Some(path.as_str()) {
                chunks.truncate(chunks.len() / 2);
                chunks.push(Err(io::Error::other("disk read error")));
            }
            Ok(futures::stream::iter(chunks).boxed())
        }
        .boxed()
    })
}

use futures::StreamExt;

fn target(registry: &RegistryServer, rest: &str) -> OciReference {
    OciReference::parse(&format!("{}/{rest}", registry.address)).unwrap()
}

fn skopeo_tags(registry: &RegistryServer, repository: &str) -> Vec<String> {
    let output = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/{repository}", registry.address))
        .output()
        .expect("skopeo is installed (apt-get install skopeo; scripts/test does)");
    if !output.status.success() {
        // A repository that never got a manifest has no tags to list.
        return Vec::new();
    }
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    listed["Tags"]
        .as_array()
        .map(|tags| tags.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Pushes `artifact` to `<registry>/<rest>` (the tag defaults to `default_tag`), its
/// outputs served from `files`.
async fn push(
    publisher: &OciPublisher,
    registry: &RegistryServer,
    rest: &str,
    default_tag: &str,
    artifact: &RunArtifact,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Pushed, OciError> {
    publisher
        .push(
            &target(registry, rest),
            default_tag,
            artifact,
            &opener(files.clone(), None),
        )
        .await
}

/// `skopeo copy docker://<registry>/<rest> dir:<new directory>`: a manifest and its blobs,
/// fetched by the standard tool.
fn skopeo_copy(registry: &RegistryServer, rest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--quiet"])
        .arg(format!("docker://{}/{rest}", registry.address))
        .arg(format!("dir:{}", dir.path().display()))
        .status()
        .expect("skopeo is installed (apt-get install skopeo; scripts/test does)");
    assert!(status.success(), "skopeo copy of {rest} failed");
    dir
}

/// Every one of `files` is in `dir`, byte for byte.
#[track_caller]
fn assert_holds(dir: &std::path::Path, files: &BTreeMap<String, Vec<u8>>) {
    for (path, bytes) in files {
        assert_eq!(&std::fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
}

/// A run whose outputs `files` include a Trivy database, `trivy-db.tar.gz`.
fn trivy_run(files: &BTreeMap<String, Vec<u8>>, run_id: &str) -> RunArtifact {
    RunArtifact {
        run_id: run_id.to_owned(),
        trivy_db: Some(Layer {
            media_type: TRIVY_DB_LAYER_MEDIA_TYPE.to_owned(),
            ..layer("trivy-db.tar.gz", &files["trivy-db.tar.gz"])
        }),
        ..artifact(files)
    }
}

#[tokio::test]
async fn a_pushed_run_pulls_back_byte_for_byte_with_skopeo_and_our_client() {
    let registry = RegistryServer::start();
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let files = files();
    let artifact = artifact(&files);
    let pushed = push(&publisher, &registry, "exports/daily", "0003", &artifact, &files)
        .await
        .expect("push");
    assert_eq!(pushed.tag, "0003");
    assert!(pushed
        .reference
        .starts_with(&format!("{}/exports/daily@sha256:", registry.address)));

    // skopeo: the standard tool sees the tag and every layer, byte for byte.
    let dir = skopeo_copy(&registry, "exports/daily:0003");
    let manifest_bytes = std::fs::read(dir.path().join("manifest.json")).unwrap();
    assert_eq!(format!("{}", Sha256Digest::of(&manifest_bytes)), pushed.digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.export-center.run.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["dev.export-center.run-id"],
        artifact.run_id
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        "2025-12-06T10:00:00Z"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), files.len());
    for layer in layers {
        let title = layer["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap();
        let hex = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let pulled = std::fs::read(dir.path().join(hex)).unwrap();
        assert_eq!(pulled, files[title], "{title} differs after skopeo copy");
    }

    // Our client, by digest, into a directory.
    let out = tempfile::tempdir().unwrap();
    let pulled = publisher.pull(&pushed.reference, out.path()).await.expect("pull");
    assert_eq!(pulled.len(), files.len());
    assert_holds(out.path(), &files);
    assert!(
        std::fs::read_dir(out.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "no temporary file is left"
    );

    // The DSSE referrer, through the tag-schema fallback (this registry has no Referrers API).
    let fallback = format!("sha256-{}", pushed.digest.trim_start_matches("sha256:"));
    assert!(skopeo_tags(&registry, "exports/daily").contains(&fallback));
    let referrers = publisher
        .referrers(&registry.address, "exports/daily", &pushed.digest)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].artifact_type.as_deref(), Some(DSSE_ARTIFACT_TYPE));
    assert_eq!(Some(&referrers[0].digest), pushed.referrer.as_ref());
    let referrer_dir = skopeo_copy(&registry, &format!("exports/daily@{}", referrers[0].digest));
    let referrer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(referrer_dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(referrer["subject"]["digest"], pushed.digest);
    assert_eq!(referrer["subject"]["mediaType"], IMAGE_MANIFEST_MEDIA_TYPE);
    let envelope_hex = referrer["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(referrer_dir.path().join(envelope_hex)).unwrap(),
        files["manifest.dsse.json"]
    );

    // Pushing the same run again changes nothing: same digest, one referrer.
    let again = push(&publisher, &registry, "exports/daily", "0003", &artifact, &files)
        .await
        .unwrap();
    assert_eq!(again, pushed);
    let referrers = publisher
        .referrers(&registry.address, "exports/daily", &pushed.digest)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);
}

#[tokio::test]
async fn a_run_with_a_trivy_database_publishes_trivys_shape_and_pulls_back_whole() {
    let registry = RegistryServer::start();
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let mut files = files();
    files.insert("trivy-db.tar.gz".to_owned(), b"\x1f\x8b a database".to_vec());
    let artifact = trivy_run(&files, "export-run::acme::2025-12-06::0003");
    let pushed = push(&publisher, &registry, "acme/trivy", "2", &artifact, &files)
        .await
        .expect("push");
    assert_eq!(pushed.tag, "2");

    // The tag names Trivy's shape: its config type and the database as the one layer.
    let dir = skopeo_copy(&registry, "acme/trivy:2");
    let manifest_bytes = std::fs::read(dir.path().join("manifest.json")).unwrap();
    assert_eq!(Sha256Digest::of(&manifest_bytes).to_string(), pushed.digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["config"]["mediaType"], TRIVY_CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], TRIVY_DB_LAYER_MEDIA_TYPE);
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "db.tar.gz"
    );
    let hex = layers[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(dir.path().join(hex)).unwrap(),
        files["trivy-db.tar.gz"]
    );

    // The run is its referrer; pulling the tag pulls the whole run.
    let referrers = publisher
        .referrers(&registry.address, "acme/trivy", &pushed.digest)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].artifact_type.as_deref(), Some(RUN_ARTIFACT_TYPE));
    let out = tempfile::tempdir().unwrap();
    let pulled = publisher
        .pull(&format!("{}/acme/trivy:2", registry.address), out.path())
        .await
        .expect("pull");
    assert_eq!(pulled.len(), files.len());
    assert_holds(out.path(), &files);
    // The run artifact keeps its own DSSE referrer.
    let run_referrers = publisher
        .referrers(&registry.address, "acme/trivy", &referrers[0].digest)
        .await
        .unwrap();
    assert_eq!(run_referrers.len(), 1);
    assert_eq!(
        run_referrers[0].artifact_type.as_deref(),
        Some(DSSE_ARTIFACT_TYPE)
    );

    // Pushing again changes nothing.
    let again = push(&publisher, &registry, "acme/trivy", "2", &artifact, &files)
        .await
        .unwrap();
    assert_eq!(again, pushed);
    let referrers = publisher
        .referrers(&registry.address, "acme/trivy", &pushed.digest)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);

    // Another run of the same snapshot has the same database, so the same Trivy artifact:
    // both runs are its referrers, and each pulls back by its id.
    let mut other_files = files.clone();
    other_files.insert(
        "manifest.json".to_owned(),
        b"{\"schema\":\"manifest\",\"run\":4}".to_vec(),
    );
    let other = trivy_run(&other_files, "export-run::acme::2025-12-06::0004");
    let other_pushed = push(&publisher, &registry, "acme/trivy", "2", &other, &other_files)
        .await
        .unwrap();
    assert_eq!(other_pushed.digest, pushed.digest, "one Trivy artifact");
    let referrers = publisher
        .referrers(&registry.address, "acme/trivy", &pushed.digest)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 2);
    for (run_id, expected) in [(&artifact.run_id, &files), (&other.run_id, &other_files)] {
        let out = tempfile::tempdir().unwrap();
        publisher
            .pull_run(&pushed.reference, Some(run_id), out.path())
            .await
            .expect("pull by run id");
        assert_holds(out.path(), expected);
    }
    let out = tempfile::tempdir().unwrap();
    let missing = publisher
        .pull_run(
            &pushed.reference,
            Some("export-run::acme::2025-12-06::0009"),
            out.path(),
        )
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no run `export-run::acme::2025-12-06::0009`"),
        "{missing}"
    );
}

#[tokio::test]
async fn an_explicit_tag_wins_over_the_default() {
    let registry = RegistryServer::start();
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let files = files();
    let pushed = push(
        &publisher,
        &registry,
        "exports/weekly:latest-vex",
        "0001",
        &artifact(&files),
        &files,
    )
    .await
    .unwrap();
    assert_eq!(pushed.tag, "latest-vex");
    assert!(skopeo_tags(&registry, "exports/weekly").contains(&"latest-vex".to_owned()));
}

#[tokio::test]
async fn a_failed_push_publishes_no_tag() {
    let registry = RegistryServer::start();
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let files = files();
    let err = publisher
        .push(
            &target(&registry, "exports/broken"),
            "0003",
            &artifact(&files),
            &opener(files, Some("bundle.tar.zst")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OciError::Output { .. } | OciError::Registry { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bundle.tar.zst"), "{err}");
    assert!(
        !skopeo_tags(&registry, "exports/broken").contains(&"0003".to_owned()),
        "the tag must not exist after a failed push"
    );
}

#[tokio::test]
async fn a_registry_that_refuses_pushes_fails_after_the_retries_with_no_tag() {
    let registry = RegistryServer::start_read_only();
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let files = files();
    let err = push(
        &publisher,
        &registry,
        "exports/daily",
        "0003",
        &artifact(&files),
        &files,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OciError::Registry { .. }), "{err}");
    assert!(
        err.to_string().contains(&registry.address),
        "the error names the registry: {err}"
    );
    assert!(skopeo_tags(&registry, "exports/daily").is_empty());
}

#[tokio::test]
async fn a_registry_that_is_down_fails_with_its_address() {
    let mut registry = RegistryServer::start();
    let settings = registry.settings();
    registry.stop();
    let publisher = OciPublisher::new(settings).unwrap();
    let files = files();
    let started = std::time::Instant::now();
    let err = push(
        &publisher,
        &registry,
        "exports/daily",
        "0003",
        &artifact(&files),
        &files,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&registry.address), "{err}");
    // Three attempts with 50 ms and 100 ms of backoff between them.
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn pulling_something_that_is_not_a_run_is_refused() {
    let registry = RegistryServer::start();
    let publisher = OciPublisher::new(registry.settings()).unwrap();
    let files = files();
    let pushed = push(
        &publisher,
        &registry,
        "exports/daily",
        "0003",
        &artifact(&files),
        &files,
    )
    .await
    .unwrap();
    // The referrer manifest is an OCI manifest, but not a run.
    let referrer = format!("{}/exports/daily@{}", registry.address, pushed.referrer.unwrap());
    let err = publisher
        .pull(&referrer, tempfile::tempdir().unwrap().path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an Export Center run"), "{err}");
}

#[tokio::test]
async fn per_registry_credentials_are_used_and_wrong_ones_refused() {
    let registry = RegistryServer::start_with_basic_auth();
    let files = files();
    let push = |settings: export_oci::OciSettings| {
        let files = files.clone();
        let target = target(&registry, "exports/private");
        async move {
            OciPublisher::new(settings)
                .unwrap()
                .push(&target, "0001", &artifact(&files), &opener(files.clone(), None))
                .await
        }
    };
    let with = |username: Option<&str>, password: Option<&str>| {
        let mut settings = registry.settings();
        let entry = settings.registries.get_mut(&registry.address).unwrap();
        entry.username = username.map(str::to_owned);
        entry.password = password.map(export_core::Secret::new);
        settings
    };

    let err = push(with(None, None)).await.unwrap_err();
    assert!(err.to_string().contains(&registry.address), "{err}");
    let err = push(with(Some(RegistryServer::USERNAME), Some("wrong")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&registry.address), "{err}");

    // The password can also come from a file (first line).
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{}\n", RegistryServer::PASSWORD)).unwrap();
    let mut settings = with(Some(RegistryServer::USERNAME), None);
    settings
        .registries
        .get_mut(&registry.address)
        .unwrap()
        .password_file = Some(secret.path().to_owned());
    let pushed = push(settings).await.expect("push with the password file");

    let out = tempfile::tempdir().unwrap();
    let puller = OciPublisher::new(with(
        Some(RegistryServer::USERNAME),
        Some(RegistryServer::PASSWORD),
    ))
    .unwrap();
    assert_eq!(
        puller.pull(&pushed.reference, out.path()).await.unwrap().len(),
        files.len()
    );
}
