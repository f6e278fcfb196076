//! Profiles: a tenant's named, versioned export recipe. Declared in configuration; the
//! revision is a digest of the definition, so it changes exactly when the definition does.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canonical::{canonical_json, Sha256Digest};
use crate::ids::ProfileId;
use crate::limits::Limits;
use crate::mirror::MirrorPolicy;
use crate::plan::RunPlan;
use crate::schedule::Schedule;
use crate::target::{Format, Kind, Target};

/// Where a run's outputs are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributionType {
    Http,
    Oci,
    Object,
}

impl DistributionType {
    pub const ALL: [DistributionType; 3] = [Self::Http, Self::Oci, Self::Object];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Oci => "oci",
            Self::Object => "object",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for DistributionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum BundleFormat {
    #[default]
    #[serde(rename = "tar.zst")]
    TarZst,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "zip")]
    Zip,
}

impl BundleFormat {
    /// `bundle.tar.zst`, `bundle.tar.gz` or `bundle.zip`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::TarZst => "bundle.tar.zst",
            Self::TarGz => "bundle.tar.gz",
            Self::Zip => "bundle.zip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BundleOptions {
    pub enabled: bool,
    pub format: BundleFormat,
}

impl Default for BundleOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            format: BundleFormat::TarZst,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningPolicy {
    /// Whether a request that does not say otherwise is signed.
    pub enabled: bool,
    /// The `keyRef`s a request may name (`file:<path>`, `kms://<tenant>/<name>`).
    pub keys: Vec<String>,
    /// The key used when a signed request names none; defaults to the first of `keys`.
    pub default_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionPolicy {
    /// Whether a request that does not say otherwise is encrypted.
    pub enabled: bool,
    /// `age1…` X25519 recipients every encrypted bundle of this profile is sealed to.
    pub recipients: Vec<String>,
    /// The `kmsKey`s a request may name besides `kms://<tenant>/<name>` keys of the
    /// tenant's own keyring; the only way a `file:` key reaches a run (SPEC §17).
    /// Left out of the definition's form when empty, so existing revisions stand.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub default_days: u32,
    pub max_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            default_days: 30,
            max_days: 365,
        }
    }
}

/// A profile as declared in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The targets a run may ask for, and the default when it asks for none.
    pub targets: Vec<Target>,
    /// The formats a run may ask for, and the default when it asks for none.
    #[serde(default = "default_formats")]
    pub formats: Vec<Format>,
    /// The distribution types a run may ask for; the first is the default.
    #[serde(default = "default_distributions")]
    pub distributions: Vec<DistributionType>,
    #[serde(default)]
    pub signing: SigningPolicy,
    #[serde(default)]
    pub encryption: EncryptionPolicy,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub bundle: BundleOptions,
    /// How a `trivy-db` output is written (SPEC §14); left out of the definition's
    /// canonical form while it is the default, so older revisions keep their digest.
    #[serde(default, skip_serializing_if = "TrivyOptions::is_default")]
    pub trivy: TrivyOptions,
    /// Makes every run of the profile a mirror bundle for sealed sites (SPEC §15); left
    /// out of the canonical form when absent, so older revisions keep their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorPolicy>,
    /// Runs made by the scheduler (SPEC §16); left out of the canonical form when absent,
    /// so older revisions keep their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// `trivy = { next_update_hours = 24 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrivyOptions {
    /// `metadata.json`'s `NextUpdate` is the snapshot time plus this many hours.
    #[serde(default = "default_next_update_hours")]
    pub next_update_hours: u32,
}

fn default_next_update_hours() -> u32 {
    24
}

impl Default for TrivyOptions {
    fn default() -> Self {
        Self {
            next_update_hours: default_next_update_hours(),
        }
    }
}

impl TrivyOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_formats() -> Vec<Format> {
    vec![Format::Json, Format::Ndjson]
}

fn default_distributions() -> Vec<DistributionType> {
    vec![DistributionType::Http]
}

impl ProfileDefinition {
    /// Checks the definition's own consistency; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_owned(), message.to_owned()));
        if self.targets.is_empty() {
            return fail("targets", "must list at least one target");
        }
        if self.formats.is_empty() {
            return fail("formats", "must list at least one format");
        }
        if self.distributions.is_empty() {
            return fail("distributions", "must list at least one distribution type");
        }
        if self.formats.contains(&Format::TrivyDb)
            && !self.targets.iter().any(|target| target.kind == Kind::Advisory)
        {
            return fail(
                "formats",
                "`trivy-db` renders advisories: the profile allows no `advisory` target",
            );
        }
        if self.trivy.next_update_hours == 0 {
            return fail("trivy.next_update_hours", "must be positive");
        }
        if let Some(mirror) = &self.mirror {
            if mirror.valid_days == 0 {
                return fail("mirror.valid_days", "must be positive");
            }
            if self.signing.keys.is_empty() {
                return fail(
                    "signing.keys",
                    "a mirror profile needs a signing key: the sealed site's import verifies bundles",
                );
            }
            if self.encryption.enabled {
                return fail(
                    "encryption.enabled",
                    "mirror bundles are not encrypted: the sealed site imports their plaintext",
                );
            }
        }
        if self.retention.default_days == 0 || self.retention.default_days > self.retention.max_days {
            return fail(
                "retention.default_days",
                "must be between 1 and retention.max_days",
            );
        }
        if self.signing.enabled && self.signing.keys.is_empty() {
            return fail(
                "signing.keys",
                "signing is enabled by default but no key is allowed",
            );
        }
        if let Some(default_key) = &self.signing.default_key {
            if !self.signing.keys.contains(default_key) {
                return fail("signing.default_key", "must be one of signing.keys");
            }
        }
        if self.encryption.enabled && self.encryption.recipients.is_empty() {
            return fail(
                "encryption.recipients",
                "encryption is enabled by default but no recipient is listed",
            );
        }
        if let Some(schedule) = &self.schedule {
            schedule
                .fire_times()
                .map_err(|err| (err.field.to_owned(), err.message))?;
        }
        Ok(())
    }
}

/// A profile with its identity and revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: ProfileId,
    /// `sha256:<hex>` of the canonical JSON of the definition.
    pub revision: String,
    pub definition: ProfileDefinition,
}

impl Profile {
    pub fn new(id: ProfileId, definition: ProfileDefinition) -> Self {
        let revision = Sha256Digest::of(&canonical_json(&definition)).to_string();
        Self {
            id,
            revision,
            definition,
        }
    }

    /// Checks the definition (`ProfileDefinition::validate`), then plans the schedule's
    /// request against this very profile as `RunPlan::parse` would when it fires, so a
    /// request that can never run is refused with its configuration, naming
    /// `schedule.request.<field>`. What only the server can judge (keys, egress, a delta's
    /// base) is checked when the schedule fires.
    pub fn validate(&self, limits: &Limits) -> Result<(), (String, String)> {
        self.definition.validate()?;
        if let Some(schedule) = &self.definition.schedule {
            RunPlan::parse(self, schedule.request.clone(), limits)
                .map_err(|err| (format!("schedule.request.{}", err.field), err.message))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProfileName, TenantId};

    fn definition() -> ProfileDefinition {
        serde_json::from_value(serde_json::json!({ "targets": ["advisory", "vex:csaf"] })).unwrap()
    }

    #[test]
    fn revision_changes_exactly_when_the_definition_does() {
        let id = ProfileId::new(
            TenantId::parse("acme").unwrap(),
            ProfileName::parse("daily").unwrap(),
        );
        let first = Profile::new(id.clone(), definition());
        assert_eq!(first.revision, Profile::new(id.clone(), definition()).revision);
        let mut changed = definition();
        changed.retention.max_days = 7;
        assert_ne!(first.revision, Profile::new(id, changed).revision);
    }

    #[test]
    fn defaults_fill_the_optional_parts() {
        let def = definition();
        assert_eq!(def.formats, vec![Format::Json, Format::Ndjson]);
        assert_eq!(def.distributions, vec![DistributionType::Http]);
        assert!(def.bundle.enabled);
        assert!(def.validate().is_ok());
    }

    #[test]
    fn a_mirror_profile_must_be_able_to_sign() {
        let mut def: ProfileDefinition = serde_json::from_value(serde_json::json!({
            "targets": ["advisory"],
            "mirror": { "mode": "full", "valid_days": 0 },
        }))
        .unwrap();
        assert_eq!(def.validate().unwrap_err().0, "mirror.valid_days");
        def.mirror.as_mut().unwrap().valid_days = 7;
        assert_eq!(def.validate().unwrap_err().0, "signing.keys");
        def.signing.keys.push("kms://acme/signer".to_owned());
        assert!(def.validate().is_ok());
        // Without `mirror`, the canonical form (and so the revision) is as before.
        def.mirror = None;
        assert!(!String::from_utf8(canonical_json(&def))
            .unwrap()
            .contains("mirror"));
    }

    fn profile_with_schedule(schedule: serde_json::Value) -> Profile {
        let definition: ProfileDefinition = serde_json::from_value(serde_json::json!({
            "targets": ["advisory", "vex"],
            "formats": ["json"],
            "schedule": schedule,
        }))
        .unwrap();
        Profile::new(
            ProfileId::new(
                TenantId::parse("acme").unwrap(),
                ProfileName::parse("nightly").unwrap(),
            ),
            definition,
        )
    }

    #[test]
    fn a_schedule_is_validated_with_its_fields_named() {
        let limits = Limits::default();
        let field = |schedule: serde_json::Value| {
            profile_with_schedule(schedule)
                .validate(&limits)
                .err()
                .map(|err| err.0)
        };
        assert_eq!(
            field(
                serde_json::json!({ "cron": "0 2 * * *", "timezone": "Europe/Berlin",
                "request": { "targets": ["vex"], "retentionDays": 7 } })
            ),
            None
        );
        assert_eq!(
            field(serde_json::json!({ "cron": "0 25 * * *", "timezone": "UTC" })).as_deref(),
            Some("schedule.cron")
        );
        assert_eq!(
            field(serde_json::json!({ "cron": "0 2 * * *", "timezone": "Mars/Olympus" })).as_deref(),
            Some("schedule.timezone")
        );
        assert_eq!(
            field(serde_json::json!({ "cron": "0 2 * * *", "timezone": "UTC",
                "request": { "targets": ["vex", "policy"] } }))
            .as_deref(),
            Some("schedule.request.targets[1]")
        );
        assert_eq!(
            field(serde_json::json!({ "cron": "0 2 * * *", "timezone": "UTC",
                "request": { "formats": ["ndjson"] } }))
            .as_deref(),
            Some("schedule.request.formats[0]")
        );
        // The request is a run request body: unknown fields are refused when it is read.
        let unknown: Result<ProfileDefinition, _> = serde_json::from_value(serde_json::json!({
            "targets": ["vex"],
            "schedule": { "cron": "0 2 * * *", "timezone": "UTC", "request": { "profileId": "x" } },
        }));
        assert!(unknown.unwrap_err().to_string().contains("profileId"));
    }

    #[test]
    fn a_profile_without_a_schedule_keeps_its_revision() {
        let def = definition();
        assert!(def.schedule.is_none());
        assert!(!String::from_utf8(canonical_json(&def))
            .unwrap()
            .contains("schedule"));
    }
}
