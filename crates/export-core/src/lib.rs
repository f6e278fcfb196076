//! Domain types and rules of Export Center: identifiers, targets, profiles, run plans,
//! export records, manifests and the canonical JSON they are written in.
//!
//! This crate does no IO and knows nothing of HTTP, SQL or tokio: everything here is a
//! pure function of its inputs, which is what makes exports deterministic.

pub mod canonical;
pub mod clock;
pub mod egress;
pub mod error_code;
pub mod ids;
pub mod limits;
pub mod manifest;
pub mod mirror;
pub mod notification;
pub mod output;
pub mod plan;
pub mod profile;
pub mod record;
pub mod schedule;
pub mod secret;
pub mod status;
pub mod target;

pub use canonical::{canonical_json, canonicalize, Sha256Digest};
pub use clock::{format_timestamp, Clock, SystemClock};
pub use egress::{
    classify, remote_excerpt, AddressClass, EgressPolicy, EgressRefusal, OciReference, RepositoryPrefix,
    RepositoryPrefixes, REMOTE_EXCERPT_CHARS,
};
pub use error_code::ErrorCode;
pub use ids::{DistributionId, IdError, ProfileId, ProfileName, ProjectId, RunId, SourceName, TenantId};
pub use limits::Limits;
pub use manifest::{
    checksums_txt, rerun_hash, Manifest, ManifestItem, ManifestProfile, Snapshot, CHECKSUMS_PATH,
    MANIFEST_DSSE_PATH, MANIFEST_PATH, MANIFEST_SCHEMA, PROVENANCE_PATH,
};
pub use mirror::{
    check_chain, ChainError, ChainStep, ImportedState, MirrorBase, MirrorDocument, MirrorMode, MirrorPolicy,
    Tombstone, MIRROR_PATH, TOMBSTONES_PATH,
};
pub use notification::{
    check_webhook_url, NotificationEvent, RetryPolicy, WebhookId, WebhookUrlError, MAX_WEBHOOK_URL,
};
pub use output::OutputKind;
pub use plan::{
    DistributionRequest, EncryptionRequest, MirrorRequest, PlanError, PlanErrorKind, PlannedDistribution,
    PlannedEncryption, PlannedMirror, PlannedSigning, RunPlan, RunRequest, SigningRequest,
};
pub use profile::{
    BundleFormat, BundleOptions, DistributionType, EncryptionPolicy, Profile, ProfileDefinition, Retention,
    SigningPolicy, TrivyOptions,
};
pub use record::{json_file_head, json_file_tail, DocumentFormat, EvidenceRecord};
pub use schedule::{FireTimes, Schedule, ScheduleError, Trigger, TriggerKind};
pub use secret::Secret;
pub use status::{Priority, RunStatus};
pub use target::{Format, Kind, Target};
