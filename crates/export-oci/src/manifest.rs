//! The OCI manifests of a run: byte-for-byte functions of the run, so that the same run
//! always pushes the same digests.

use chrono::{DateTime, SecondsFormat, Utc};
use export_core::{canonical_json, Sha256Digest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `artifactType` of a run.
pub const RUN_ARTIFACT_TYPE: &str = "application/vnd.export-center.run.v1+json";
/// The `artifactType` (and layer media type) of the DSSE referrer.
pub const DSSE_ARTIFACT_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const IMAGE_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const IMAGE_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The empty config of an artifact (OCI image-spec 1.1): the two bytes `{}`.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The config media type of a Trivy database artifact (its config is the empty `{}`).
pub const TRIVY_CONFIG_MEDIA_TYPE: &str = "application/vnd.aquasec.trivy.config.v1+json";
/// The media type of a Trivy database artifact's one layer.
pub const TRIVY_DB_LAYER_MEDIA_TYPE: &str = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip";
/// The title Trivy wants on that layer: the file name it downloads and unpacks.
pub const TRIVY_DB_LAYER_TITLE: &str = "db.tar.gz";
/// The tag Trivy pulls when `--db-repository` names none: its database schema version.
pub const TRIVY_DB_TAG: &str = "2";

pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
pub const RUN_ID_ANNOTATION: &str = "dev.export-center.run-id";
pub const TENANT_ANNOTATION: &str = "dev.export-center.tenant";
pub const MANIFEST_DIGEST_ANNOTATION: &str = "dev.export-center.manifest-digest";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: Sha256Digest::of(bytes).to_string(),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The layer's title: the output's path inside the run.
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE_ANNOTATION).map(String::as_str)
    }
}

/// An OCI image manifest, as far as a run and its referrer use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index (the tag-schema fallback of the Referrers API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// One output of the run, as a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The output's path inside the run (`advisory.ndjson`).
    pub path: String,
    pub media_type: String,
    pub digest: Sha256Digest,
    pub size: u64,
}

impl Layer {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: self.size,
            artifact_type: None,
            annotations: BTreeMap::from([(TITLE_ANNOTATION.to_owned(), self.path.clone())]),
        }
    }
}

/// What is pushed for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArtifact {
    pub run_id: String,
    pub tenant: String,
    /// The digest of the run's `manifest.json`.
    pub manifest_digest: Sha256Digest,
    /// The snapshot time: the artifact's `org.opencontainers.image.created`.
    pub created: DateTime<Utc>,
    /// Every output of the run, in the order they become layers (sorted by path).
    pub layers: Vec<Layer>,
    /// The run's `manifest.dsse.json`, pushed again as the referrer's one layer.
    pub dsse: Option<Layer>,
    /// The run's Trivy database (one of `layers`), when it has one: then the tag names
    /// an artifact of Trivy's own shape ([`trivy_manifest`]), which `trivy
    /// --db-repository` pulls, and the run artifact is attached to it as a referrer.
    pub trivy_db: Option<Layer>,
}

/// A Trivy database artifact, exactly as Trivy pulls one: Trivy's config media type
/// (the empty `{}`), and one layer, the database tarball, titled `db.tar.gz`.
pub fn trivy_manifest(db: &Layer, created: DateTime<Utc>) -> Vec<u8> {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: IMAGE_MANIFEST_MEDIA_TYPE.to_owned(),
        artifact_type: None,
        config: Descriptor::of(TRIVY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG),
        layers: vec![Descriptor {
            media_type: TRIVY_DB_LAYER_MEDIA_TYPE.to_owned(),
            annotations: BTreeMap::from([(TITLE_ANNOTATION.to_owned(), TRIVY_DB_LAYER_TITLE.to_owned())]),
            ..db.descriptor()
        }],
        subject: None,
        annotations: BTreeMap::from([(
            CREATED_ANNOTATION.to_owned(),
            created.to_rfc3339_opts(SecondsFormat::Secs, true),
        )]),
    };
    canonical_json(&manifest)
}

/// The artifact manifest of a run, canonical JSON; a run with a Trivy database names
/// the Trivy artifact as its `subject`.
pub fn artifact_manifest(artifact: &RunArtifact) -> Vec<u8> {
    let mut layers: Vec<&Layer> = artifact.layers.iter().collect();
    layers.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: IMAGE_MANIFEST_MEDIA_TYPE.to_owned(),
        artifact_type: Some(RUN_ARTIFACT_TYPE.to_owned()),
        config: Descriptor::of(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG),
        layers: layers.into_iter().map(Layer::descriptor).collect(),
        subject: artifact
            .trivy_db
            .as_ref()
            .map(|db| Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, &trivy_manifest(db, artifact.created))),
        annotations: BTreeMap::from([
            (
                CREATED_ANNOTATION.to_owned(),
                artifact.created.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (RUN_ID_ANNOTATION.to_owned(), artifact.run_id.clone()),
            (TENANT_ANNOTATION.to_owned(), artifact.tenant.clone()),
            (
                MANIFEST_DIGEST_ANNOTATION.to_owned(),
                artifact.manifest_digest.to_string(),
            ),
        ]),
    };
    canonical_json(&manifest)
}

/// The referrer that attaches the DSSE envelope `dsse` to the artifact manifest
/// `subject` (its bytes), canonical JSON.
pub fn referrer_manifest(subject: &[u8], dsse: &Layer, created: DateTime<Utc>) -> Vec<u8> {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: IMAGE_MANIFEST_MEDIA_TYPE.to_owned(),
        artifact_type: Some(DSSE_ARTIFACT_TYPE.to_owned()),
        config: Descriptor::of(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG),
        layers: vec![Descriptor {
            media_type: DSSE_ARTIFACT_TYPE.to_owned(),
            ..dsse.descriptor()
        }],
        subject: Some(Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, subject)),
        annotations: BTreeMap::from([(
            CREATED_ANNOTATION.to_owned(),
            created.to_rfc3339_opts(SecondsFormat::Secs, true),
        )]),
    };
    canonical_json(&manifest)
}

/// The tag-schema fallback tag of the referrers of `digest` (`sha256:abc…` → `sha256-abc…`).
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// `index` (the current fallback index, if any) with `referrer` added once, entries
/// sorted by digest so the same set of referrers always gives the same bytes.
pub fn index_with(index: Option<ImageIndex>, referrer: Descriptor) -> Vec<u8> {
    let mut index = index.unwrap_or_else(|| ImageIndex {
        schema_version: 2,
        media_type: IMAGE_INDEX_MEDIA_TYPE.to_owned(),
        manifests: Vec::new(),
    });
    if !index.manifests.iter().any(|m| m.digest == referrer.digest) {
        index.manifests.push(referrer);
    }
    index.manifests.sort_by(|a, b| a.digest.cmp(&b.digest));
    canonical_json(&index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(path: &str, bytes: &[u8]) -> Layer {
        Layer {
            path: path.to_owned(),
            media_type: "application/json".to_owned(),
            digest: Sha256Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    fn artifact() -> RunArtifact {
        RunArtifact {
            run_id: "export-run::acme::2025-12-06::0003".to_owned(),
            tenant: "acme".to_owned(),
            manifest_digest: Sha256Digest::of(b"manifest"),
            created: "2025-12-06T10:00:00Z".parse().unwrap(),
            layers: vec![layer("vex.json", b"[]"), layer("manifest.json", b"manifest")],
            dsse: Some(layer("manifest.dsse.json", b"{}")),
            trivy_db: None,
        }
    }

    #[test]
    fn a_run_with_a_trivy_database_publishes_trivys_shape_with_the_run_as_its_referrer() {
        let db = Layer {
            media_type: "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip".to_owned(),
            ..layer("trivy-db.tar.gz", b"database")
        };
        let mut run = artifact();
        run.layers.push(db.clone());
        run.trivy_db = Some(db);

        let published = trivy_manifest(run.trivy_db.as_ref().unwrap(), run.created);
        let trivy: ImageManifest = serde_json::from_slice(&published).unwrap();
        assert_eq!(trivy.config.media_type, TRIVY_CONFIG_MEDIA_TYPE);
        assert_eq!(
            trivy.layers.len(),
            1,
            "Trivy refuses an artifact of more than one layer"
        );
        assert_eq!(trivy.layers[0].media_type, TRIVY_DB_LAYER_MEDIA_TYPE);
        assert_eq!(trivy.layers[0].title(), Some("db.tar.gz"));
        assert_eq!(trivy.layers[0].digest, Sha256Digest::of(b"database").to_string());
        assert_eq!(trivy.artifact_type, None);

        let referrer: ImageManifest = serde_json::from_slice(&artifact_manifest(&run)).unwrap();
        assert_eq!(referrer.artifact_type.as_deref(), Some(RUN_ARTIFACT_TYPE));
        let subject = referrer.subject.expect("the run names the Trivy artifact");
        assert_eq!(subject.digest, Sha256Digest::of(&published).to_string());
        let titles: Vec<_> = referrer.layers.iter().map(|l| l.title().unwrap()).collect();
        assert_eq!(titles, ["manifest.json", "trivy-db.tar.gz", "vex.json"]);
        assert_eq!(
            published,
            trivy_manifest(run.trivy_db.as_ref().unwrap(), run.created),
            "deterministic"
        );

        // Without a database the run artifact has no subject.
        let plain: ImageManifest = serde_json::from_slice(&artifact_manifest(&artifact())).unwrap();
        assert_eq!(plain.subject, None);
    }

    #[test]
    fn the_artifact_manifest_is_an_oci_1_1_artifact_with_titled_layers() {
        let bytes = artifact_manifest(&artifact());
        let manifest: ImageManifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest.artifact_type.as_deref(), Some(RUN_ARTIFACT_TYPE));
        assert_eq!(manifest.config.media_type, EMPTY_CONFIG_MEDIA_TYPE);
        assert_eq!(
            manifest.config.digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let titles: Vec<_> = manifest.layers.iter().map(|l| l.title().unwrap()).collect();
        assert_eq!(titles, ["manifest.json", "vex.json"]);
        assert_eq!(manifest.annotations[CREATED_ANNOTATION], "2025-12-06T10:00:00Z");
        assert_eq!(manifest.annotations[TENANT_ANNOTATION], "acme");
        assert_eq!(
            manifest.annotations[MANIFEST_DIGEST_ANNOTATION],
            Sha256Digest::of(b"manifest").to_string()
        );
        assert_eq!(bytes, artifact_manifest(&artifact()), "deterministic");
    }

    #[test]
    fn the_referrer_names_the_artifact_as_its_subject() {
        let subject = artifact_manifest(&artifact());
        let bytes = referrer_manifest(&subject, artifact().dsse.as_ref().unwrap(), artifact().created);
        let referrer: ImageManifest = serde_json::from_slice(&bytes).unwrap();
        let named = referrer.subject.unwrap();
        assert_eq!(named.digest, Sha256Digest::of(&subject).to_string());
        assert_eq!(named.size, subject.len() as u64);
        assert_eq!(referrer.layers[0].media_type, DSSE_ARTIFACT_TYPE);
        assert_eq!(referrer.layers[0].title(), Some("manifest.dsse.json"));
    }

    #[test]
    fn the_fallback_index_holds_each_referrer_once_in_digest_order() {
        let a = Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, b"a");
        let b = Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, b"b");
        let one: ImageIndex = serde_json::from_slice(&index_with(None, a.clone())).unwrap();
        let two = index_with(Some(one.clone()), b.clone());
        let again = index_with(serde_json::from_slice(&two).unwrap(), a.clone());
        assert_eq!(two, again);
        let two: ImageIndex = serde_json::from_slice(&two).unwrap();
        assert_eq!(two.manifests.len(), 2);
        assert!(two.manifests[0].digest < two.manifests[1].digest);
        assert_eq!(fallback_tag("sha256:abcd"), "sha256-abcd");
    }
}
