//! Export Center's artifact store: run outputs in an `object_store` backend (a local
//! directory, S3, or memory), written atomically and addressed by [`ArtifactKey`].
//!
//! Invariants:
//! - [`ArtifactKey`] is the only place that knows the key layout,
//!   `runs/<tenant>/<YYYY-MM-DD>/<seq:04>/<path>`; nobody formats object paths by hand.
//! - An artifact is either absent or complete: while it is being written, after an abort
//!   and after a crash, nothing is visible under its key.
//! - Everything is generic over `Arc<dyn ObjectStore>`; the only backend-specific code
//!   stages local multipart uploads with `O_DIRECT` (`direct.rs`, around `LocalFileSystem`),
//!   sweeps their staging files in [`ArtifactStore::delete_run`], and builds the S3 client
//!   from [`S3Settings`].
//!
//! With the `testing` feature, the `testing` module holds the conformance suite that every
//! backend passes, and `S3Server`, a real S3-compatible server for tests.

mod direct;
mod error;
mod key;
mod s3;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod writer;

pub use error::{ArtifactError, StorageFull};
pub use key::{validate_output_path, ArtifactKey, MAX_OUTPUT_PATH_BYTES};
pub use s3::{S3Location, S3Settings, DEFAULT_S3_REGION};
pub use store::{ArtifactRead, ArtifactStore, Written};
pub use writer::ArtifactWriter;
