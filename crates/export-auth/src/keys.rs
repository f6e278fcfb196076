//! Private signing keys for the client and the dev issuer: generation, PKCS#8 PEM, JWS
//! signatures and the matching public JWK, all with `ring`.

use std::sync::Arc;

use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::Alg;
use crate::error::AuthError;
use crate::jose::b64;
use crate::jwk::PublicJwk;

/// The PKCS#8 v1 encoding of an Ed25519 key (RFC 8410 §7) up to its 32-byte seed. Version 2
/// (ring's own, with the public key) has the same bytes after its first five.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A private key for one of the supported algorithms, with its PKCS#8 DER.
#[derive(Clone)]
pub(crate) struct PrivateKey {
    pair: Pair,
    pkcs8: Arc<Zeroizing<Vec<u8>>>,
}

#[derive(Clone)]
enum Pair {
    Es256(Arc<EcdsaKeyPair>),
    EdDsa(Arc<Ed25519KeyPair>),
    Rs256(Arc<RsaKeyPair>),
}

impl PrivateKey {
    /// A fresh random ES256 or EdDSA key. RS256 keys are not generated here (`ring` has no
    /// RSA key generation): make one with `openssl genpkey -algorithm RSA` and read it.
    pub(crate) fn generate(alg: Alg) -> Result<Self, AuthError> {
        let rng = SystemRandom::new();
        let failed = |_| AuthError::Key("generating a key with the system rng failed".into());
        let pkcs8 = match alg {
            Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Alg::EdDSA => {
                let mut pkcs8 = ED25519_PKCS8_V1_PREFIX.to_vec();
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill(&mut seed[..]).map_err(failed)?;
                pkcs8.extend_from_slice(&seed[..]);
                pkcs8
            }
            Alg::RS256 => {
                return Err(AuthError::Key(
                    "rs256 keys are not generated: create one with \
                     `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`"
                        .into(),
                ))
            }
        };
        Self::from_pkcs8_der(Zeroizing::new(pkcs8))
    }

    /// Reads an unencrypted PKCS#8 PEM (`PRIVATE KEY`) key: P-256, Ed25519 or RSA.
    pub(crate) fn from_pkcs8_pem(pem: &str) -> Result<Self, AuthError> {
        let refused = || AuthError::Key("not an unencrypted pkcs#8 pem key for p-256, ed25519 or rsa".into());
        let (label, der) = pem_rfc7468::decode_vec(pem.as_bytes()).map_err(|_| refused())?;
        if label != "PRIVATE KEY" {
            return Err(refused());
        }
        Self::from_pkcs8_der(Zeroizing::new(der)).map_err(|_| refused())
    }

    fn from_pkcs8_der(der: Zeroizing<Vec<u8>>) -> Result<Self, AuthError> {
        let rng = SystemRandom::new();
        let pair = if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng) {
            Pair::Es256(Arc::new(pair))
        } else if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            Pair::EdDsa(Arc::new(pair))
        } else if let Ok(pair) = RsaKeyPair::from_pkcs8(&der) {
            Pair::Rs256(Arc::new(pair))
        } else {
            return Err(AuthError::Key(
                "not a pkcs#8 key for p-256, ed25519 or rsa".into(),
            ));
        };
        // Ed25519 keys are kept as PKCS#8 v1 (the seed alone), the form every reader takes,
        // OpenSSL and Python's `cryptography` included; ring itself writes v2.
        let v1 = match (&pair, der.get(5..48)) {
            (Pair::EdDsa(_), Some(rest)) if rest[..11] == ED25519_PKCS8_V1_PREFIX[5..] => {
                Some([&ED25519_PKCS8_V1_PREFIX[..], &rest[11..]].concat())
            }
            _ => None,
        };
        let der = v1.map(Zeroizing::new).unwrap_or(der);
        Ok(Self {
            pair,
            pkcs8: Arc::new(der),
        })
    }

    /// The key as unencrypted PKCS#8 PEM (v1 for Ed25519).
    pub(crate) fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, AuthError> {
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &self.pkcs8)
            .map(Zeroizing::new)
            .map_err(|_| AuthError::Key("encoding the key as pkcs#8 pem failed".into()))
    }

    pub(crate) fn alg(&self) -> Alg {
        match self.pair {
            Pair::Es256(_) => Alg::ES256,
            Pair::EdDsa(_) => Alg::EdDSA,
            Pair::Rs256(_) => Alg::RS256,
        }
    }

    /// The public half as a JWK with only the key members (`kty`, `crv`, `x`, `y`, `n`, `e`).
    pub(crate) fn public_jwk(&self) -> Value {
        match &self.pair {
            Pair::Es256(pair) => {
                // The uncompressed SEC1 point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Pair::EdDsa(pair) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key())}),
            Pair::Rs256(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64(public.n), "e": b64(public.e)})
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
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&rng, signing_input)
                .expect("signing with the system rng")
                .as_ref()
                .to_vec(),
            Pair::EdDsa(pair) => pair.sign(signing_input).as_ref().to_vec(),
            Pair::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, signing_input, &mut signature)
                    .expect("signing with the system rng");
                signature
            }
        }
    }

    /// A compact JWS of `header` and `claims`, both used exactly as given.
    pub(crate) fn sign_compact(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(signature))
    }
}
