//! The bodies of profile management (SPEC §16): a definition as the configuration file
//! spells it (`snake_case`, the same keys as `[tenants.<t>.profiles.<name>]`), so a
//! profile moves between the file and the API unchanged.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /export-center/profiles` and `PUT /export-center/profiles/{id}`:
/// the profile's `name` and its definition, what a revision records and its digest
/// covers. Every field but `targets` (and `name` when creating) is optional and has the
/// configuration file's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileDefinitionBody {
    /// Lowercase letters, digits and `-`, unique in the tenant (archived profiles and
    /// those of the configuration file included). Required when creating; when
    /// changing, absent or the profile's own name. Not part of the definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "nightly-vex")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The targets a run may ask for, and the default when it asks for none.
    #[schema(example = json!(["advisory", "vex:csaf"]))]
    pub targets: Vec<String>,
    /// The formats a run may ask for (default `["json", "ndjson"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
    /// The distribution types a run may ask for; the first is the default
    /// (default `["http"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trivy: Option<TrivyDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleDefinition>,
}

/// Runs made by the scheduler (SPEC §16): one per fire of `cron` in `timezone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDefinition {
    /// Five cron fields (minute, hour, day of month, month, day of week).
    #[schema(example = "0 2 * * *")]
    pub cron: String,
    /// An IANA time zone name; the cron fields are its wall time.
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
    /// The run each fire creates: a `POST /export-center/runs` body without
    /// `profileId` (camelCase, as that body is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub request: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `kms://<tenant>/<name>` keys of the tenant's keyring (`file:` keys come from
    /// the configuration file only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `age1…` recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_days: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `tar.zst`, `tar.gz` or `zip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrivyDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update_hours: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorDefinition {
    /// `full` or `delta`.
    #[schema(pattern = "^(full|delta)$", example = "delta")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_days: Option<u32>,
}

/// `GET /export-center/profiles/{profileId}/revisions`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRevisionList {
    pub items: Vec<ProfileRevisionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRevisionResponse {
    /// 1, 2, 3 … in the order the revisions were recorded; absent for a profile of the
    /// configuration file, whose one revision is its current definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// `sha256:<hex>` of the definition's canonical JSON; what runs record and may pin
    /// as `profileRevision`.
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The token subject that recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub definition: ProfileDefinitionBody,
}
