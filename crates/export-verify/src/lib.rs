//! Offline verification of Export Center runs (SPEC §6, §17).
#![doc = include_str!("../README.md")]

mod archive;
mod checks;
mod error;
mod report;
mod view;

use std::path::PathBuf;

pub use archive::{read_files, FileVisitor, Limits};
pub use error::{EntryRefusal, VerifyError};
pub use report::{
    render_text, Check, CheckStatus, Verdict, EXIT_CHECKSUM, EXIT_ERROR, EXIT_SIGNATURE, EXIT_VERIFIED,
};

/// What `verify` checks and with what.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyOptions {
    /// A run's output directory, or a bundle file (`bundle.tar.zst`, `bundle.tar.gz`,
    /// `bundle.zip`, `bundle.tar.zst.age`).
    pub target: PathBuf,
    /// The trusted public keys (SPKI PEM): a signature by any of them verifies.
    pub keys: Vec<PathBuf>,
    /// The provenance envelope, when it is not `provenance.dsse.json` in the directory or
    /// beside the bundle file.
    pub provenance: Option<PathBuf>,
    /// An age identity file that decrypts an encrypted bundle.
    pub identity: Option<PathBuf>,
    /// How much a bundle may hold before it is refused unread.
    pub limits: Limits,
}

/// Verifies `options.target` offline: every problem becomes a failed check of the verdict.
pub fn verify(options: &VerifyOptions) -> Verdict {
    checks::Verifier::default().run(options)
}
