//! The dev issuer for the quick start (`auth.mode = "dev"`): a local signing key kept in
//! the data directory, its JWKS, and DPoP-bound access tokens minted from it.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use export_core::TenantId;
use rand::RngCore as _;
use serde_json::{json, Value};

use crate::config::{Alg, AuthConfig};
use crate::error::AuthError;
use crate::jose::b64;
use crate::jwk::{Jwks, PublicJwk};
use crate::keys::PrivateKey;
use crate::private_file::create_private;

/// The file name of the issuer key inside the data directory.
pub const DEV_ISSUER_FILE: &str = "dev-issuer.pem";

/// A local token issuer. Never for production: whoever can read its key file can mint
/// tokens for any tenant.
#[derive(Clone)]
pub struct DevIssuer {
    key: PrivateKey,
    kid: String,
    path: PathBuf,
    issuer: String,
    audience: String,
}

impl DevIssuer {
    /// The `iss` of dev tokens unless [`DevIssuer::with_issuer`] says otherwise.
    pub const DEFAULT_ISSUER: &'static str = "urn:export-center:dev-issuer";
    /// The `aud` of dev tokens unless [`DevIssuer::with_issuer`] says otherwise.
    pub const DEFAULT_AUDIENCE: &'static str = "export-center";

    /// Loads `<dir>/dev-issuer.pem`, or creates it with a new ES256 key.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        Self::load_or_create_with(dir, Alg::ES256)
    }

    /// Loads `<dir>/dev-issuer.pem`, or creates it with a new `alg` key. A key that exists
    /// is used whatever its algorithm. A new key is written with mode 0600 to a temporary
    /// name, then linked into place, so a reader never sees half a key and a key another
    /// process has just created is kept (and used), never replaced.
    pub fn load_or_create_with(dir: &Path, alg: Alg) -> Result<Self, AuthError> {
        let path = dir.join(DEV_ISSUER_FILE);
        let read = |path: &Path| match fs::read_to_string(path) {
            Ok(pem) => PrivateKey::from_pkcs8_pem(&pem)
                .map(Some)
                .map_err(|_| AuthError::Key(format!("{} is not a usable issuer key", path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(AuthError::io("reading dev issuer key", path, error)),
        };
        let key = match read(&path)? {
            Some(key) => key,
            None => {
                let key = PrivateKey::generate(alg)?;
                match create_private(&path, key.to_pkcs8_pem()?.as_bytes()) {
                    Ok(()) => key,
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        read(&path)?.ok_or_else(|| AuthError::io("reading dev issuer key", &path, error))?
                    }
                    Err(error) => return Err(AuthError::io("writing dev issuer key", &path, error)),
                }
            }
        };
        let kid = format!("dev-{}", key.thumbprint());
        Ok(Self {
            key,
            kid,
            path,
            issuer: Self::DEFAULT_ISSUER.to_owned(),
            audience: Self::DEFAULT_AUDIENCE.to_owned(),
        })
    }

    /// Mints tokens with this `iss` and `aud` (those of the server's auth configuration).
    pub fn with_issuer(mut self, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self.audience = audience.into();
        self
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of minted tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The key id: `dev-` and the key's RFC 7638 thumbprint, stable across restarts.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn alg(&self) -> Alg {
        self.key.alg()
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The JWKS that verifies this issuer's tokens.
    pub fn jwks(&self) -> Jwks {
        let mut jwk = self.key.public_jwk();
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = self.alg().as_str().into();
        let jwk = PublicJwk::from_json(&jwk).expect("our own public key is a valid jwk");
        Jwks::from_keys([jwk]).expect("one key has a unique kid")
    }

    /// An [`AuthConfig`] (defaults of SPEC §3) that trusts this issuer's tokens.
    pub fn auth_config(&self) -> AuthConfig {
        AuthConfig::new(&self.issuer, &self.audience)
    }

    /// An access token for `subject` in `tenant` with `scopes`, bound to the proof key with
    /// thumbprint `jkt`, valid from now for `lifetime`.
    pub fn mint(
        &self,
        tenant: &TenantId,
        scopes: &[&str],
        subject: &str,
        jkt: &str,
        lifetime: Duration,
    ) -> String {
        self.mint_at(tenant, scopes, subject, jkt, lifetime, Utc::now())
    }

    /// Like [`DevIssuer::mint`], issued at `now`.
    pub fn mint_at(
        &self,
        tenant: &TenantId,
        scopes: &[&str],
        subject: &str,
        jkt: &str,
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> String {
        let lifetime = TimeDelta::from_std(lifetime)
            .unwrap_or(TimeDelta::days(366))
            .min(TimeDelta::days(366));
        let mut jti = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        self.sign(&json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": (now + lifetime).timestamp(),
            "jti": b64(jti),
            "scope": scopes.join(" "),
            "stellaops:tenant": tenant.as_str(),
            "cnf": {"jkt": jkt},
        }))
    }

    /// Signs arbitrary `claims` as an access token (`typ` `at+jwt`, this issuer's `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg().as_str(), "typ": "at+jwt", "kid": self.kid});
        self.key.sign_compact(&header, claims)
    }
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .field("path", &self.path)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}
