//! The one error type of this crate, and the `WWW-Authenticate` challenge each failure answers with.

use std::io;
use std::path::PathBuf;

use crate::config::{algs_parameter, Alg};

/// Why a request was not authenticated, or why a key, JWKS or cache could not be used.
///
/// [`InvalidToken`](AuthError::InvalidToken), [`InvalidProof`](AuthError::InvalidProof) and
/// [`UseNonce`](AuthError::UseNonce) are the caller's fault (`401`); the others are the
/// server's (a missing JWKS, a failing replay cache) and deserve a `5xx`.
/// No variant ever carries a token, a proof or key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header or the access token in it is missing or invalid.
    #[error("invalid access token: {0}")]
    InvalidToken(String),
    /// The `DPoP` proof is missing, invalid or does not match the request or the token.
    #[error("invalid dpop proof: {0}")]
    InvalidProof(String),
    /// The proof lacks a valid server nonce: send `nonce` back as the `DPoP-Nonce` header.
    #[error("dpop proof needs a current server nonce")]
    UseNonce { nonce: String },
    /// The JWKS could not be read, fetched or parsed.
    #[error("jwks unavailable: {0}")]
    Jwks(String),
    /// The replay cache could not answer.
    #[error("replay cache unavailable: {0}")]
    ReplayCache(String),
    /// A key could not be parsed, encoded or generated.
    #[error("key unusable: {0}")]
    Key(String),
    /// A setting or request fact the server supplies is unusable (such as a public URL that
    /// is not an absolute `http(s)` URL).
    #[error("invalid auth configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AuthError {
    pub(crate) fn token(description: &str) -> Self {
        AuthError::InvalidToken(description.to_owned())
    }

    pub(crate) fn proof(description: &str) -> Self {
        AuthError::InvalidProof(description.to_owned())
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        AuthError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether this is the client's failure to authenticate (`401 ERR_UNAUTHENTICATED`)
    /// rather than a server-side problem.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::InvalidToken(_) | AuthError::InvalidProof(_) | AuthError::UseNonce { .. }
        )
    }

    /// The RFC 6750 / RFC 9449 `error` code: `invalid_token`, `invalid_dpop_proof` or
    /// `use_dpop_nonce`; `None` for server-side errors.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InvalidProof(_) => Some("invalid_dpop_proof"),
            AuthError::UseNonce { .. } => Some("use_dpop_nonce"),
            _ => None,
        }
    }

    /// The short, lowercase description of what failed, as sent in `error_description`.
    pub fn description(&self) -> Option<&str> {
        match self {
            AuthError::InvalidToken(description) | AuthError::InvalidProof(description) => Some(description),
            AuthError::UseNonce { .. } => Some("resource server requires nonce in dpop proof"),
            _ => None,
        }
    }

    /// The nonce to send as the `DPoP-Nonce` response header, for [`AuthError::UseNonce`].
    pub fn dpop_nonce(&self) -> Option<&str> {
        match self {
            AuthError::UseNonce { nonce } => Some(nonce),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` header value, listing every algorithm this crate supports:
    /// `DPoP error="invalid_token", error_description="…", algs="ES256 EdDSA RS256"`.
    /// Use [`Authenticator::www_authenticate`](crate::Authenticator::www_authenticate) to
    /// list only the configured ones.
    pub fn www_authenticate(&self) -> String {
        self.www_authenticate_for(&Alg::ALL)
    }

    /// The `WWW-Authenticate` header value, with `algs` listing `algs`.
    pub fn www_authenticate_for(&self, algs: &[Alg]) -> String {
        let algs = algs_parameter(algs);
        match (self.error_code(), self.description()) {
            (Some(code), Some(description)) => format!(
                "DPoP error=\"{code}\", error_description=\"{}\", algs=\"{algs}\"",
                quoted_string_safe(description)
            ),
            _ => format!("DPoP algs=\"{algs}\""),
        }
    }
}

/// Keeps a description inside an HTTP quoted-string: printable ASCII without `"` and `\`.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                '\''
            } else {
                c
            }
        })
        .collect()
}
