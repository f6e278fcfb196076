//! `ArtifactError`, the one error type of this crate.

use std::ops::Range;
use std::path::PathBuf;

/// What can go wrong in the artifact store; callers branch on `NotFound` (404),
/// `RangeNotSatisfiable` (416), `InvalidPath` (a bug or a bad request) and `StorageFull`
/// (retry once space returns), and treat the rest as internal errors.
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

    /// The storage refused a write for want of room: nothing of it was kept (see
    /// [`StorageFull`]).
    #[error("the artifact store refused to store `{key}`: {reason}")]
    StorageFull {
        key: String,
        reason: StorageFull,
        #[source]
        source: object_store::Error,
    },

    #[error("artifact store request failed")]
    Backend(#[source] object_store::Error),
}

/// Why the storage under the artifact store refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFull {
    /// The filesystem has no space left (`ENOSPC`), or its quota is reached (`EDQUOT`).
    NoSpace,
    /// The object store says it is full: HTTP 507 Insufficient Storage, or an error code
    /// that says so (MinIO's `XMinioStorageFull`, Ceph's `QuotaExceeded`).
    BucketFull,
    /// The object store answered the write with a server error after every retry,
    /// without saying why: what `s3s-fs` answers when its disk is full (500
    /// `InternalError`), and what any bucket that stopped taking writes looks like.
    WriteRefused { status: u16 },
}

impl std::fmt::Display for StorageFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSpace => f.write_str("no space left on the artifact volume"),
            Self::BucketFull => f.write_str("the bucket is full or over its quota"),
            Self::WriteRefused { status } => write!(
                f,
                "the bucket refused the write with HTTP {status} after its retries"
            ),
        }
    }
}

impl StorageFull {
    /// Why `err`, the failure of a write, is a refusal for want of room, if it is: an
    /// `io::Error` anywhere in its chain of a kind that says so, or the object store's
    /// answer.
    pub(crate) fn of(err: &object_store::Error) -> Option<Self> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                if is_no_space(io) {
                    return Some(Self::NoSpace);
                }
            }
            if let Some((status, body)) = http_answer(error) {
                return Self::of_answer(status, &body);
            }
            cause = error.source();
        }
        None
    }

    fn of_answer(status: u16, body: &str) -> Option<Self> {
        let says_full = ["XMinioStorageFull", "QuotaExceeded", "InsufficientStorage"]
            .iter()
            .any(|code| body.contains(&format!("<Code>{code}</Code>")));
        if status == 507 || says_full {
            Some(Self::BucketFull)
        } else if (500..600).contains(&status) {
            Some(Self::WriteRefused { status })
        } else {
            None
        }
    }
}

/// What marks the answer of an object store in `object_store`'s errors.
const HTTP_ANSWER: &str = "Server returned non-2xx status code: ";

/// The HTTP status of the object store's answer that `error` reports, and the rest of
/// its message (the body), if it reports one.
///
/// `object_store` 0.14 keeps its `RetryError`, which holds the answer, private (it offers
/// only a retry policy hook for multipart parts), so its message is what tells:
/// `Server returned non-2xx status code: 500 Internal Server Error: <body>`. The test of a
/// full bucket (`export-server`'s `tests/it/disk.rs`) fails if that wording changes.
fn http_answer(error: &dyn std::error::Error) -> Option<(u16, String)> {
    let text = error.to_string();
    let (_, rest) = text.split_once(HTTP_ANSWER)?;
    let status = rest.get(..3)?.parse().ok()?;
    Some((status, rest.to_owned()))
}

/// `ENOSPC` and `EDQUOT`.
fn is_no_space(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(err.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

impl ArtifactError {
    /// The failure of a write to `key`: `StorageFull` when the storage refused it for want
    /// of room, else `Backend`.
    pub(crate) fn write(key: &impl std::fmt::Display, source: object_store::Error) -> Self {
        match StorageFull::of(&source) {
            Some(reason) => Self::StorageFull {
                key: key.to_string(),
                reason,
                source,
            },
            None => Self::Backend(source),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(source),
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("Error performing PUT http://127.0.0.1/b/k in 1s - {answer}")]
    struct Answer {
        answer: String,
    }

    fn answered(answer: &str) -> object_store::Error {
        generic(Answer {
            answer: format!("{HTTP_ANSWER}{answer}"),
        })
    }

    #[test]
    fn a_full_volume_or_quota_is_no_space_wherever_the_chain_says_it() {
        for errno in [28, 122] {
            let err = generic(std::io::Error::from_raw_os_error(errno));
            assert_eq!(StorageFull::of(&err), Some(StorageFull::NoSpace), "errno {errno}");
        }
        let other = generic(std::io::Error::from_raw_os_error(13));
        assert_eq!(StorageFull::of(&other), None);
    }

    #[test]
    fn a_bucket_is_full_when_it_says_so_and_refuses_writes_on_server_errors() {
        let full = [
            "507 Insufficient Storage: ",
            "503 Service Unavailable: <Error><Code>XMinioStorageFull</Code></Error>",
            "403 Forbidden: <Error><Code>QuotaExceeded</Code></Error>",
        ];
        for answer in full {
            assert_eq!(
                StorageFull::of(&answered(answer)),
                Some(StorageFull::BucketFull),
                "{answer}"
            );
        }
        assert_eq!(
            StorageFull::of(&answered("500 Internal Server Error: <Code>InternalError</Code>")),
            Some(StorageFull::WriteRefused { status: 500 })
        );
        for answer in ["403 Forbidden: <Code>AccessDenied</Code>", "404 Not Found: "] {
            assert_eq!(StorageFull::of(&answered(answer)), None, "{answer}");
        }
    }
}
