//! The one error type of this crate.

use std::io;

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle entry `{path}` comes after `{previous}`: entries must be sorted by path")]
    Unsorted { previous: String, path: String },
    #[error("duplicate bundle entry `{path}`")]
    Duplicate { path: String },
    #[error("invalid bundle entry path `{path}`: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("bundle entry `{path}` is not the {size} bytes long it was declared to be")]
    SizeMismatch { path: String, size: u64 },
    #[error("writing bundle: {0}")]
    Io(io::Error),
    #[error("writing zip bundle: {0}")]
    Zip(String),
}

impl From<io::Error> for BundleError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

impl From<zip::result::ZipError> for BundleError {
    fn from(err: zip::result::ZipError) -> Self {
        match err {
            zip::result::ZipError::Io(err) => Self::Io(err),
            other => Self::Zip(other.to_string()),
        }
    }
}
