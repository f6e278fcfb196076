//! The bodies that cross the `/export-center` wire: requests, responses, events and
//! problems. Shared by the server and its clients; only these types are public JSON.

use export_core::plan::{DistributionRequest, EncryptionRequest, MirrorRequest, RunRequest, SigningRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod profiles;

pub use profiles::*;
mod webhooks;

pub use webhooks::*;

/// `POST /export-center/runs`. Every field but `profileId` is optional and defaults to
/// the profile's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRunRequest {
    #[schema(example = "export-profile::tenant-default::daily-vex")]
    pub profile_id: String,
    /// Plans the run against this revision of the profile (`sha256:<hex>`, see
    /// `/export-center/profiles/{profileId}/revisions`) instead of its newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["vex", "advisory:osv-go"]))]
    pub targets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["json", "ndjson"]))]
    pub formats: Option<Vec<String>>,
    /// A mirror bundle for sealed sites (profiles with `mirror` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<DistributionBody>,
    /// 1 to the profile's `retention.maxDays`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionBody>,
    /// `low`, `normal` (default) or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

/// `"mirror": {"mode": "delta", "baseRunId": …}` (SPEC §15).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorBody {
    /// `full` or `delta`; the profile's mode by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The run a delta continues from; by default the newest succeeded mirror run of the
    /// same profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "export-run::tenant-default::2025-12-06::0001")]
    pub base_run_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DistributionBody {
    /// `http`, `oci` or `object`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `host[:port]/repo[:tag]` for `oci`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningBody>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigningBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

impl From<CreateRunRequest> for RunRequest {
    fn from(body: CreateRunRequest) -> Self {
        RunRequest {
            targets: body.targets,
            formats: body.formats,
            distribution: body.distribution.map(|d| DistributionRequest {
                kind: d.kind,
                reference: d.reference,
                signing: d.signing.map(|s| SigningRequest {
                    enabled: s.enabled,
                    key_ref: s.key_ref,
                }),
            }),
            retention_days: body.retention_days,
            encryption: body.encryption.map(|e| EncryptionRequest {
                enabled: e.enabled,
                kms_key: e.kms_key,
            }),
            priority: body.priority,
            mirror: body.mirror.map(|m| MirrorRequest {
                mode: m.mode,
                base_run_id: m.base_run_id,
            }),
        }
    }
}

/// `202 Accepted` answer to a run creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunAccepted {
    pub run_id: String,
    pub status: String,
    pub estimate_seconds: u64,
    pub links: RunLinks,
    pub retry_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLinks {
    pub status: String,
    pub events: String,
}

/// `GET /export-center/runs/{runId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatusResponse {
    pub run_id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or `expired`.
    pub status: String,
    pub profile_id: String,
    /// The revision of the profile the run was planned against.
    pub profile_revision: String,
    pub project: Option<String>,
    pub priority: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub expires_at: Option<String>,
    /// Sorted by (type, id, format, url).
    pub outputs: Vec<OutputResponse>,
    pub progress: Progress,
    pub queue_position: Option<u64>,
    pub warnings: Vec<RunWarningBody>,
    pub errors: Vec<RunErrorBody>,
    /// What made the run: `{"type": "api"}`, or `{"type": "schedule", "at": …}` with the
    /// schedule's fire time. Absent from servers before schedules: read as `api`.
    #[serde(default)]
    pub trigger: TriggerBody,
}

/// A run's `trigger`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerBody {
    /// `api` or `schedule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The fire time of a scheduled run (RFC 3339 UTC, on the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl Default for TriggerBody {
    /// `{"type": "api"}`.
    fn default() -> Self {
        Self {
            kind: "api".to_owned(),
            at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputResponse {
    /// The target kind for data files, else `manifest`, `checksums`, `provenance` or `bundle`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub format: String,
    /// A signed download URL.
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_url: Option<String>,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub percent: u8,
    pub items_completed: u64,
    pub items_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunWarningBody {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// `GET /export-center/runs`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub items: Vec<RunStatusResponse>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /export-center/profiles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileList {
    pub items: Vec<ProfileResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileResponse {
    pub id: String,
    pub name: String,
    /// Changes whenever the profile's definition changes.
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub targets: Vec<String>,
    pub formats: Vec<String>,
    pub distributions: Vec<String>,
    pub signing: ProfileSigning,
    pub encryption: ProfileEncryption,
    pub retention: ProfileRetention,
    pub bundle: ProfileBundle,
    /// Present when every run of the profile is a mirror bundle (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<ProfileMirror>,
    /// `config` (read-only through the API) or `api` (SPEC §16).
    #[schema(example = "api")]
    pub source: String,
    /// The revision's number, for profiles of the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// When the profile was archived: it takes no new runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Present when the scheduler makes runs of the profile (SPEC §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ProfileSchedule>,
}

/// A profile's `schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSchedule {
    /// Five cron fields (minute, hour, day of month, month, day of week), in `timezone`.
    #[schema(example = "0 2 * * *")]
    pub cron: String,
    /// An IANA time zone name.
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
    /// The run each fire creates: a `POST /export-center/runs` body without `profileId`.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The next fire time (RFC 3339 UTC).
    pub next_fire_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileMirror {
    /// `full` or `delta`: what a run that does not say makes.
    pub mode: String,
    /// A bundle's `expiresAt` is its snapshot time plus this many days.
    pub valid_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSigning {
    pub enabled: bool,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileEncryption {
    pub enabled: bool,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRetention {
    pub default_days: u32,
    pub max_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBundle {
    pub enabled: bool,
    /// `tar.zst`, `tar.gz` or `zip`.
    pub format: String,
}

/// An RFC 9457 problem, the body of every error (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `urn:export-center:error:<CODE>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path.
    pub instance: String,
    pub code: String,
    pub trace_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// `GET /readyz` on the public listener: the status alone, naming no tenant, profile,
/// key or path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessStatus {
    /// `ready` or `unready`.
    pub status: String,
}

/// `GET /readyz` on the operator listener (`server.admin_listen`): every check with its
/// detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready` or `unready`.
    pub status: String,
    pub sealed: bool,
    pub checks: Vec<ReadinessCheck>,
    /// Per tenant, the last mirror bundle this site imported (SPEC §15); absent on a site
    /// that imports none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mirror_imports: std::collections::BTreeMap<String, MirrorImportState>,
}

/// The last mirror bundle a tenant imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorImportState {
    pub generation: i64,
    /// `full` or `delta`.
    pub mode: String,
    /// The connected site's watermark the tenant's evidence now mirrors.
    pub watermark: i64,
    pub manifest_digest: String,
    pub imported_at: String,
    /// After this, the site's data is stale: the next bundle must come before it, or the
    /// site needs a new full bundle.
    pub expires_at: String,
    pub expired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `GET /export-center/distributions/{id}`: where and how a run was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributionResponse {
    pub id: String,
    pub run_id: String,
    /// `http`, `oci` or `object`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `published` or `failed` (`expired` answers `410`).
    pub status: String,
    /// The pushed reference with its digest (`oci`); absent for `http`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `sha256:` of `manifest.json`, once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse: Option<DsseReference>,
    /// Sorted by (rel, href).
    pub links: Vec<DistributionLink>,
    /// Sorted by (type, id, format, url).
    pub artifacts: Vec<DistributionArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DsseReference {
    pub href: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributionLink {
    /// `self` (the manifest), `alternate` (its DSSE envelope) or `bundle`.
    pub rel: String,
    pub href: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributionArtifact {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub format: String,
    pub url: String,
    pub sha256: String,
    pub expires_at: String,
}
