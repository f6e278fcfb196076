//! Export Center distribution: HMAC-signed download URLs (SPEC §9.1), and publication to
//! S3-compatible object storage with presigned links (SPEC §9.3).
//!
//! With the `testing` feature, the `testing` module holds `S3Server`, a real S3-compatible
//! server for tests.

pub mod object;
pub mod signed_url;
#[cfg(feature = "testing")]
pub mod testing;

pub use object::{presigned_link_expiry, ObjectError, ObjectPublisher, MAX_PRESIGNED_LIFETIME_SECONDS};
pub use signed_url::{link_expiry, UrlSigner, UrlSigningError, UrlSigningKey, UrlVerifyError};
