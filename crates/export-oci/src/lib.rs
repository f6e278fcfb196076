//! Export Center OCI distribution (SPEC §9.2): one run is pushed as one OCI 1.1 artifact
//! — `artifactType` [`RUN_ARTIFACT_TYPE`], the empty config, one layer per output titled
//! by its path — and the run's manifest DSSE envelope is attached to it as a referrer,
//! through the Referrers API where the registry has one and through the tag-schema
//! fallback (`sha256-<hex>`) where it does not.
//!
//! A run with a Trivy database (SPEC §14) publishes Trivy's own artifact shape at the
//! tag — Trivy's config media type and the database as the one layer — so that `trivy
//! --db-repository` pulls it; the run artifact is then a referrer of that artifact.
//!
//! The manifests are pure functions of the run ([`manifest`]); the registry protocol
//! is the `oci-client` crate's ([`registry`]).

pub mod manifest;
pub mod registry;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;

pub use manifest::{
    artifact_manifest, referrer_manifest, trivy_manifest, Descriptor, Layer, RunArtifact, DSSE_ARTIFACT_TYPE,
    EMPTY_CONFIG_MEDIA_TYPE, IMAGE_INDEX_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, RUN_ARTIFACT_TYPE,
    TRIVY_CONFIG_MEDIA_TYPE, TRIVY_DB_LAYER_MEDIA_TYPE, TRIVY_DB_LAYER_TITLE, TRIVY_DB_TAG,
};
pub use registry::{BlobOpener, BlobStream, OciError, OciPublisher, PulledFile, Pushed};
pub use settings::{OciSettings, RegistrySettings};
