//! What the verifier trusts: issuer, audience, time tolerances and the allowed signature algorithms.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The JWS algorithms Export Center accepts, for access tokens and DPoP proofs alike.
/// All are asymmetric: `none` and the HMAC algorithms are never accepted.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Alg {
    /// ECDSA over P-256 with SHA-256 (RFC 7518 §3.4); signatures are `r || s`, 64 bytes.
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), keys of 2048 bits or more.
    RS256,
}

impl Alg {
    /// Every supported algorithm, in the order the `algs` challenge parameter lists them.
    pub const ALL: [Alg; 3] = [Alg::ES256, Alg::EdDSA, Alg::RS256];

    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
        }
    }

    /// Parses a JOSE `alg` name (case-sensitive, as RFC 7515 requires).
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Alg::parse(name).ok_or_else(|| format!("unsupported alg `{name}` (expected ES256, EdDSA or RS256)"))
    }
}

/// The verifier's settings (SPEC §3). Build it with [`AuthConfig::new`] and change what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The access token's `iss` must equal this exactly.
    pub issuer: String,
    /// The access token's `aud` (a string or an array) must contain this.
    pub audience: String,
    /// Tolerance on the access token's `exp`, `nbf` and `iat` (default 30 s).
    pub clock_skew: Duration,
    /// A DPoP proof's `iat` must lie within ±this of now (default 60 s).
    pub dpop_window: Duration,
    /// Whether every proof must carry a valid server nonce (`use_dpop_nonce`).
    pub require_nonce: bool,
    /// Since when the replay cache has remembered the proofs it accepted: the start of a
    /// process whose cache lives in memory. A proof dated (`iat`) before it may have been
    /// accepted by an earlier process, whose record is lost, so it is accepted only with a
    /// server nonce this verifier issued; the challenge hands one out, and clients that
    /// answer nonce challenges (such as [`DpopClient`](crate::http::DpopClient)) retry at
    /// once. Give it to the sub-second (`iat` counts whole seconds, and a proof made in the
    /// second the process started must not pass unless it carries such a nonce).
    /// `None` when the record outlives processes (a database).
    pub replay_record_since: Option<DateTime<Utc>>,
    /// Algorithms accepted for access tokens and proofs (default all of [`Alg::ALL`]).
    pub allowed_algs: Vec<Alg>,
}

impl AuthConfig {
    /// The defaults of SPEC §3 for this issuer and audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            clock_skew: Duration::from_secs(30),
            dpop_window: Duration::from_secs(60),
            require_nonce: false,
            replay_record_since: None,
            allowed_algs: Alg::ALL.to_vec(),
        }
    }

    /// The `algs` challenge parameter value: the allowed algorithms, space separated.
    pub fn algs_parameter(&self) -> String {
        algs_parameter(&self.allowed_algs)
    }
}

pub(crate) fn algs_parameter(algs: &[Alg]) -> String {
    let mut algs = algs.to_vec();
    algs.sort();
    algs.dedup();
    algs.iter().map(|alg| alg.as_str()).collect::<Vec<_>>().join(" ")
}
