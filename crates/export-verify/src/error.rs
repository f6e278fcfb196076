//! `VerifyError`: why a bundle could not be opened or read, with the exit code each cause calls for.

use std::io;

use crate::report::{EXIT_CHECKSUM, EXIT_ERROR};

/// Why an archive entry was refused before any of its data was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefusal {
    #[error("it is a symbolic link")]
    SymbolicLink,
    #[error("it is a hard link")]
    HardLink,
    #[error("it is a device")]
    Device,
    #[error("it is a FIFO")]
    Fifo,
    #[error("it is not a regular file ({0})")]
    OtherType(String),
    #[error("its path is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    UnsafePath(String),
    #[error("it appears twice")]
    Duplicate,
}

/// Why a bundle could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{name} is not a bundle: expected a directory or a .tar.zst, .tar.gz or .zip file, optionally .age-encrypted")]
    UnknownBundle { name: String },
    #[error("the bundle is encrypted: pass --identity to decrypt {name}")]
    NeedsIdentity { name: String },
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot use age identity file {path}: {reason}")]
    Identity { path: String, reason: String },
    #[error("no identity in {identity} can decrypt {name}")]
    NoMatchingIdentity { identity: String, name: String },
    #[error("{name} is corrupt or truncated: {reason}")]
    Corrupt { name: String, reason: String },
    /// An entry no producer writes: a link, a device, an unsafe or duplicate path.
    #[error("{name}: refusing entry `{path}`: {refusal}")]
    Refused {
        name: String,
        path: String,
        refusal: EntryRefusal,
    },
    #[error("{name} has more than {limit} entries (raise it with --max-entries)")]
    TooManyEntries { name: String, limit: usize },
    /// The archive expands past its budget: `Limits::max_bytes`, or `Limits::max_ratio` times
    /// its compressed size.
    #[error("{name} expands past {limit} bytes ({reason}); refused as a possible decompression bomb (raise it with --max-bytes or --max-ratio)")]
    TooLarge {
        name: String,
        limit: u64,
        reason: String,
    },
    /// A fixed file (`manifest.json`…) larger than `Limits::max_fixed_bytes`.
    #[error("{path} in {name} is over {limit} bytes")]
    FixedFileTooLarge { name: String, path: String, limit: u64 },
}

impl VerifyError {
    /// The exit code this error calls for (SPEC §6): `2` for an entry that makes the archive
    /// differ from anything a producer writes, `1` for everything that prevented checking.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused { .. } => EXIT_CHECKSUM,
            _ => EXIT_ERROR,
        }
    }
}
