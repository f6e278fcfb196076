//! `ArtifactError`, the one error type of this crate.

use std::ops::Range;
use std::path::PathBuf;

/// What can go wrong in the artifact store; callers branch on `NotFound` (404),
/// `RangeNotSatisfiable` (416) and `InvalidPath` (a bug or a bad request), and treat the
/// rest as internal errors.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact `{key}` not found")]
    NotFound { key: String },

    #[error("invalid artifact path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    #[error("invalid artifact store url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("invalid S3 settings: {reason}")]
    InvalidS3Settings { reason: String },

    #[error("invalid S3 location `{location}`: {reason}")]
    InvalidS3Location { location: String, reason: String },

    #[error("range {}-{} of artifact `{key}` is not satisfiable: the artifact has {size} bytes", range.start, range.end)]
    RangeNotSatisfiable {
        key: String,
        range: Range<u64>,
        size: u64,
    },

    #[error("artifact `{key}` is incomplete: an earlier write to it failed or was cancelled")]
    Incomplete { key: String },

    #[error("cannot use local artifact directory `{}`", path.display())]
    LocalDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("artifact store request failed")]
    Backend(#[source] object_store::Error),
}

impl From<object_store::Error> for ArtifactError {
    fn from(err: object_store::Error) -> Self {
        Self::Backend(err)
    }
}

impl From<tokio::task::JoinError> for ArtifactError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::Backend(err.into())
    }
}
