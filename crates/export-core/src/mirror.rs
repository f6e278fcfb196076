//! Mirror bundles and their import on a sealed site (SPEC §15): the profile's mirror
//! policy, `mirror.json`, the lines of `tombstones.ndjson`, and the chain rule an import
//! applies. Pure: the runner writes these files, `export-center import` reads them.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::canonical::{canonical_json, Sha256Digest};
use crate::ids::{ProfileId, SourceName, TenantId};
use crate::target::Kind;

pub const MIRROR_SCHEMA: &str = "export-center/mirror/v1";
/// A mirror bundle's description of itself, a manifest item.
pub const MIRROR_PATH: &str = "mirror.json";
/// A delta's removals, a manifest item.
pub const TOMBSTONES_PATH: &str = "tombstones.ndjson";
/// `mirror.valid_days` when a profile does not say.
pub const DEFAULT_VALID_DAYS: u32 = 30;

/// A whole snapshot, or what changed since a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorMode {
    Full,
    Delta,
}

impl MirrorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Delta => "delta",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Full, Self::Delta]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

impl fmt::Display for MirrorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `mirror = { mode = "full" | "delta", valid_days = 30 }` on a profile: every run of the
/// profile is a mirror run, of this mode unless the request says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorPolicy {
    pub mode: MirrorMode,
    /// A bundle's `expiresAt` is its snapshot time plus this many days.
    #[serde(default = "default_valid_days")]
    pub valid_days: u32,
}

fn default_valid_days() -> u32 {
    DEFAULT_VALID_DAYS
}

/// The state a delta starts from: its base run's watermark and the digest of the base
/// bundle's `manifest.json`, which is what the sealed site recorded when it imported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorBase {
    pub watermark: i64,
    pub manifest_digest: Sha256Digest,
}

/// `mirror.json`, in canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorDocument {
    pub schema: String,
    pub tenant: TenantId,
    pub profile: ProfileId,
    pub mode: MirrorMode,
    pub watermark: i64,
    /// RFC 3339, whole seconds, `Z`.
    pub snapshot_time: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<MirrorBase>,
}

impl MirrorDocument {
    /// The document of a bundle whose snapshot is at `watermark`, taken at `snapshot_time`.
    pub fn new(
        tenant: TenantId,
        profile: ProfileId,
        watermark: i64,
        snapshot_time: DateTime<Utc>,
        valid_days: u32,
        base: Option<MirrorBase>,
    ) -> Self {
        let expires_at = snapshot_time + TimeDelta::days(i64::from(valid_days));
        Self {
            schema: MIRROR_SCHEMA.to_owned(),
            tenant,
            profile,
            mode: if base.is_some() {
                MirrorMode::Delta
            } else {
                MirrorMode::Full
            },
            watermark,
            snapshot_time: crate::format_timestamp(snapshot_time),
            expires_at: crate::format_timestamp(expires_at),
            base,
        }
    }

    /// Reads `mirror.json`, refusing a document that is not one (the reason names the
    /// field).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let document: Self = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
        if document.schema != MIRROR_SCHEMA {
            return Err(format!(
                "schema: expected `{MIRROR_SCHEMA}`, found `{}`",
                document.schema
            ));
        }
        document.expires_at().map_err(|err| format!("expiresAt: {err}"))?;
        DateTime::parse_from_rfc3339(&document.snapshot_time)
            .map_err(|err| format!("snapshotTime: {err}"))?;
        match (document.mode, &document.base) {
            (MirrorMode::Full, Some(_)) => Err("base: a full bundle has no base".to_owned()),
            (MirrorMode::Delta, None) => Err("base: a delta names its base".to_owned()),
            _ => Ok(document),
        }
    }

    pub fn expires_at(&self) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(&self.expires_at).map(|at| at.with_timezone(&Utc))
    }

    /// The exact bytes of `mirror.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(self)
    }
}

/// An item removed from a tenant's evidence (`ingest --sync`), and one line of a delta's
/// `tombstones.ndjson`: the kind of the version it removed, its source and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub id: String,
    pub kind: Kind,
    pub source: SourceName,
}

impl Tombstone {
    /// The canonical line, with its newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = canonical_json(self);
        line.push(b'\n');
        line
    }
}

/// What a sealed site last applied for a tenant: the connected site's watermark and the
/// digest of the bundle's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedState {
    pub watermark: i64,
    pub manifest_digest: Sha256Digest,
}

/// What importing a bundle would do, by the chain rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStep {
    /// Apply it.
    Apply,
    /// It is the bundle last applied: nothing to do.
    AlreadyApplied,
}

/// Why a bundle does not continue the chain (exit code 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the bundle expired at {expires_at}; ask the connected site for a newer one (freeze)")]
    Expired { expires_at: String },
    #[error(
        "a full bundle at watermark {watermark} is not newer than the last import (watermark {last}) \
         (rollback)"
    )]
    Rollback { watermark: i64, last: i64 },
    #[error(
        "a delta needs a base, and nothing was imported for this tenant yet; import a full bundle first"
    )]
    NothingImported,
    #[error(
        "the delta starts at watermark {base_watermark} ({base_digest}), the last import is watermark \
         {last_watermark} ({last_digest}); import the missing deltas, or a newer full bundle"
    )]
    WrongBase {
        base_watermark: i64,
        base_digest: Sha256Digest,
        last_watermark: i64,
        last_digest: Sha256Digest,
    },
}

/// The chain rule of SPEC §15: whether the bundle described by `document`, whose
/// `manifest.json` has `manifest_digest`, continues the tenant's imports from `last`.
pub fn check_chain(
    document: &MirrorDocument,
    manifest_digest: &Sha256Digest,
    last: Option<&ImportedState>,
    now: DateTime<Utc>,
) -> Result<ChainStep, ChainError> {
    if let Some(last) = last {
        if last.watermark == document.watermark && last.manifest_digest == *manifest_digest {
            return Ok(ChainStep::AlreadyApplied);
        }
    }
    match document.expires_at() {
        Ok(expires_at) if expires_at > now => {}
        _ => {
            return Err(ChainError::Expired {
                expires_at: document.expires_at.clone(),
            })
        }
    }
    match (&document.base, last) {
        (None, None) => Ok(ChainStep::Apply),
        (None, Some(last)) if document.watermark > last.watermark => Ok(ChainStep::Apply),
        (None, Some(last)) => Err(ChainError::Rollback {
            watermark: document.watermark,
            last: last.watermark,
        }),
        (Some(_), None) => Err(ChainError::NothingImported),
        (Some(base), Some(last))
            if base.watermark == last.watermark && base.manifest_digest == last.manifest_digest =>
        {
            Ok(ChainStep::Apply)
        }
        (Some(base), Some(last)) => Err(ChainError::WrongBase {
            base_watermark: base.watermark,
            base_digest: base.manifest_digest,
            last_watermark: last.watermark,
            last_digest: last.manifest_digest,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ProfileName;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn document(watermark: i64, base: Option<MirrorBase>) -> MirrorDocument {
        let tenant = TenantId::parse("acme").unwrap();
        let profile = ProfileId::new(tenant.clone(), ProfileName::parse("mirror").unwrap());
        MirrorDocument::new(tenant, profile, watermark, at("2026-12-01T10:00:00Z"), 30, base)
    }

    fn state(watermark: i64, digest: &[u8]) -> ImportedState {
        ImportedState {
            watermark,
            manifest_digest: Sha256Digest::of(digest),
        }
    }

    #[test]
    fn mirror_json_is_canonical_and_reads_back() {
        let base = MirrorBase {
            watermark: 7,
            manifest_digest: Sha256Digest::of(b"m"),
        };
        let doc = document(9, Some(base));
        let bytes = doc.to_bytes();
        assert!(bytes.starts_with(br#"{"base":{"manifestDigest":"sha256:"#));
        assert!(std::str::from_utf8(&bytes)
            .unwrap()
            .contains(r#""expiresAt":"2026-12-31T10:00:00Z","mode":"delta","profile":"export-profile::acme::mirror","schema":"export-center/mirror/v1","snapshotTime":"2026-12-01T10:00:00Z""#));
        assert_eq!(MirrorDocument::parse(&bytes).unwrap(), doc);
    }

    #[test]
    fn a_document_that_contradicts_itself_is_refused_naming_the_field() {
        let mut doc = document(9, None);
        doc.mode = MirrorMode::Delta;
        assert!(MirrorDocument::parse(&doc.to_bytes())
            .unwrap_err()
            .starts_with("base:"));
        let mut doc = document(9, None);
        doc.schema = "other".to_owned();
        assert!(MirrorDocument::parse(&doc.to_bytes())
            .unwrap_err()
            .starts_with("schema:"));
        let mut doc = document(9, None);
        doc.expires_at = "tomorrow".to_owned();
        assert!(MirrorDocument::parse(&doc.to_bytes())
            .unwrap_err()
            .starts_with("expiresAt:"));
    }

    #[test]
    fn tombstone_lines_are_canonical() {
        let line = Tombstone {
            id: "GO-2020-0001".to_owned(),
            kind: Kind::Advisory,
            source: SourceName::parse("osv-go").unwrap(),
        };
        assert_eq!(
            line.to_line(),
            b"{\"id\":\"GO-2020-0001\",\"kind\":\"advisory\",\"source\":\"osv-go\"}\n"
        );
    }

    #[test]
    fn the_chain_rule_applies_continues_and_refuses() {
        let now = at("2026-12-02T00:00:00Z");
        let full = document(10, None);
        let digest = Sha256Digest::of(b"full");
        // A first full bundle applies; a delta without anything imported does not.
        assert_eq!(check_chain(&full, &digest, None, now), Ok(ChainStep::Apply));
        let base = MirrorBase {
            watermark: 10,
            manifest_digest: digest,
        };
        let delta = document(12, Some(base));
        assert_eq!(
            check_chain(&delta, &Sha256Digest::of(b"delta"), None, now),
            Err(ChainError::NothingImported)
        );
        // The delta continues exactly from the full bundle, and only from it.
        let after_full = state(10, b"full");
        assert_eq!(
            check_chain(&delta, &Sha256Digest::of(b"delta"), Some(&after_full), now),
            Ok(ChainStep::Apply)
        );
        assert!(matches!(
            check_chain(
                &delta,
                &Sha256Digest::of(b"delta"),
                Some(&state(10, b"other")),
                now
            ),
            Err(ChainError::WrongBase { .. })
        ));
        // The bundle last applied is a no-op, even once expired.
        let after_delta = state(12, b"delta");
        let later = at("2027-06-01T00:00:00Z");
        assert_eq!(
            check_chain(&delta, &Sha256Digest::of(b"delta"), Some(&after_delta), later),
            Ok(ChainStep::AlreadyApplied)
        );
        // An older or equal full bundle after a delta is a rollback; a newer one re-seeds.
        assert_eq!(
            check_chain(&full, &digest, Some(&after_delta), now),
            Err(ChainError::Rollback {
                watermark: 10,
                last: 12
            })
        );
        assert_eq!(
            check_chain(&document(13, None), &digest, Some(&after_delta), now),
            Ok(ChainStep::Apply)
        );
        // Past expiresAt nothing applies (freeze), at the second itself included.
        assert!(matches!(
            check_chain(&full, &digest, None, at("2026-12-31T10:00:00Z")),
            Err(ChainError::Expired { .. })
        ));
    }
}
