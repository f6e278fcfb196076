//! Pushing a run to a registry and pulling it back, with `oci-client`.
//!
//! A push never leaves a half-published tag: blobs first, then the manifests by digest
//! (a run with a Trivy database: Trivy's artifact, then the run artifact as its
//! referrer), then the DSSE referrer (and the fallback indexes), and only at the very end
//! the published manifest under its tag. A push that fails is retried from the start with
//! backoff; blobs and manifests are content-addressed, so a retry repeats nothing that
//! already landed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use export_core::{remote_excerpt, EgressRefusal, OciReference, Sha256Digest};
use export_egress::{EgressProxy, EgressSession};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::manifest::{
    artifact_manifest, fallback_tag, index_with, referrer_manifest, trivy_manifest, Descriptor, ImageIndex,
    ImageManifest, RunArtifact, DSSE_ARTIFACT_TYPE, EMPTY_CONFIG, IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, RUN_ARTIFACT_TYPE, RUN_ID_ANNOTATION, TRIVY_CONFIG_MEDIA_TYPE,
};
use crate::settings::{OciSettings, RegistrySettings};

/// The bytes of one output, streamed.
pub type BlobStream = BoxStream<'static, io::Result<Bytes>>;

/// Opens an output of the run by its path (called again on every attempt).
pub type BlobOpener = Arc<dyn Fn(String) -> BoxFuture<'static, io::Result<BlobStream>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("registry `{registry}`: {message}")]
    Registry { registry: String, message: String },
    /// The egress rules refused a connection of the push: the registry itself, or where
    /// it sent the client (a redirect, a token `realm`, an upload `Location`).
    #[error("registry `{registry}`: {refusal}")]
    EgressBlocked {
        registry: String,
        refusal: EgressRefusal,
    },
    #[error("reading output `{path}`: {source}")]
    Output { path: String, source: io::Error },
    #[error("`{reference}`: {message}")]
    Artifact { reference: String, message: String },
    #[error("{0}")]
    Settings(String),
}

/// A published run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `host/repo@sha256:…`: what the distribution reports as `ref`.
    pub reference: String,
    /// The tag it was published under.
    pub tag: String,
    /// The artifact manifest's digest.
    pub digest: String,
    /// The DSSE referrer's manifest digest, when the run was signed.
    pub referrer: Option<String>,
}

/// One file written by [`OciPublisher::pull`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledFile {
    pub path: String,
    pub sha256: Sha256Digest,
    pub bytes: u64,
}

/// Pushes and pulls runs; one per process, cheap to share.
#[derive(Debug, Clone, Default)]
pub struct OciPublisher {
    settings: OciSettings,
    /// Where every connection goes through, on the server; `None` for `exportctl`,
    /// which connects where its user says.
    egress: Option<EgressProxy>,
}

impl OciPublisher {
    pub fn new(settings: OciSettings) -> Result<Self, OciError> {
        settings.validate().map_err(OciError::Settings)?;
        Ok(Self {
            settings,
            egress: None,
        })
    }

    /// Makes every connection (to the registry, its token service, and wherever it
    /// redirects) through `proxy`, which applies the egress rules.
    pub fn with_egress(mut self, proxy: EgressProxy) -> Self {
        self.egress = Some(proxy);
        self
    }

    pub fn settings(&self) -> &OciSettings {
        &self.settings
    }

    /// Pushes `artifact` to `target` (the tag defaults to `default_tag`), retrying with
    /// backoff; `open` supplies each output's bytes by path.
    pub async fn push(
        &self,
        target: &OciReference,
        default_tag: &str,
        artifact: &RunArtifact,
        open: &BlobOpener,
    ) -> Result<Pushed, OciError> {
        let mut backoff = Duration::from_millis(self.settings.retry_backoff_ms);
        let mut attempt = 1;
        loop {
            match self.push_once(target, default_tag, artifact, open).await {
                Ok(pushed) => return Ok(pushed),
                Err(err)
                    if attempt < self.settings.attempts
                        && !matches!(err, OciError::Output { .. } | OciError::EgressBlocked { .. }) =>
                {
                    tracing::warn!(
                        error = %err,
                        "push of {} to {target} failed (attempt {attempt} of {}); retrying in {} ms",
                        artifact.run_id,
                        self.settings.attempts,
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn push_once(
        &self,
        target: &OciReference,
        default_tag: &str,
        artifact: &RunArtifact,
        open: &BlobOpener,
    ) -> Result<Pushed, OciError> {
        let session = Session::new(self, &target.registry, &target.repository)?;
        session.authenticate(RegistryOperation::Push).await?;

        // 1. Blobs: the empty config, every output, nothing the registry already has.
        session.push_bytes(Bytes::from_static(EMPTY_CONFIG)).await?;
        for layer in &artifact.layers {
            session.push_output(&layer.path, &layer.digest, open).await?;
        }

        // 2. The manifests, by digest only: no tag points at them yet. A run with a Trivy
        // database publishes Trivy's artifact, and the run artifact refers to it.
        let manifest = artifact_manifest(artifact);
        let digest = Sha256Digest::of(&manifest).to_string();
        let trivy = artifact.trivy_db.as_ref().map(|db| {
            let bytes = trivy_manifest(db, artifact.created);
            let digest = Sha256Digest::of(&bytes).to_string();
            (bytes, digest)
        });
        if let Some((bytes, trivy_digest)) = &trivy {
            session
                .put_manifest(trivy_digest, bytes.clone(), IMAGE_MANIFEST_MEDIA_TYPE)
                .await?;
        }
        session
            .put_manifest(&digest, manifest.clone(), IMAGE_MANIFEST_MEDIA_TYPE)
            .await?;
        if let Some((_, trivy_digest)) = &trivy {
            // Named by its run: several runs of one snapshot refer to one Trivy artifact.
            let descriptor = Descriptor {
                artifact_type: Some(RUN_ARTIFACT_TYPE.to_owned()),
                annotations: BTreeMap::from([(RUN_ID_ANNOTATION.to_owned(), artifact.run_id.clone())]),
                ..Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, &manifest)
            };
            session.attach(trivy_digest, descriptor).await?;
        }

        // 3. The DSSE envelope as a referrer of the run artifact.
        let referrer = match &artifact.dsse {
            None => None,
            Some(dsse) => {
                session.push_output(&dsse.path, &dsse.digest, open).await?;
                let referrer = referrer_manifest(&manifest, dsse, artifact.created);
                let referrer_digest = Sha256Digest::of(&referrer).to_string();
                session
                    .put_manifest(&referrer_digest, referrer.clone(), IMAGE_MANIFEST_MEDIA_TYPE)
                    .await?;
                let descriptor = Descriptor {
                    artifact_type: Some(DSSE_ARTIFACT_TYPE.to_owned()),
                    ..Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, &referrer)
                };
                session.attach(&digest, descriptor).await?;
                Some(referrer_digest)
            }
        };

        // 4. Publish: the tag, last; it names the Trivy artifact when there is one.
        let (published, published_digest) = trivy.unwrap_or((manifest, digest));
        let tag = target.tag.clone().unwrap_or_else(|| default_tag.to_owned());
        session
            .put_manifest(&tag, published, IMAGE_MANIFEST_MEDIA_TYPE)
            .await?;
        Ok(Pushed {
            reference: format!("{}/{}@{published_digest}", target.registry, target.repository),
            tag,
            digest: published_digest,
            referrer,
        })
    }

    /// Pulls the run artifact at `reference` (`host/repo:tag` or `host/repo@sha256:…`;
    /// for a Trivy database there, the run attached to it) into `dir`, one file per layer named by its title, each checked against its
    /// digest and written under a temporary name first. Returns the files in layer order.
    pub async fn pull(&self, reference: &str, dir: &Path) -> Result<Vec<PulledFile>, OciError> {
        self.pull_run(reference, None, dir).await
    }

    /// [`pull`](Self::pull), choosing among the runs attached to a Trivy database the one
    /// with id `run_id` (runs of one snapshot share one database artifact).
    pub async fn pull_run(
        &self,
        reference: &str,
        run_id: Option<&str>,
        dir: &Path,
    ) -> Result<Vec<PulledFile>, OciError> {
        let (registry, repository, tag_or_digest) = split_reference(reference)?;
        let session = Session::new(self, &registry, &repository)?;
        session.authenticate(RegistryOperation::Pull).await?;
        let (bytes, _) = session
            .get_manifest(&tag_or_digest, &[IMAGE_MANIFEST_MEDIA_TYPE])
            .await?;
        let parse = |bytes: &[u8]| -> Result<ImageManifest, OciError> {
            serde_json::from_slice(bytes).map_err(|err| OciError::Artifact {
                reference: reference.to_owned(),
                message: format!("not an OCI image manifest: {err}"),
            })
        };
        let mut manifest = parse(&bytes)?;
        if manifest.config.media_type == TRIVY_CONFIG_MEDIA_TYPE {
            // A Trivy database: the run is the referrer of type RUN_ARTIFACT_TYPE.
            let subject = Sha256Digest::of(&bytes).to_string();
            let run = session
                .referrers(&subject)
                .await?
                .into_iter()
                .filter(|r| r.artifact_type.as_deref() == Some(RUN_ARTIFACT_TYPE))
                .find(|r| {
                    run_id
                        .is_none_or(|id| r.annotations.get(RUN_ID_ANNOTATION).map(String::as_str) == Some(id))
                })
                .ok_or_else(|| OciError::Artifact {
                    reference: reference.to_owned(),
                    message: match run_id {
                        Some(id) => format!("no run `{id}` is attached to this Trivy database"),
                        None => "a Trivy database with no Export Center run attached to it".to_owned(),
                    },
                })?;
            let (bytes, _) = session
                .get_manifest(&run.digest, &[IMAGE_MANIFEST_MEDIA_TYPE])
                .await?;
            manifest = parse(&bytes)?;
        }
        if manifest.artifact_type.as_deref() != Some(RUN_ARTIFACT_TYPE) {
            return Err(OciError::Artifact {
                reference: reference.to_owned(),
                message: format!(
                    "artifactType is {:?}, not `{RUN_ARTIFACT_TYPE}`: this is not an Export Center run",
                    manifest.artifact_type
                ),
            });
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| OciError::Output {
                path: dir.display().to_string(),
                source,
            })?;
        let mut files = Vec::new();
        for layer in &manifest.layers {
            let path = layer.title().ok_or_else(|| OciError::Artifact {
                reference: reference.to_owned(),
                message: format!("layer {} has no title", layer.digest),
            })?;
            let target = safe_join(dir, path).ok_or_else(|| OciError::Artifact {
                reference: reference.to_owned(),
                message: format!("layer title `{path}` is not a safe relative path"),
            })?;
            files.push(session.pull_layer(layer, path, &target).await?);
        }
        Ok(files)
    }

    /// The referrers of the manifest `digest` in `host/repo`: from the Referrers API when
    /// the registry has it, else from the tag-schema fallback index.
    pub async fn referrers(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Descriptor>, OciError> {
        let session = Session::new(self, registry, repository)?;
        session.authenticate(RegistryOperation::Pull).await?;
        session.referrers(digest).await
    }
}

/// `host/repo:tag` or `host/repo@digest` → (host, repo, tag or digest).
fn split_reference(reference: &str) -> Result<(String, String, String), OciError> {
    let bad = |message: &str| OciError::Artifact {
        reference: reference.to_owned(),
        message: message.to_owned(),
    };
    if let Some((name, digest)) = reference.split_once('@') {
        let parsed = OciReference::parse(name).map_err(|m| bad(&m))?;
        if parsed.tag.is_some() || Sha256Digest::parse(digest).is_none() {
            return Err(bad("expected `host/repo@sha256:<hex>`"));
        }
        return Ok((parsed.registry, parsed.repository, digest.to_owned()));
    }
    let parsed = OciReference::parse(reference).map_err(|m| bad(&m))?;
    let tag = parsed.tag.ok_or_else(|| bad("name a tag or a digest"))?;
    Ok((parsed.registry, parsed.repository, tag))
}

/// `dir/path` when `path` is relative and stays inside `dir`.
fn safe_join(dir: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    let safe = !path.is_empty()
        && relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    safe.then(|| dir.join(relative))
}

/// One registry repository, with the client and credentials it needs.
struct Session {
    client: Client,
    auth: RegistryAuth,
    registry: String,
    repository: String,
    /// The client's way through the egress proxy, which knows what it refused.
    egress: Option<EgressSession>,
}

impl Session {
    fn new(publisher: &OciPublisher, registry: &str, repository: &str) -> Result<Self, OciError> {
        let settings = &publisher.settings;
        let default = RegistrySettings::default();
        let registry_settings = settings.registries.get(registry).unwrap_or(&default);
        // Plain HTTP reaches this registry only, and only when it is `insecure`: a token
        // realm or a redirect elsewhere needs TLS.
        let egress = publisher
            .egress
            .as_ref()
            .map(|proxy| proxy.session(registry_settings.insecure.then_some(registry)));
        let proxy_url = egress.as_ref().map(EgressSession::proxy_url);
        let mut config = ClientConfig {
            protocol: if registry_settings.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            read_timeout: Some(Duration::from_secs(settings.timeout_seconds)),
            connect_timeout: Some(Duration::from_secs(settings.timeout_seconds.min(10))),
            https_proxy: proxy_url.clone(),
            http_proxy: proxy_url,
            ..Default::default()
        };
        if let Some(ca_file) = &registry_settings.ca_file {
            let data = std::fs::read(ca_file).map_err(|err| {
                OciError::Settings(format!(
                    "registries.\"{registry}\".ca_file: cannot read `{}`: {err}",
                    ca_file.display()
                ))
            })?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let password = match (&registry_settings.password, &registry_settings.password_file) {
            (Some(password), _) => Some(password.expose().to_owned()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|err| {
                        OciError::Settings(format!(
                            "registries.\"{registry}\".password_file: cannot read `{}`: {err}",
                            file.display()
                        ))
                    })?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let auth = match (&registry_settings.username, password) {
            (Some(username), Some(password)) => RegistryAuth::Basic(username.clone(), password),
            _ => RegistryAuth::Anonymous,
        };
        export_egress::install_crypto_provider();
        Ok(Self {
            client: Client::new(config),
            auth,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            egress,
        })
    }

    fn error(&self, message: impl Into<String>) -> OciError {
        OciError::Registry {
            registry: self.registry.clone(),
            message: message.into(),
        }
    }

    /// The error of a failed registry operation: the egress refusal behind it if there
    /// was one, else what went wrong in our words, with at most a short sanitised
    /// excerpt of what the registry said (never its body verbatim).
    fn failed(&self, what: &str, err: OciDistributionError) -> OciError {
        if let Some(refusal) = self.egress.as_ref().and_then(EgressSession::take_refusal) {
            return OciError::EgressBlocked {
                registry: self.registry.clone(),
                refusal,
            };
        }
        self.error(format!("{what} in `{}`: {}", self.repository, describe(&err)))
    }

    fn reference(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        } else {
            Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        }
    }

    async fn authenticate(&self, operation: RegistryOperation) -> Result<(), OciError> {
        let reference = self.reference("latest");
        self.client
            .auth(&reference, &self.auth, operation)
            .await
            .map(|_| ())
            .map_err(|err| self.failed("authentication", err))
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        self.client
            .blob_exists(&self.reference(digest), digest)
            .await
            .map_err(|err| self.failed(&format!("checking blob {digest}"), err))
    }

    async fn push_bytes(&self, bytes: Bytes) -> Result<(), OciError> {
        let digest = Sha256Digest::of(&bytes).to_string();
        if self.has_blob(&digest).await? {
            return Ok(());
        }
        self.client
            .push_blob(&self.reference(&digest), bytes, &digest)
            .await
            .map(|_| ())
            .map_err(|err| self.failed(&format!("pushing blob {digest}"), err))
    }

    async fn push_output(
        &self,
        path: &str,
        digest: &Sha256Digest,
        open: &BlobOpener,
    ) -> Result<(), OciError> {
        let digest = digest.to_string();
        if self.has_blob(&digest).await? {
            return Ok(());
        }
        let stream = open(path.to_owned()).await.map_err(|source| OciError::Output {
            path: path.to_owned(),
            source,
        })?;
        let stream = stream.map_err(|err| OciDistributionError::GenericError(Some(err.to_string())));
        self.client
            .push_blob_stream(&self.reference(&digest), stream, &digest)
            .await
            .map(|_| ())
            .map_err(|err| self.failed(&format!("pushing `{path}` ({digest})"), err))
    }

    async fn put_manifest(
        &self,
        tag_or_digest: &str,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<(), OciError> {
        let content_type = media_type.parse().expect("a media type is a header value");
        self.client
            .push_manifest_raw(&self.reference(tag_or_digest), body, content_type)
            .await
            .map(|_| ())
            .map_err(|err| self.failed(&format!("pushing manifest `{tag_or_digest}`"), err))
    }

    async fn get_manifest(
        &self,
        tag_or_digest: &str,
        media_types: &[&str],
    ) -> Result<(Bytes, String), OciError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&self.reference(tag_or_digest), &self.auth, media_types)
            .await
            .map_err(|err| self.failed(&format!("pulling manifest `{tag_or_digest}`"), err))?;
        if tag_or_digest.starts_with("sha256:") && Sha256Digest::of(&bytes).to_string() != tag_or_digest {
            return Err(self.error(format!("manifest `{tag_or_digest}` does not match its digest")));
        }
        Ok((bytes, digest))
    }

    /// The referrers of the manifest `subject`: from the Referrers API when the registry
    /// has it, else from the tag-schema fallback index.
    async fn referrers(&self, subject: &str) -> Result<Vec<Descriptor>, OciError> {
        if let Ok(index) = self.client.pull_referrers(&self.reference(subject), None).await {
            let index: ImageIndex =
                serde_json::from_value(serde_json::to_value(index).unwrap_or_default())
                    .map_err(|err| self.error(format!("unreadable referrers index: {err}")))?;
            return Ok(index.manifests);
        }
        Ok(self
            .fallback_index(subject)
            .await?
            .map(|i| i.manifests)
            .unwrap_or_default())
    }

    /// Makes `referrer` (already pushed) findable as a referrer of `subject`: through the
    /// Referrers API when the registry lists it by itself, else the fallback index.
    async fn attach(&self, subject: &str, referrer: Descriptor) -> Result<(), OciError> {
        if !self.referrers_api_lists(subject, &referrer.digest).await {
            self.add_to_fallback_index(subject, referrer).await?;
        }
        Ok(())
    }

    /// Whether the registry has the Referrers API and it lists `referrer` for `subject`.
    async fn referrers_api_lists(&self, subject: &str, referrer: &str) -> bool {
        match self.client.pull_referrers(&self.reference(subject), None).await {
            Ok(index) => index.manifests.iter().any(|m| m.digest == referrer),
            Err(err) => {
                tracing::debug!(
                    "registry {} has no Referrers API ({err}); using the tag fallback",
                    self.registry
                );
                false
            }
        }
    }

    async fn fallback_index(&self, subject: &str) -> Result<Option<ImageIndex>, OciError> {
        let tag = fallback_tag(subject);
        match self
            .client
            .pull_manifest_raw(&self.reference(&tag), &self.auth, &[IMAGE_INDEX_MEDIA_TYPE])
            .await
        {
            Ok((bytes, _)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| self.error(format!("the referrers index `{tag}` is not an OCI index: {err}"))),
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope
                    .errors
                    .iter()
                    .any(|e| format!("{:?}", e.code).contains("ManifestUnknown")) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.failed(&format!("reading the referrers index `{tag}`"), err)),
        }
    }

    async fn add_to_fallback_index(&self, subject: &str, referrer: Descriptor) -> Result<(), OciError> {
        let index = self.fallback_index(subject).await?;
        let body = index_with(index, referrer);
        self.put_manifest(&fallback_tag(subject), body, IMAGE_INDEX_MEDIA_TYPE)
            .await
    }

    async fn pull_layer(
        &self,
        layer: &Descriptor,
        path: &str,
        target: &Path,
    ) -> Result<PulledFile, OciError> {
        let io_error = |source| OciError::Output {
            path: target.display().to_string(),
            source,
        };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io_error)?;
        }
        let partial = target.with_extension("partial");
        let mut file = tokio::fs::File::create(&partial).await.map_err(io_error)?;
        let descriptor: &str = &layer.digest;
        let mut stream = self
            .client
            .pull_blob_stream(&self.reference(&layer.digest), descriptor)
            .await
            .map_err(|err| self.failed(&format!("pulling `{path}`"), err))?
            .stream;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let result: Result<(), OciError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|err| {
                    self.error(format!("pulling `{path}`: {}", remote_excerpt(&err.to_string())))
                })?;
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io_error)?;
            }
            file.flush().await.map_err(io_error)?;
            file.sync_all().await.map_err(io_error)?;
            Ok(())
        }
        .await;
        let sha256 = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Err(err) = result {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
        if sha256 != layer.digest || bytes != layer.size {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(self.error(format!(
                "`{path}` arrived as {sha256} ({bytes} bytes), expected {} ({} bytes)",
                layer.digest, layer.size
            )));
        }
        tokio::fs::rename(&partial, target).await.map_err(io_error)?;
        Ok(PulledFile {
            path: path.to_owned(),
            sha256: Sha256Digest::parse(&sha256).expect("a digest we formatted"),
            bytes,
        })
    }
}

/// What went wrong, in words that hold no remote body: the HTTP status and the OCI error
/// codes (a fixed vocabulary), and a bounded, sanitised excerpt of any message.
fn describe(err: &OciDistributionError) -> String {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|error| format!("{:?}", error.code))
                .collect();
            let message = envelope
                .errors
                .first()
                .map(|error| remote_excerpt(&error.message))
                .unwrap_or_default();
            format!("the registry answered {}: {message}", codes.join(", "))
        }
        OciDistributionError::ServerError { code, message, .. } => {
            format!("the registry answered HTTP {code}: {}", remote_excerpt(message))
        }
        OciDistributionError::UnauthorizedError { .. } => {
            "the registry answered HTTP 401 (not authorized)".to_owned()
        }
        OciDistributionError::AuthenticationFailure(message) => {
            format!("authentication failed: {}", remote_excerpt(message))
        }
        OciDistributionError::RequestError(err) => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            remote_excerpt(&text)
        }
        other => remote_excerpt(&other.to_string()),
    }
}
