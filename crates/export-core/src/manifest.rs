//! `manifest.json`, `rerunHash` and `checksums.txt` (SPEC §5): pure functions of the
//! data files a run wrote, so equal inputs give equal bytes.

use serde::{Deserialize, Serialize};

use crate::canonical::{canonical_json, Sha256Digest};
use crate::ids::{ProfileId, TenantId};

pub const MANIFEST_SCHEMA: &str = "export-center/manifest/v1";
pub const MANIFEST_PATH: &str = "manifest.json";
pub const CHECKSUMS_PATH: &str = "checksums.txt";
/// The DSSE envelope of `manifest.json`.
pub const MANIFEST_DSSE_PATH: &str = "manifest.dsse.json";
/// The run-specific provenance envelope; never inside the bundle or `checksums.txt`.
pub const PROVENANCE_PATH: &str = "provenance.dsse.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestProfile {
    pub id: ProfileId,
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The highest ingestion sequence included.
    pub watermark: i64,
    /// How many evidence items the run's targets covered.
    pub items: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestItem {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub format: String,
    pub path: String,
    pub sha256: Sha256Digest,
    pub bytes: u64,
    pub records: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema: String,
    pub tenant: TenantId,
    pub profile: ManifestProfile,
    pub request: serde_json::Value,
    pub snapshot: Snapshot,
    pub items: Vec<ManifestItem>,
    pub rerun_hash: String,
}

impl Manifest {
    /// Builds the manifest, sorting items and computing `rerunHash`.
    pub fn new(
        tenant: TenantId,
        profile: ManifestProfile,
        request: serde_json::Value,
        snapshot: Snapshot,
        mut items: Vec<ManifestItem>,
    ) -> Self {
        items.sort_by(|a, b| (&a.kind, &a.id, &a.format, &a.path).cmp(&(&b.kind, &b.id, &b.format, &b.path)));
        let rerun_hash = rerun_hash(items.iter().map(|item| item.sha256));
        Self {
            schema: MANIFEST_SCHEMA.to_owned(),
            tenant,
            profile,
            request,
            snapshot,
            items,
            rerun_hash,
        }
    }

    /// The exact bytes of `manifest.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(self)
    }
}

/// `sha256:` + hex SHA-256 of the sorted `sha256:<hex>` item digests joined by `\n`.
pub fn rerun_hash(digests: impl IntoIterator<Item = Sha256Digest>) -> String {
    let mut lines: Vec<String> = digests.into_iter().map(|digest| digest.to_string()).collect();
    lines.sort();
    Sha256Digest::of(lines.join("\n").as_bytes()).to_string()
}

/// `<hex>  <path>` lines sorted by path, LF-terminated, as `sha256sum -c` reads them.
pub fn checksums_txt<'a>(entries: impl IntoIterator<Item = (&'a str, Sha256Digest)>) -> Vec<u8> {
    let mut entries: Vec<(&str, Sha256Digest)> = entries.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (path, digest) in entries {
        out.push_str(&digest.hex());
        out.push_str("  ");
        out.push_str(path);
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerun_hash_is_order_independent_and_matches_the_definition() {
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");

        assert_eq!(rerun_hash([a, b]), rerun_hash([b, a]));
        let mut sorted = [a.to_string(), b.to_string()];
        sorted.sort();
        assert_eq!(
            rerun_hash([a, b]),
            Sha256Digest::of(sorted.join("\n").as_bytes()).to_string()
        );
    }

    #[test]
    fn checksums_are_sorted_sha256sum_lines() {
        let out = checksums_txt([
            ("vex.json", Sha256Digest::of(b"v")),
            ("advisory.json", Sha256Digest::of(b"a")),
        ]);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("  advisory.json"));
        assert!(lines[1].ends_with("  vex.json"));
        assert_eq!(lines[0].len(), 64 + 2 + "advisory.json".len());
        assert!(text.ends_with('\n'));
    }
}
