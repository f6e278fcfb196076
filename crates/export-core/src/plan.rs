//! Turning a run request into a `RunPlan`: the validation of SPEC §2.1 steps 4-8, in
//! order, against the profile and the limits. Pure: the API calls it, the runner
//! executes the plan it produced.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::egress::OciReference;
use crate::ids::{ProfileId, RunId};
use crate::limits::Limits;
use crate::mirror::{MirrorBase, MirrorMode};
use crate::profile::{BundleOptions, DistributionType, Profile, TrivyOptions};
use crate::status::Priority;
use crate::target::{Format, Kind, Target};

/// A run request as the client sent it, every field optional but the profile. Its serde
/// form is the body of `POST /export-center/runs` without `profileId` (camelCase, unknown
/// fields refused): the form a profile's `schedule.request` is written in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<DistributionRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorRequest>,
}

/// `"mirror": {"mode": "full" | "delta", "baseRunId": …}` (SPEC §15).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_run_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DistributionRequest {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningRequest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigningRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanErrorKind {
    /// `400 ERR_EXPORT_REQUEST_INVALID`.
    Invalid,
    /// `413 ERR_EXPORT_TOO_LARGE`.
    TooLarge,
}

/// A request that cannot become a plan; `field` is the JSON path of the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    pub kind: PlanErrorKind,
    pub field: String,
    pub message: String,
}

impl PlanError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: PlanErrorKind::Invalid,
            field: field.into(),
            message: message.into(),
        }
    }

    fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: PlanErrorKind::TooLarge,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where the run is published: the stored form is `{"type": "http"}`,
/// `{"type": "oci", "ref": "host/repository[:tag]"}` or `{"type": "object"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PlannedDistribution {
    Http,
    Oci {
        #[serde(rename = "ref")]
        reference: OciReference,
    },
    Object,
}

impl PlannedDistribution {
    pub fn kind(&self) -> DistributionType {
        match self {
            Self::Http => DistributionType::Http,
            Self::Oci { .. } => DistributionType::Oci,
            Self::Object => DistributionType::Object,
        }
    }

    /// The reference an `oci` distribution pushes to.
    pub fn oci_reference(&self) -> Option<&OciReference> {
        match self {
            Self::Oci { reference } => Some(reference),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedSigning {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedEncryption {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

/// A mirror run's part of the plan (SPEC §15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMirror {
    pub mode: MirrorMode,
    /// `mirror.json`'s `expiresAt` is the snapshot time plus this many days.
    pub valid_days: u32,
    /// The delta's base run, as the request named it, or as it was found when the run was
    /// created (the newest succeeded mirror run of the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_run_id: Option<RunId>,
    /// The state the delta starts from, read from its base run when the run is created;
    /// `None` for a full bundle (and for a delta until it is resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<MirrorBase>,
}

/// Everything a worker needs to execute a run, fixed when the run is created so that a
/// later change of configuration cannot change what a queued or retried run produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    pub profile_id: ProfileId,
    pub profile_revision: String,
    /// Sorted, without duplicates.
    pub targets: Vec<Target>,
    /// Sorted, without duplicates.
    pub formats: Vec<Format>,
    pub distribution: PlannedDistribution,
    pub signing: PlannedSigning,
    pub encryption: PlannedEncryption,
    pub bundle: BundleOptions,
    /// The profile's `trivy` options (stored only when they differ from the default, so
    /// plans stored before them read back unchanged).
    #[serde(default, skip_serializing_if = "TrivyOptions::is_default")]
    pub trivy: TrivyOptions,
    pub retention_days: u32,
    pub priority: Priority,
    /// Set on a mirror run: its data files are the snapshot (`full`) or what changed since
    /// its base (`delta`), beside `mirror.json` and a delta's `tombstones.ndjson`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<PlannedMirror>,
}

impl RunPlan {
    /// Validates `request` against `profile` and `limits` in the order of SPEC §2.1.
    pub fn parse(profile: &Profile, request: RunRequest, limits: &Limits) -> Result<Self, PlanError> {
        let mirror = plan_mirror(profile, &request)?;
        // 4. targets, 5. formats (a mirror: every target of the profile, in `ndjson`)
        let (mut targets, mut formats) = match &mirror {
            Some(_) => (profile.definition.targets.clone(), vec![Format::Ndjson]),
            None => {
                let targets = plan_targets(profile, request.targets, limits)?;
                let formats = plan_formats(profile, request.formats, &targets)?;
                (targets, formats)
            }
        };
        targets.sort();
        formats.sort();
        // 6. distribution and signing
        let distribution_request = request.distribution.unwrap_or_default();
        let distribution =
            plan_distribution(profile, distribution_request.kind, distribution_request.reference)?;
        let mut signing_request = distribution_request.signing.unwrap_or_default();
        if mirror.is_some() {
            signing_request.enabled.get_or_insert(true);
        }
        let signing = plan_signing(profile, signing_request)?;
        if mirror.is_some() && !signing.enabled {
            return Err(PlanError::invalid(
                "distribution.signing.enabled",
                "a mirror run is always signed: the sealed site's import verifies its signature",
            ));
        }
        // 7. retention, encryption and priority
        let retention_days = plan_retention(profile, request.retention_days)?;
        let encryption = plan_encryption(profile, request.encryption.unwrap_or_default())?;
        if encryption.enabled && formats.contains(&Format::TrivyDb) {
            // An encrypted run stores no plaintext data file, and the bundle step cannot
            // build a database again; scanners read it unencrypted anyway.
            return Err(PlanError::invalid(
                "encryption.enabled",
                "a run with the `trivy-db` format cannot be encrypted",
            ));
        }
        if encryption.enabled && mirror.is_some() {
            return Err(PlanError::invalid(
                "encryption.enabled",
                "a mirror run cannot be encrypted: the sealed site imports its plaintext bundle",
            ));
        }
        let priority = plan_priority(request.priority.as_deref())?;
        let mut bundle = profile.definition.bundle.clone();
        // A mirror is carried across the gap as its bundle.
        bundle.enabled |= mirror.is_some();
        let plan = Self {
            profile_id: profile.id.clone(),
            profile_revision: profile.revision.clone(),
            targets,
            formats,
            distribution,
            signing,
            encryption,
            bundle,
            trivy: profile.definition.trivy,
            retention_days,
            priority,
            mirror,
        };
        // 8. planned outputs
        let planned = plan.planned_outputs();
        if planned > limits.max_outputs {
            return Err(PlanError::too_large(
                "targets",
                format!(
                    "the run would produce {planned} outputs, at most {} are allowed",
                    limits.max_outputs
                ),
            ));
        }
        Ok(plan)
    }

    /// Data files, Trivy database, manifest, checksums, envelopes and bundle.
    pub fn planned_outputs(&self) -> usize {
        let mirror_files = match self.mirror.as_ref().map(|mirror| mirror.mode) {
            None => 0,
            Some(MirrorMode::Full) => 1,
            Some(MirrorMode::Delta) => 2,
        };
        let data_files = self.data_files().count() + usize::from(self.trivy_db()) + mirror_files;
        let envelopes = if self.signing.enabled { 2 } else { 0 };
        let bundle = usize::from(self.bundle.enabled);
        data_files + 2 + envelopes + bundle
    }

    /// The request as recorded in the manifest: only what shapes the content, nothing
    /// run-specific, so equal requests give equal manifests.
    pub fn normalized_request(&self) -> serde_json::Value {
        let mut request = serde_json::json!({
            "targets": self.targets,
            "formats": self.formats,
            "distribution": { "type": self.distribution.kind() },
            "signing": { "enabled": self.signing.enabled },
            "encryption": { "enabled": self.encryption.enabled },
        });
        if let Some(mirror) = &self.mirror {
            request["mirror"] = serde_json::json!({ "mode": mirror.mode });
        }
        request
    }

    /// The base a delta mirror run continues from, once resolved.
    pub fn mirror_base(&self) -> Option<&MirrorBase> {
        self.mirror.as_ref().and_then(|mirror| mirror.base.as_ref())
    }

    /// Every (target, format) pair with a file of its own, in output order.
    pub fn data_files(&self) -> impl Iterator<Item = (&Target, Format)> + '_ {
        self.targets.iter().flat_map(move |target| {
            self.formats
                .iter()
                .filter(|format| format.per_target())
                .map(move |format| (target, *format))
        })
    }

    /// Whether the run writes a Trivy database of its advisory targets.
    pub fn trivy_db(&self) -> bool {
        self.formats.contains(&Format::TrivyDb)
    }

    /// The targets a Trivy database is built from.
    pub fn advisory_targets(&self) -> impl Iterator<Item = &Target> + '_ {
        self.targets.iter().filter(|target| target.kind == Kind::Advisory)
    }
}

/// Before step 4, whether this is a mirror run (SPEC §15): a profile with `mirror` makes
/// every run one, of the profile's mode unless the request names one; a mirror run takes
/// every target of the profile in `ndjson`, so the request names neither; only a delta
/// names a base.
fn plan_mirror(profile: &Profile, request: &RunRequest) -> Result<Option<PlannedMirror>, PlanError> {
    let Some(policy) = profile.definition.mirror else {
        return match request.mirror {
            Some(_) => Err(PlanError::invalid(
                "mirror",
                format!("profile `{}` makes no mirror bundles", profile.id),
            )),
            None => Ok(None),
        };
    };
    if request.targets.is_some() {
        return Err(PlanError::invalid(
            "targets",
            format!(
                "a mirror run exports every target of profile `{}`; leave `targets` out",
                profile.id
            ),
        ));
    }
    if request.formats.is_some() {
        return Err(PlanError::invalid(
            "formats",
            "a mirror run is written in `ndjson`; leave `formats` out",
        ));
    }
    let asked = request.mirror.clone().unwrap_or_default();
    let mode = match asked.mode.as_deref() {
        None => policy.mode,
        Some(text) => MirrorMode::parse(text).ok_or_else(|| {
            PlanError::invalid(
                "mirror.mode",
                format!("unknown mode `{text}`, expected `full` or `delta`"),
            )
        })?,
    };
    let base_run_id = match (mode, asked.base_run_id) {
        (_, None) => None,
        (MirrorMode::Full, Some(_)) => {
            return Err(PlanError::invalid(
                "mirror.baseRunId",
                "a full mirror bundle has no base; only a `delta` names one",
            ))
        }
        (MirrorMode::Delta, Some(text)) => {
            Some(RunId::parse(&text).map_err(|err| PlanError::invalid("mirror.baseRunId", err.to_string()))?)
        }
    };
    Ok(Some(PlannedMirror {
        mode,
        valid_days: policy.valid_days,
        base_run_id,
        base: None,
    }))
}

/// Step 4: the requested targets (or the profile's), each parsed, unique and admitted
/// by the profile.
fn plan_targets(
    profile: &Profile,
    raw: Option<Vec<String>>,
    limits: &Limits,
) -> Result<Vec<Target>, PlanError> {
    let definition = &profile.definition;
    let Some(raw) = raw else {
        return Ok(definition.targets.clone());
    };
    if raw.len() > limits.max_targets {
        return Err(PlanError::too_large(
            "targets",
            format!(
                "{} targets requested, at most {} are allowed",
                raw.len(),
                limits.max_targets
            ),
        ));
    }
    if raw.is_empty() {
        return Err(PlanError::invalid("targets", "must name at least one target"));
    }
    let mut seen = BTreeSet::new();
    let mut targets = Vec::with_capacity(raw.len());
    for (idx, text) in raw.iter().enumerate() {
        let field = format!("targets[{idx}]");
        let target = Target::parse(text).map_err(|err| PlanError::invalid(&field, err.to_string()))?;
        if !seen.insert(target.to_string()) {
            return Err(PlanError::invalid(field, format!("duplicate target `{target}`")));
        }
        if !definition.targets.iter().any(|allowed| allowed.admits(&target)) {
            return Err(PlanError::invalid(
                field,
                format!("target `{target}` is not allowed by profile `{}`", profile.id),
            ));
        }
        targets.push(target);
    }
    Ok(targets)
}

/// Step 5: the requested formats (or the profile's), each known, unique and allowed;
/// `trivy-db` only with an advisory target to render.
fn plan_formats(
    profile: &Profile,
    raw: Option<Vec<String>>,
    targets: &[Target],
) -> Result<Vec<Format>, PlanError> {
    let formats = requested_formats(profile, raw)?;
    if formats.contains(&Format::TrivyDb) && !targets.iter().any(|target| target.kind == Kind::Advisory) {
        return Err(PlanError::invalid(
            "formats",
            "`trivy-db` renders advisories: the run has no `advisory` target",
        ));
    }
    Ok(formats)
}

fn requested_formats(profile: &Profile, raw: Option<Vec<String>>) -> Result<Vec<Format>, PlanError> {
    let definition = &profile.definition;
    let Some(raw) = raw else {
        return Ok(definition.formats.clone());
    };
    if raw.is_empty() {
        return Err(PlanError::invalid("formats", "must name at least one format"));
    }
    let mut formats = Vec::with_capacity(raw.len());
    for (idx, text) in raw.iter().enumerate() {
        let field = format!("formats[{idx}]");
        let format = Format::parse(text).ok_or_else(|| {
            PlanError::invalid(
                &field,
                format!("unknown format `{text}`, expected `json` or `ndjson`"),
            )
        })?;
        if formats.contains(&format) {
            return Err(PlanError::invalid(field, format!("duplicate format `{format}`")));
        }
        if !definition.formats.contains(&format) {
            return Err(PlanError::invalid(
                field,
                format!("format `{format}` is not allowed by profile `{}`", profile.id),
            ));
        }
        formats.push(format);
    }
    Ok(formats)
}

/// Step 6, distribution: a type the profile allows (its first by default), with a valid
/// `ref` exactly when the type is `oci`.
fn plan_distribution(
    profile: &Profile,
    kind: Option<String>,
    reference: Option<String>,
) -> Result<PlannedDistribution, PlanError> {
    let definition = &profile.definition;
    let kind = match &kind {
        None => definition.distributions[0],
        Some(text) => {
            let kind = DistributionType::parse(text).ok_or_else(|| {
                PlanError::invalid(
                    "distribution.type",
                    format!("unknown type `{text}`, expected `http`, `oci` or `object`"),
                )
            })?;
            if !definition.distributions.contains(&kind) {
                return Err(PlanError::invalid(
                    "distribution.type",
                    format!(
                        "distribution type `{kind}` is not allowed by profile `{}`",
                        profile.id
                    ),
                ));
            }
            kind
        }
    };
    let reference = reference.filter(|r| !r.trim().is_empty());
    match (reference, kind) {
        (None, DistributionType::Oci) => Err(PlanError::invalid(
            "distribution.ref",
            "an `oci` distribution needs a `ref`",
        )),
        (Some(text), DistributionType::Oci) => OciReference::parse(&text)
            .map(|reference| PlannedDistribution::Oci { reference })
            .map_err(|reason| PlanError::invalid("distribution.ref", reason)),
        (Some(_), _) => Err(PlanError::invalid(
            "distribution.ref",
            format!("a `{kind}` distribution takes no `ref`"),
        )),
        (None, DistributionType::Http) => Ok(PlannedDistribution::Http),
        (None, DistributionType::Object) => Ok(PlannedDistribution::Object),
    }
}

/// Step 6, signing: on or off as asked (the profile's default otherwise), with a key the
/// profile allows (its default key, else its first).
fn plan_signing(profile: &Profile, request: SigningRequest) -> Result<PlannedSigning, PlanError> {
    let definition = &profile.definition;
    let enabled = request.enabled.unwrap_or(definition.signing.enabled);
    let key_ref = match (enabled, request.key_ref) {
        (false, _) => None,
        (true, Some(key_ref)) => {
            if !definition.signing.keys.contains(&key_ref) {
                return Err(PlanError::invalid(
                    "distribution.signing.keyRef",
                    format!("key `{key_ref}` is not allowed by profile `{}`", profile.id),
                ));
            }
            Some(key_ref)
        }
        (true, None) => Some(
            definition
                .signing
                .default_key
                .clone()
                .or_else(|| definition.signing.keys.first().cloned())
                .ok_or_else(|| {
                    PlanError::invalid(
                        "distribution.signing.enabled",
                        format!("profile `{}` allows no signing key", profile.id),
                    )
                })?,
        ),
    };
    Ok(PlannedSigning { enabled, key_ref })
}

/// Step 7, retention: the profile's default, or a number of days within its maximum.
fn plan_retention(profile: &Profile, days: Option<i64>) -> Result<u32, PlanError> {
    let retention = &profile.definition.retention;
    match days {
        None => Ok(retention.default_days),
        Some(days) if days >= 1 && days <= i64::from(retention.max_days) => Ok(days as u32),
        Some(days) => Err(PlanError::invalid(
            "retentionDays",
            format!(
                "{days} is outside 1..={} allowed by the profile",
                retention.max_days
            ),
        )),
    }
}

/// Step 7, encryption: when on, a bundle to encrypt and someone to encrypt it to (the
/// profile's recipients, or a `kmsKey` of the tenant's keyring or the profile's list).
fn plan_encryption(profile: &Profile, request: EncryptionRequest) -> Result<PlannedEncryption, PlanError> {
    let definition = &profile.definition;
    if !request.enabled.unwrap_or(definition.encryption.enabled) {
        return Ok(PlannedEncryption {
            enabled: false,
            kms_key: None,
            recipients: Vec::new(),
        });
    }
    if definition.encryption.recipients.is_empty() && request.kms_key.is_none() {
        return Err(PlanError::invalid(
            "encryption.enabled",
            "encryption needs a `kmsKey` or recipients in the profile",
        ));
    }
    if let Some(kms_key) = &request.kms_key {
        let own_keyring = format!("kms://{}/", profile.id.tenant);
        if !(definition.encryption.keys.contains(kms_key) || kms_key.starts_with(&own_keyring)) {
            return Err(PlanError::invalid(
                "encryption.kmsKey",
                format!(
                    "a request may name a key of its own tenant's keyring (`{own_keyring}<name>`) or one \
                     allowed by profile `{}`",
                    profile.id
                ),
            ));
        }
    }
    if !definition.bundle.enabled {
        return Err(PlanError::invalid(
            "encryption.enabled",
            format!("profile `{}` produces no bundle to encrypt", profile.id),
        ));
    }
    Ok(PlannedEncryption {
        enabled: true,
        kms_key: request.kms_key,
        recipients: definition.encryption.recipients.clone(),
    })
}

/// Step 7, priority: `normal` unless asked.
fn plan_priority(text: Option<&str>) -> Result<Priority, PlanError> {
    match text {
        None => Ok(Priority::Normal),
        Some(text) => Priority::parse(text).ok_or_else(|| {
            PlanError::invalid(
                "priority",
                format!("unknown priority `{text}`, expected `low`, `normal` or `high`"),
            )
        }),
    }
}

#[cfg(test)]
mod tests;
