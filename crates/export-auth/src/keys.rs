//! Private signing keys for the client and the dev issuer: generation, PKCS#8 PEM, JWS
//! signatures and the matching public JWK.

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand::rngs::OsRng;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::Alg;
use crate::error::AuthError;
use crate::jose::b64;
use crate::jwk::PublicJwk;

/// RSA keys made by [`PrivateKey::generate`] have this many bits.
const RSA_BITS: usize = 2048;

/// A private key for one of the supported algorithms.
#[derive(Clone)]
pub(crate) enum PrivateKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Rs256(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
}

impl PrivateKey {
    /// A fresh random key. RSA generation takes a noticeable moment.
    pub(crate) fn generate(alg: Alg) -> Result<Self, AuthError> {
        Ok(match alg {
            Alg::ES256 => PrivateKey::Es256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            Alg::EdDSA => PrivateKey::EdDsa(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            Alg::RS256 => {
                let key = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                    .map_err(|_| AuthError::Key("generating an rsa key failed".into()))?;
                PrivateKey::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
        })
    }

    /// Reads an unencrypted PKCS#8 PEM (`PRIVATE KEY`) key: P-256, Ed25519 or RSA.
    pub(crate) fn from_pkcs8_pem(pem: &str) -> Result<Self, AuthError> {
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(PrivateKey::Es256(key.into()));
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(PrivateKey::EdDsa(key));
        }
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            return Ok(PrivateKey::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(key))));
        }
        Err(AuthError::Key(
            "not an unencrypted pkcs#8 pem key for p-256, ed25519 or rsa".into(),
        ))
    }

    /// The key as unencrypted PKCS#8 v1 PEM.
    pub(crate) fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, AuthError> {
        let line_ending = p256::pkcs8::LineEnding::LF;
        let pem = match self {
            PrivateKey::Es256(key) => p256::SecretKey::from(key).to_pkcs8_pem(line_ending),
            // PKCS#8 v1 without the public key, which OpenSSL and Python's `cryptography`
            // read; `ed25519-dalek` itself writes v2, which they refuse.
            PrivateKey::EdDsa(key) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(line_ending),
            PrivateKey::Rs256(key) => key.as_ref().as_ref().to_pkcs8_pem(line_ending),
        };
        pem.map_err(|_| AuthError::Key("encoding the key as pkcs#8 pem failed".into()))
    }

    pub(crate) fn alg(&self) -> Alg {
        match self {
            PrivateKey::Es256(_) => Alg::ES256,
            PrivateKey::EdDsa(_) => Alg::EdDSA,
            PrivateKey::Rs256(_) => Alg::RS256,
        }
    }

    /// The public half as a JWK with only the key members (`kty`, `crv`, `x`, `y`, `n`, `e`).
    pub(crate) fn public_jwk(&self) -> Value {
        match self {
            PrivateKey::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64(point.x().expect("an uncompressed point has x")),
                    "y": b64(point.y().expect("an uncompressed point has y")),
                })
            }
            PrivateKey::EdDsa(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())})
            }
            PrivateKey::Rs256(key) => {
                let public = key.as_ref().as_ref().to_public_key();
                json!({"kty": "RSA", "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be())})
            }
        }
    }

    /// The RFC 7638 thumbprint of the public half.
    pub(crate) fn thumbprint(&self) -> String {
        PublicJwk::from_json(&self.public_jwk())
            .expect("our own public key is a valid jwk")
            .thumbprint()
            .to_owned()
    }

    /// The JWS signature over `signing_input` in JOSE form (`r || s` for ES256).
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        match self {
            PrivateKey::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(signing_input);
                signature.to_bytes().to_vec()
            }
            PrivateKey::EdDsa(key) => key.sign(signing_input).to_bytes().to_vec(),
            PrivateKey::Rs256(key) => key.sign(signing_input).to_vec(),
        }
    }

    /// A compact JWS of `header` and `claims`, both used exactly as given.
    pub(crate) fn sign_compact(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(signature))
    }
}
