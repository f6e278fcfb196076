//! The verifier: from the facts of one request (`Authorization`, `DPoP`, method, public URL)
//! to the [`Principal`] it was made by, or the reason it is refused.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use export_core::TenantId;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Alg, AuthConfig};
use crate::error::AuthError;
use crate::htu::normalize_htu;
use crate::jose::{b64_sha256, unverified_claims, Compact, NumericDate};
use crate::jwk::{JwkProblem, PublicJwk, PRIVATE_MEMBERS};
use crate::jwks::JwksSource;
use crate::nonce::NonceSource;
use crate::replay::ReplayCache;

/// Longest access token or proof looked at; anything longer is refused unparsed.
const MAX_JWT_BYTES: usize = 16 * 1024;
/// Verified access tokens kept, so each request verifies only its proof's signature.
const TOKEN_CACHE_CAPACITY: usize = 4096;

/// What the verifier needs to know about one request.
pub struct RequestFacts<'a> {
    /// The HTTP method, as sent (`GET`, `POST`).
    pub method: &'a str,
    /// The request URL as the client addressed it: the configured public base URL plus the
    /// request path, without query or fragment (see [`crate::public_request_url`]).
    pub public_url: &'a str,
    /// The `Authorization` header. Several headers must be joined with `,` (as HTTP does),
    /// which is then refused.
    pub authorization: Option<&'a str>,
    /// The `DPoP` header. Several headers must be joined with `,`, which is then refused:
    /// exactly one proof is allowed.
    pub dpop: Option<&'a str>,
    /// The time to check against.
    pub now: DateTime<Utc>,
}

impl fmt::Debug for RequestFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |value: Option<&str>| value.map(|_| "[redacted]");
        f.debug_struct("RequestFacts")
            .field("method", &self.method)
            .field("public_url", &self.public_url)
            .field("authorization", &redacted(self.authorization))
            .field("dpop", &redacted(self.dpop))
            .field("now", &self.now)
            .finish()
    }
}

/// Who made an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access token's `sub`.
    pub subject: String,
    /// From `stellaops:tenant` (or `tid`).
    pub tenant: TenantId,
    /// From `scope` (space separated) and/or `scp` (array).
    pub scopes: BTreeSet<String>,
    /// The access token's `exp`.
    pub token_expires: DateTime<Utc>,
    /// The RFC 7638 thumbprint of the proof key the token is bound to (`cnf.jkt`).
    pub jkt: String,
}

impl Principal {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Verifies DPoP-bound access tokens and their proofs (SPEC §3, RFC 9449).
pub struct Authenticator {
    config: AuthConfig,
    jwks: Arc<dyn JwksSource>,
    replay: Arc<dyn ReplayCache>,
    nonces: Option<NonceSource>,
    tokens: Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
    token_verifications: AtomicU64,
}

/// The parts of an access token that passed every check but the time checks, which are
/// repeated on every use, and the key that verified it, which must still be the issuer's
/// key of that `kid` on every use.
#[derive(Debug)]
struct VerifiedToken {
    kid: String,
    key: Arc<PublicJwk>,
    subject: String,
    tenant: TenantId,
    scopes: BTreeSet<String>,
    expires: DateTime<Utc>,
    not_before: Option<DateTime<Utc>>,
    issued_at: Option<DateTime<Utc>>,
    jkt: String,
}

#[derive(Deserialize)]
struct TokenClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    iat: Option<NumericDate>,
    scope: Option<String>,
    scp: Option<OneOrMany>,
    #[serde(rename = "stellaops:tenant")]
    tenant: Option<String>,
    tid: Option<String>,
    cnf: Option<Confirmation>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Confirmation {
    jkt: Option<String>,
}

#[derive(Deserialize)]
struct ProofClaims {
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<NumericDate>,
    jti: Option<String>,
    ath: Option<String>,
    nonce: Option<String>,
}

impl Authenticator {
    /// A verifier for `config`. When nonces are needed (`config.require_nonce` or
    /// `config.replay_record_since`) and `nonces` is `None`, they are keyed by a random
    /// secret, which only works for a single replica.
    pub fn new(
        config: AuthConfig,
        jwks: Arc<dyn JwksSource>,
        replay: Arc<dyn ReplayCache>,
        nonces: Option<NonceSource>,
    ) -> Self {
        let needs_nonces = config.require_nonce || config.replay_record_since.is_some();
        let nonces = match nonces {
            None if needs_nonces => Some(NonceSource::random(config.dpop_window)),
            nonces => nonces,
        };
        Self {
            config,
            jwks,
            replay,
            nonces,
            tokens: Mutex::new(HashMap::new()),
            token_verifications: AtomicU64::new(0),
        }
    }

    /// The settings this verifier runs with.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The `WWW-Authenticate` value for `error`, listing the configured algorithms.
    pub fn www_authenticate(&self, error: &AuthError) -> String {
        error.www_authenticate_for(&self.config.allowed_algs)
    }

    /// A fresh server nonce, when nonces are in use, to send as `DPoP-Nonce` (also on
    /// successful responses, so clients pick up the next one before theirs expires).
    pub fn fresh_nonce(&self, now: DateTime<Utc>) -> Option<String> {
        self.nonces.as_ref().map(|nonces| nonces.issue(now))
    }

    /// How many access-token signatures this verifier has checked; tokens served from the
    /// cache do not count.
    pub fn token_verifications(&self) -> u64 {
        self.token_verifications.load(Ordering::Relaxed)
    }

    /// Checks the request's access token and DPoP proof; the principal on success.
    pub async fn authenticate(&self, facts: &RequestFacts<'_>) -> Result<Principal, AuthError> {
        let token_text = access_token(facts.authorization)?;
        let token = self.verify_token(token_text, facts.now).await?;
        let proof = self.verify_proof(facts, token_text, &token)?;
        // A proof dated before the replay record began may have been accepted then; only a
        // nonce this verifier issued (so, since) proves it was made for this request.
        let dated_before_record = self
            .config
            .replay_record_since
            .is_some_and(|since| proof.issued_at < since);
        if self.config.require_nonce || dated_before_record {
            let nonces = self
                .nonces
                .as_ref()
                .expect("new() sets nonces when they are needed");
            let valid = proof.nonce.as_deref().is_some_and(|nonce| {
                if dated_before_record {
                    nonces.verify_own(nonce, facts.now)
                } else {
                    nonces.verify(nonce, facts.now)
                }
            });
            if !valid {
                return Err(AuthError::UseNonce {
                    nonce: nonces.issue(facts.now),
                });
            }
        }
        let until = proof.issued_at + to_delta(self.config.dpop_window) + to_delta(self.config.clock_skew);
        if !self
            .replay
            .check_and_insert(proof.jti_hash, until, facts.now)
            .await?
        {
            return Err(AuthError::proof("dpop proof replayed"));
        }
        Ok(Principal {
            subject: token.subject.clone(),
            tenant: token.tenant.clone(),
            scopes: token.scopes.clone(),
            token_expires: token.expires,
            jkt: token.jkt.clone(),
        })
    }

    /// The access token's verified content: from the cache, or by checking its signature
    /// and claims. The time checks run either way.
    async fn verify_token(&self, text: &str, now: DateTime<Utc>) -> Result<Arc<VerifiedToken>, AuthError> {
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let cached = self.token_cache().get(&digest).cloned();
        let cached = match cached {
            Some(token) if self.key_still_published(&token).await? => Some(token),
            Some(_) => {
                // The key left the JWKS (or was replaced under its kid): verify again,
                // which refuses the token unless a key of the current set signed it.
                self.token_cache().remove(&digest);
                None
            }
            None => None,
        };
        let token = match cached {
            Some(token) => token,
            None => {
                let token = Arc::new(self.verify_token_signature_and_claims(text).await?);
                self.remember_token(digest, token.clone(), now);
                token
            }
        };
        let skew = to_delta(self.config.clock_skew);
        if now - skew >= token.expires {
            return Err(AuthError::token("access token expired"));
        }
        if token.not_before.is_some_and(|nbf| now + skew < nbf) {
            return Err(AuthError::token("access token not yet valid"));
        }
        if token.issued_at.is_some_and(|iat| now + skew < iat) {
            return Err(AuthError::token("access token issued in the future"));
        }
        Ok(token)
    }

    /// Whether the key that verified `token` is still the JWKS's key of its `kid`. The
    /// source hands out the same `Arc` until its keys are reloaded or refetched, so this is
    /// one lookup and a pointer comparison.
    async fn key_still_published(&self, token: &VerifiedToken) -> Result<bool, AuthError> {
        let current = self.jwks.key(&token.kid).await?;
        Ok(current.is_some_and(|key| Arc::ptr_eq(&key, &token.key)))
    }

    async fn verify_token_signature_and_claims(&self, text: &str) -> Result<VerifiedToken, AuthError> {
        if text.len() > MAX_JWT_BYTES {
            return Err(AuthError::token("access token too large"));
        }
        let jws = Compact::parse(text).ok_or_else(|| AuthError::token("malformed access token"))?;
        let alg = self
            .allowed_alg(&jws.header.alg)
            .ok_or_else(|| AuthError::token("access token alg not allowed"))?;
        if jws.header.crit.is_some() {
            return Err(AuthError::token("access token crit header not supported"));
        }
        // RFC 9068 §4: an access token says so, so that an ID token or another JWT of the
        // same issuer cannot be presented as one.
        if !jws.header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(AuthError::token("access token typ is not at+jwt"));
        }
        let kid = jws
            .header
            .kid
            .as_deref()
            .ok_or_else(|| AuthError::token("access token kid missing"))?;
        let key = self
            .jwks
            .key(kid)
            .await?
            .ok_or_else(|| AuthError::token("access token kid unknown"))?;
        if !key.supports(alg) {
            return Err(AuthError::token("access token alg does not match its key"));
        }
        self.token_verifications.fetch_add(1, Ordering::Relaxed);
        if !key.verify(alg, jws.signing_input.as_bytes(), &jws.signature) {
            return Err(AuthError::token("access token signature invalid"));
        }
        let claims: TokenClaims = jws
            .claims()
            .ok_or_else(|| AuthError::token("access token claims malformed"))?;
        if claims.iss.as_deref() != Some(self.config.issuer.as_str()) {
            return Err(AuthError::token("access token issuer mismatch"));
        }
        let audience_ok = match &claims.aud {
            Some(OneOrMany::One(audience)) => *audience == self.config.audience,
            Some(OneOrMany::Many(audiences)) => audiences.contains(&self.config.audience),
            None => false,
        };
        if !audience_ok {
            return Err(AuthError::token("access token audience mismatch"));
        }
        let expires = claims
            .exp
            .ok_or_else(|| AuthError::token("access token exp missing"))?
            .0;
        let subject = claims
            .sub
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| AuthError::token("access token sub missing"))?;
        let tenant = match (&claims.tenant, &claims.tid) {
            (Some(tenant), Some(tid)) if tenant != tid => {
                return Err(AuthError::token("access token tenant claims disagree"))
            }
            (Some(tenant), _) | (None, Some(tenant)) => {
                TenantId::parse(tenant).map_err(|_| AuthError::token("access token tenant invalid"))?
            }
            (None, None) => return Err(AuthError::token("access token tenant missing")),
        };
        let mut scopes = BTreeSet::new();
        if let Some(scope) = &claims.scope {
            scopes.extend(
                scope
                    .split(' ')
                    .filter(|scope| !scope.is_empty())
                    .map(str::to_owned),
            );
        }
        match claims.scp {
            Some(OneOrMany::Many(scp)) => scopes.extend(scp),
            Some(OneOrMany::One(scp)) => scopes.extend(
                scp.split(' ')
                    .filter(|scope| !scope.is_empty())
                    .map(str::to_owned),
            ),
            None => {}
        }
        let jkt = claims
            .cnf
            .and_then(|cnf| cnf.jkt)
            .filter(|jkt| !jkt.is_empty())
            .ok_or_else(|| AuthError::token("access token cnf.jkt missing"))?;
        Ok(VerifiedToken {
            kid: kid.to_owned(),
            key,
            subject,
            tenant,
            scopes,
            expires,
            not_before: claims.nbf.map(|date| date.0),
            issued_at: claims.iat.map(|date| date.0),
            jkt,
        })
    }

    /// Checks the DPoP proof against the request and the token; what replay and nonce
    /// checks need on success.
    fn verify_proof(
        &self,
        facts: &RequestFacts<'_>,
        token_text: &str,
        token: &VerifiedToken,
    ) -> Result<CheckedProof, AuthError> {
        let text = facts
            .dpop
            .map(str::trim)
            .ok_or_else(|| AuthError::proof("missing dpop proof"))?;
        if text.contains(',') {
            return Err(AuthError::proof("multiple dpop proofs"));
        }
        if text.len() > MAX_JWT_BYTES {
            return Err(AuthError::proof("dpop proof too large"));
        }
        let jws = Compact::parse(text).ok_or_else(|| AuthError::proof("malformed dpop proof"))?;
        if !jws
            .header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case("dpop+jwt"))
        {
            return Err(AuthError::proof("dpop proof typ is not dpop+jwt"));
        }
        let alg = self
            .allowed_alg(&jws.header.alg)
            .ok_or_else(|| AuthError::proof("dpop proof alg not allowed"))?;
        if jws.header.crit.is_some() {
            return Err(AuthError::proof("dpop proof crit header not supported"));
        }
        let jwk = jws
            .header
            .jwk
            .as_ref()
            .ok_or_else(|| AuthError::proof("dpop proof jwk missing"))?;
        if PRIVATE_MEMBERS.iter().any(|member| jwk.contains_key(*member)) {
            return Err(AuthError::proof("dpop proof jwk contains private key material"));
        }
        let key = PublicJwk::from_members(jwk).map_err(|problem| match problem {
            JwkProblem::Unsupported(_) | JwkProblem::Invalid(_) => AuthError::proof("dpop proof jwk invalid"),
        })?;
        if !key.supports(alg) {
            return Err(AuthError::proof("dpop proof alg does not match its jwk"));
        }
        if !key.verify(alg, jws.signing_input.as_bytes(), &jws.signature) {
            return Err(AuthError::proof("dpop proof signature invalid"));
        }
        let claims: ProofClaims = jws
            .claims()
            .ok_or_else(|| AuthError::proof("dpop proof claims malformed"))?;
        if claims.htm.as_deref() != Some(facts.method) {
            return Err(AuthError::proof("dpop proof htm mismatch"));
        }
        let request_url = normalize_htu(facts.public_url)
            .ok_or_else(|| AuthError::Config("public request url is not an absolute http(s) url".into()))?;
        if claims.htu.as_deref().and_then(normalize_htu).as_deref() != Some(request_url.as_str()) {
            return Err(AuthError::proof("dpop proof htu mismatch"));
        }
        let issued_at = claims
            .iat
            .ok_or_else(|| AuthError::proof("dpop proof iat missing"))?
            .0;
        let window = to_delta(self.config.dpop_window);
        if issued_at < facts.now - window {
            return Err(AuthError::proof("dpop proof iat too old"));
        }
        if issued_at > facts.now + window {
            return Err(AuthError::proof("dpop proof iat in the future"));
        }
        let jti = claims
            .jti
            .filter(|jti| !jti.is_empty())
            .ok_or_else(|| AuthError::proof("dpop proof jti missing"))?;
        let ath = claims
            .ath
            .ok_or_else(|| AuthError::proof("dpop proof ath missing"))?;
        if ath != b64_sha256(token_text) {
            return Err(AuthError::proof("dpop proof ath mismatch"));
        }
        if key.thumbprint() != token.jkt {
            return Err(AuthError::proof("dpop proof key does not match token cnf.jkt"));
        }
        let mut hasher = Sha256::new();
        hasher.update(token.jkt.as_bytes());
        hasher.update(b".");
        hasher.update(jti.as_bytes());
        Ok(CheckedProof {
            jti_hash: hasher.finalize().into(),
            issued_at,
            nonce: claims.nonce,
        })
    }

    fn allowed_alg(&self, name: &str) -> Option<Alg> {
        Alg::parse(name).filter(|alg| self.config.allowed_algs.contains(alg))
    }

    fn token_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<VerifiedToken>>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Caches a verified token until it expires. When full, expired entries go first, then
    /// a quarter of the rest, so the sweep runs once per many inserts.
    fn remember_token(&self, digest: [u8; 32], token: Arc<VerifiedToken>, now: DateTime<Utc>) {
        let skew = to_delta(self.config.clock_skew);
        if now - skew >= token.expires {
            return;
        }
        let mut tokens = self.token_cache();
        if tokens.len() >= TOKEN_CACHE_CAPACITY {
            tokens.retain(|_, token| now - skew < token.expires);
            let excess = tokens.len().saturating_sub(TOKEN_CACHE_CAPACITY * 3 / 4);
            let evicted: Vec<[u8; 32]> = tokens.keys().take(excess).copied().collect();
            for digest in evicted {
                tokens.remove(&digest);
            }
        }
        tokens.insert(digest, token);
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("nonces", &self.nonces)
            .finish_non_exhaustive()
    }
}

struct CheckedProof {
    jti_hash: [u8; 32],
    issued_at: DateTime<Utc>,
    nonce: Option<String>,
}

/// The access token from `Authorization: DPoP <token>`. A `Bearer` token is refused, and
/// named as DPoP-bound when it carries `cnf.jkt`.
fn access_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let header = authorization
        .map(str::trim)
        .ok_or_else(|| AuthError::token("missing authorization header"))?;
    let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
    let token = token.trim_start();
    if scheme.eq_ignore_ascii_case("bearer") {
        let bound = unverified_claims(token).is_some_and(|claims| claims.pointer("/cnf/jkt").is_some());
        if bound {
            return Err(AuthError::token("dpop-bound token presented as bearer"));
        }
        return Err(AuthError::token("authorization scheme is not dpop"));
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(AuthError::token("authorization scheme is not dpop"));
    }
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(AuthError::token("malformed access token"));
    }
    Ok(token)
}

/// Whether a JWS `typ` names an access token: `at+jwt`, or the full media type
/// `application/at+jwt` (RFC 9068 §2.1), compared without regard to case (RFC 7515 §4.1.9).
fn is_access_token_typ(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == "at+jwt" || typ == "application/at+jwt"
}

/// A configured tolerance as a `TimeDelta`, capped at a year so date arithmetic cannot
/// overflow.
fn to_delta(duration: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(duration)
        .unwrap_or(TimeDelta::MAX)
        .min(TimeDelta::days(365))
}
