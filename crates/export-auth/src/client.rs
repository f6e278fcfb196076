//! The client side of DPoP (RFC 9449): a proof key and a fresh proof per request, for the
//! tests, the demo, the benchmark and the client commands.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::Alg;
use crate::error::AuthError;
use crate::jose::{b64, b64_sha256};
use crate::keys::PrivateKey;

/// A DPoP proof key. Access tokens are bound to its [`jwk_thumbprint`](DpopKey::jwk_thumbprint).
#[derive(Clone)]
pub struct DpopKey {
    key: PrivateKey,
    public_jwk: Value,
    thumbprint: String,
}

impl DpopKey {
    /// A fresh random key for `alg`: ES256 (the default) or EdDSA.
    ///
    /// # Panics
    ///
    /// For RS256, which `ring` cannot generate: read an RSA key made by OpenSSL with
    /// [`DpopKey::from_pkcs8_pem`] instead.
    pub fn generate(alg: Alg) -> Self {
        Self::from_key(PrivateKey::generate(alg).unwrap_or_else(|error| panic!("{error}")))
    }

    /// Reads a key saved with [`DpopKey::to_pkcs8_pem`] (unencrypted PKCS#8 PEM).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, AuthError> {
        PrivateKey::from_pkcs8_pem(pem).map(Self::from_key)
    }

    /// The private key as unencrypted PKCS#8 PEM, to hand to a client that keeps it.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, AuthError> {
        self.key.to_pkcs8_pem()
    }

    fn from_key(key: PrivateKey) -> Self {
        let public_jwk = key.public_jwk();
        let thumbprint = key.thumbprint();
        Self {
            key,
            public_jwk,
            thumbprint,
        }
    }

    /// The proof algorithm.
    pub fn alg(&self) -> Alg {
        self.key.alg()
    }

    /// The public key as a JWK (key members only), as sent in every proof's header.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of tokens bound to it.
    pub fn jwk_thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request to `url` with `method`, with a fresh random `jti` and
    /// `iat` = now. `url`'s query and fragment are left out of `htu`; `ath` is set when an
    /// access token is given; `nonce` is the server's latest `DPoP-Nonce`, if any.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>, nonce: Option<&str>) -> String {
        self.proof_at(method, url, access_token, nonce, Utc::now())
    }

    /// Like [`DpopKey::proof`], with `iat` = `issued_at`.
    pub fn proof_at(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        issued_at: DateTime<Utc>,
    ) -> String {
        let mut jti = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let htu = url.split(['?', '#']).next().unwrap_or_default();
        let mut claims = json!({
            "jti": b64(jti),
            "htm": method,
            "htu": htu,
            "iat": issued_at.timestamp(),
        });
        if let Some(token) = access_token {
            claims["ath"] = b64_sha256(token).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let header = json!({"typ": "dpop+jwt", "alg": self.alg().as_str(), "jwk": self.public_jwk});
        self.key.sign_compact(&header, &claims)
    }

    /// Signs any JWT with this key: `header` and `claims` are used exactly as given (the
    /// caller sets `alg`). For tests that need a malformed proof, or a key that issues
    /// tokens.
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> String {
        self.key.sign_compact(header, claims)
    }
}

impl Default for DpopKey {
    /// A fresh ES256 key.
    fn default() -> Self {
        Self::generate(Alg::ES256)
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.alg())
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// The `Authorization` header value for a DPoP-bound access token.
pub fn authorization_header(access_token: &str) -> String {
    format!("DPoP {access_token}")
}

/// base64url(SHA-256(access token)): a proof's `ath`.
pub fn access_token_hash(access_token: &str) -> String {
    b64_sha256(access_token)
}
