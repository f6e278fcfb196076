//! Integration tests of export-auth: what the verifier accepts and refuses, the key
//! sources, replay cache and nonces, the client and dev issuer, and interop with PyJWT.

mod accept;
mod client;
mod interop;
mod jwks;
mod refuse;
mod replay_and_nonce;

use std::sync::Arc;

use chrono::Utc;
use export_auth::client::DpopKey;
use export_auth::{
    Alg, AuthConfig, AuthError, Authenticator, Jwks, MemoryReplayCache, NonceSource, Principal, PublicJwk,
    RequestFacts,
};
use serde_json::{json, Value};

pub(crate) const ISSUER: &str = "https://issuer.example.test";
pub(crate) const AUDIENCE: &str = "export-center";
pub(crate) const URL: &str = "https://export.example.test/export-center/runs";

/// An issuer key with its JWKS, a client proof key, and a verifier that trusts the issuer.
pub(crate) struct Setup {
    pub(crate) issuer: DpopKey,
    pub(crate) kid: String,
    pub(crate) client: DpopKey,
    pub(crate) auth: Authenticator,
}

impl Setup {
    pub(crate) fn new() -> Self {
        Self::build(Alg::ES256, |_| {}, None)
    }

    pub(crate) fn with_issuer_alg(alg: Alg) -> Self {
        Self::build(alg, |_| {}, None)
    }

    pub(crate) fn build(
        issuer_alg: Alg,
        configure: impl FnOnce(&mut AuthConfig),
        nonces: Option<NonceSource>,
    ) -> Self {
        let issuer = key_for(issuer_alg);
        let kid = format!("issuer-{}", issuer_alg.as_str().to_lowercase());
        let jwks = jwks_of(&issuer, &kid);
        let mut config = AuthConfig::new(ISSUER, AUDIENCE);
        configure(&mut config);
        let auth = Authenticator::new(config, Arc::new(jwks), Arc::new(MemoryReplayCache::new()), nonces);
        Self {
            issuer,
            kid,
            client: DpopKey::generate(Alg::ES256),
            auth,
        }
    }

    /// Valid access token claims, bound to the client key.
    pub(crate) fn claims(&self) -> Value {
        let now = Utc::now().timestamp();
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "client-1",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "scope": "export:read export:write",
            "stellaops:tenant": "acme",
            "cnf": {"jkt": self.client.jwk_thumbprint()},
        })
    }

    /// `claims` signed by the issuer key, with its `kid`.
    pub(crate) fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.issuer.alg().as_str(), "typ": "at+jwt", "kid": self.kid});
        self.issuer.sign_jwt(&header, claims)
    }

    pub(crate) fn valid_token(&self) -> String {
        self.token(&self.claims())
    }

    /// A fresh proof by the client for `GET URL` with this token.
    pub(crate) fn proof(&self, token: &str) -> String {
        self.client.proof("GET", URL, Some(token), None)
    }

    /// Authenticates `GET URL` now with these headers.
    pub(crate) async fn call(
        &self,
        authorization: Option<&str>,
        dpop: Option<&str>,
    ) -> Result<Principal, AuthError> {
        self.call_to("GET", URL, authorization, dpop).await
    }

    pub(crate) async fn call_to(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        dpop: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let facts = RequestFacts {
            method,
            public_url: url,
            authorization,
            dpop,
            now: Utc::now(),
        };
        self.auth.authenticate(&facts).await
    }

    /// Authenticates `GET URL` with `DPoP <token>` and `proof`.
    pub(crate) async fn send(&self, token: &str, proof: &str) -> Result<Principal, AuthError> {
        self.call(Some(&format!("DPoP {token}")), Some(proof)).await
    }

    /// Authenticates `GET URL` with `token` and a fresh, valid proof for it.
    pub(crate) async fn send_token(&self, token: &str) -> Result<Principal, AuthError> {
        self.send(token, &self.proof(token)).await
    }
}

/// A JWKS holding `key`'s public half under `kid`.
/// A fresh key for `alg`: generated, or for RS256 (which `ring` does not generate) made by
/// `openssl genpkey`, an independent implementation.
pub(crate) fn key_for(alg: Alg) -> DpopKey {
    if alg != Alg::RS256 {
        return DpopKey::generate(alg);
    }
    let openssl = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("running openssl (is it installed?)");
    assert!(
        openssl.status.success(),
        "{}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    DpopKey::from_pkcs8_pem(std::str::from_utf8(&openssl.stdout).unwrap()).unwrap()
}

pub(crate) fn jwks_of(key: &DpopKey, kid: &str) -> Jwks {
    let mut jwk = key.public_jwk().clone();
    jwk["kid"] = kid.into();
    Jwks::from_keys([PublicJwk::from_json(&jwk).unwrap()]).unwrap()
}

/// Asserts that `result` failed with `code` and `description`, and that the challenge says so
/// and lists the algorithms.
#[track_caller]
pub(crate) fn assert_refused(result: Result<Principal, AuthError>, code: &str, description: &str) {
    let error = match result {
        Ok(principal) => panic!("expected {code} ({description}), got {principal:?}"),
        Err(error) => error,
    };
    assert!(error.is_unauthenticated(), "{error}");
    assert_eq!(error.error_code(), Some(code), "{error}");
    assert_eq!(error.description(), Some(description), "{error}");
    let challenge = error.www_authenticate();
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(challenge.contains(&format!("error=\"{code}\"")), "{challenge}");
    assert!(
        challenge.contains(&format!("error_description=\"{description}\"")),
        "{challenge}"
    );
    assert!(challenge.ends_with("algs=\"ES256 EdDSA RS256\""), "{challenge}");
}

/// base64url without padding.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
