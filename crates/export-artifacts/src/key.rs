//! `ArtifactKey`: the one place that decides where a run's outputs live in the object store.

use std::fmt;

use export_core::RunId;
use object_store::path::Path;

use crate::ArtifactError;

/// The longest output path we accept, in bytes.
pub const MAX_OUTPUT_PATH_BYTES: usize = 200;

/// Top-level prefix of every run's outputs.
const RUNS: &str = "runs";

/// Where one object lives in the artifact store.
///
/// Every run output is stored under `runs/<tenant>/<YYYY-MM-DD>/<seq:04>/<path>`.
/// The tenant is a path segment of its own and tenant names cannot contain `/`, so the
/// keys of two tenants never collide, and deleting one run's prefix never reaches
/// another run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey(Path);

impl ArtifactKey {
    /// The key of output `path` (for example `advisory.ndjson`) of `run`, in the run's tenant.
    pub fn for_run_output(run: &RunId, path: &str) -> Result<Self, ArtifactError> {
        validate_output_path(path)?;
        Ok(Self(
            run_prefix_path(run)
                .parts()
                .chain(path.split('/').map(Into::into))
                .collect(),
        ))
    }

    /// The prefix under which every output of `run` lives.
    pub fn run_prefix(run: &RunId) -> Self {
        Self(run_prefix_path(run))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// A key outside the run layout, for the store's own bookkeeping (health probes).
    pub(crate) fn internal(path: Path) -> Self {
        Self(path)
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn run_prefix_path(run: &RunId) -> Path {
    Path::from_iter([
        RUNS.to_owned(),
        run.tenant.as_str().to_owned(),
        run.date.format("%Y-%m-%d").to_string(),
        run.seq_text(),
    ])
}

/// Checks that `path` is an acceptable output path: 1-200 bytes of `/`-separated segments,
/// each made of `[A-Za-z0-9._-]`, none empty, `.` or `..`, and none starting with `.`.
///
/// The rule is deliberately narrower than what object stores accept: such a path means
/// the same thing on every backend and in a URL, needs no escaping anywhere, and cannot
/// collide with the staging files of `LocalFileSystem` (`<name>#<n>`).
pub fn validate_output_path(path: &str) -> Result<(), ArtifactError> {
    let reason = if path.is_empty() {
        Some("must not be empty")
    } else if path.len() > MAX_OUTPUT_PATH_BYTES {
        Some("must be at most 200 bytes")
    } else if path.contains('\\') {
        Some("must not contain a backslash")
    } else if path.contains('%') {
        Some("must not contain `%`")
    } else if path.starts_with('/') || path.ends_with('/') {
        Some("must not start or end with `/`")
    } else {
        path.split('/').find_map(segment_problem)
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ArtifactError::InvalidPath {
            path: path.chars().take(80).collect(),
            reason,
        }),
    }
}

fn segment_problem(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        Some("must not contain an empty segment")
    } else if segment == "." || segment == ".." {
        Some("must not contain `.` or `..` segments")
    } else if segment.starts_with('.') {
        Some("segments must not start with `.`")
    } else if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("segments may only contain letters, digits, `.`, `_` and `-`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tenant: &str, seq: u32) -> RunId {
        RunId::parse(&format!("export-run::{tenant}::2025-12-06::{seq:04}")).unwrap()
    }

    #[test]
    fn output_keys_follow_the_layout() {
        let key = ArtifactKey::for_run_output(&run("acme", 3), "data/advisory-osv-go.ndjson").unwrap();
        assert_eq!(
            key.as_path().as_ref(),
            "runs/acme/2025-12-06/0003/data/advisory-osv-go.ndjson"
        );
        assert_eq!(
            ArtifactKey::run_prefix(&run("acme", 3)).to_string(),
            "runs/acme/2025-12-06/0003"
        );
    }

    #[test]
    fn good_paths_are_accepted() {
        for good in [
            "manifest.json",
            "a/b/c.txt",
            "bundle.tar.zst.age",
            "x_y-Z.9",
            &"a".repeat(200),
        ] {
            assert!(validate_output_path(good).is_ok(), "{good} should be accepted");
        }
    }

    #[test]
    fn bad_paths_are_rejected() {
        let long = "a".repeat(300);
        for bad in [
            "../x", "a/../b", "/abs", "a//b", ".hidden", "a\\b", "a%2Fb", "", &long, "a/", "a/./b", ".",
            "a/.b", "a b", "a#1", "a?b", "é", "a:b",
        ] {
            match validate_output_path(bad) {
                Err(ArtifactError::InvalidPath { .. }) => {}
                other => panic!("{bad:?} should be rejected, got {other:?}"),
            }
            assert!(ArtifactKey::for_run_output(&run("acme", 1), bad).is_err());
        }
        let err = validate_output_path("a/../b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid artifact path `a/../b`: must not contain `.` or `..` segments"
        );
    }

    #[test]
    fn keys_of_two_tenants_never_collide() {
        let acme = ArtifactKey::for_run_output(&run("acme", 1), "manifest.json").unwrap();
        let globex = ArtifactKey::for_run_output(&run("globex", 1), "manifest.json").unwrap();
        assert_ne!(acme, globex);
        assert!(!acme
            .as_path()
            .prefix_matches(ArtifactKey::run_prefix(&run("globex", 1)).as_path()));
        // A tenant whose name extends another's is still a different segment.
        let acme2 = ArtifactKey::for_run_output(&run("acme2", 1), "manifest.json").unwrap();
        assert!(!acme2
            .as_path()
            .prefix_matches(ArtifactKey::run_prefix(&run("acme", 1)).as_path()));
    }
}
