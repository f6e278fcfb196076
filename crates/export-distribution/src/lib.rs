//! Export Center distribution: HMAC-signed download URLs (SPEC §9.1), and later OCI and
//! S3 publication.

pub mod signed_url;

pub use signed_url::{link_expiry, UrlSigner, UrlSigningError, UrlSigningKey, UrlVerifyError};
