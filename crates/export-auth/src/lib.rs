//! DPoP-bound access tokens for Export Center (SPEC §3): verification, and the client and dev issuer that make them.
#![doc = include_str!("../README.md")]

mod authenticator;
pub mod client;
mod config;
pub mod dev;
mod error;
pub mod http;
mod htu;
mod jose;
mod jwk;
mod jwks;
mod keys;
mod nonce;
mod private_file;
mod replay;

pub use authenticator::{Authenticator, Principal, RequestFacts};
pub use config::{Alg, AuthConfig};
pub use error::AuthError;
pub use htu::{normalize_htu, public_request_url};
pub use jwk::{Jwks, PublicJwk};
pub use jwks::{FileJwks, JwksSource, UrlJwks};
pub use nonce::NonceSource;
pub use replay::{MemoryReplayCache, ReplayCache};
