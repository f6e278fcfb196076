//! Signing and verifying keys: Ed25519 or ECDSA P-256, in PKCS#8 and SPKI PEM, named by a
//! `keyid` that is the hex SHA-256 of the public key's SPKI DER.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, Verifier as _};
use export_core::Sha256Digest;
use pkcs8::der::pem::PemLabel;
use pkcs8::{
    DecodePrivateKey, EncodePrivateKey, LineEnding, ObjectIdentifier, PrivateKeyInfo, SecretDocument,
};
use spki::{AlgorithmIdentifierRef, DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoRef};

use crate::SigningError;

/// RFC 8410 `id-Ed25519`.
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// RFC 5480 `id-ecPublicKey`; the curve is in the algorithm parameters.
const EC_PUBLIC_KEY_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// RFC 5480 `secp256r1` (NIST P-256).
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// The two signature algorithms Export Center signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032), the default.
    #[default]
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256, RFC 6979 nonces and DER signatures.
    P256,
}

impl KeyAlgorithm {
    /// `ed25519` or `p256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::P256 => "p256",
        }
    }

    /// Which algorithm a PKCS#8 or SPKI algorithm identifier names.
    fn from_identifier(algorithm: &AlgorithmIdentifierRef<'_>) -> Result<Self, SigningError> {
        if algorithm.oid == ED25519_OID {
            return Ok(Self::Ed25519);
        }
        if algorithm.oid == EC_PUBLIC_KEY_OID {
            return match algorithm.parameters_oid() {
                Ok(curve) if curve == P256_OID => Ok(Self::P256),
                Ok(curve) => Err(SigningError::UnsupportedKeyType(format!(
                    "ECDSA on {}",
                    describe_oid(curve)
                ))),
                Err(_) => Err(SigningError::UnsupportedKeyType(
                    "ECDSA without a named curve".into(),
                )),
            };
        }
        Err(SigningError::UnsupportedKeyType(describe_oid(algorithm.oid)))
    }
}

/// A readable name for the key types people most often try, the dotted OID for the rest.
fn describe_oid(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.113" => "Ed448",
        "1.3.132.0.34" => "curve P-384",
        "1.3.132.0.35" => "curve P-521",
        "1.3.132.0.10" => "curve secp256k1",
        _ => return format!("with OID {oid}"),
    };
    name.to_owned()
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = SigningError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ed25519" => Ok(Self::Ed25519),
            "p256" => Ok(Self::P256),
            _ => Err(SigningError::UnknownAlgorithm(text.chars().take(40).collect())),
        }
    }
}

#[derive(Clone)]
enum SecretKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A private key that signs DSSE envelopes.
///
/// Its `Debug` output names the algorithm and `keyid`, never the secret.
#[derive(Clone)]
pub struct SigningKey {
    secret: SecretKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// Reads an unencrypted PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`), Ed25519 or
    /// ECDSA P-256, as written by `openssl genpkey` or [`generate`]; Ed25519 keys in PKCS#8 v2
    /// (with the public key, as earlier versions of [`generate`] wrote them) load too.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, SigningError> {
        let (label, document) =
            SecretDocument::from_pem(pem).map_err(|err| SigningError::PrivateKeyPem(err.into()))?;
        PrivateKeyInfo::validate_pem_label(label).map_err(|err| SigningError::PrivateKeyPem(err.into()))?;
        let info = PrivateKeyInfo::try_from(document.as_bytes()).map_err(SigningError::PrivateKeyPem)?;
        let secret = match KeyAlgorithm::from_identifier(&info.algorithm)? {
            KeyAlgorithm::Ed25519 => SecretKey::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_der(document.as_bytes())
                    .map_err(SigningError::PrivateKeyPem)?,
            ),
            KeyAlgorithm::P256 => SecretKey::P256(
                p256::ecdsa::SigningKey::from_pkcs8_der(document.as_bytes())
                    .map_err(SigningError::PrivateKeyPem)?,
            ),
        };
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let public = match &secret {
            SecretKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            SecretKey::P256(key) => PublicKey::P256(*key.verifying_key()),
        };
        Self {
            secret,
            public: VerifyingKey::from_public(public),
        }
    }

    /// Writes this key as unencrypted PKCS#8 v1 PEM (`PrivateKeyInfo`, as `openssl genpkey`
    /// writes it) with LF line endings.
    pub fn to_pkcs8_pem(&self) -> Result<String, SigningError> {
        let pem = match &self.secret {
            // PKCS#8 v1, without the optional public key: `ed25519-dalek` writes v2 (RFC
            // 5958 `OneAsymmetricKey` with the public key), which OpenSSL 3.0 and Python's
            // `cryptography` cannot read.
            SecretKey::Ed25519(key) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF),
            SecretKey::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
        };
        Ok(pem
            .map_err(|err| SigningError::EncodingKey(err.to_string()))?
            .to_string())
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    /// The lowercase hex SHA-256 of the public key's SPKI DER.
    pub fn keyid(&self) -> &str {
        self.public.keyid()
    }

    /// The public half of this key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `message`, deterministically: an Ed25519 signature (64 bytes) or a DER-encoded
    /// ECDSA P-256 signature over SHA-256 with an RFC 6979 nonce.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.secret {
            SecretKey::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            SecretKey::P256(key) => {
                let signature: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, message);
                signature.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq)]
enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// A public key that verifies DSSE envelopes.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    public: PublicKey,
    keyid: String,
}

impl VerifyingKey {
    /// Reads a SubjectPublicKeyInfo public key (`-----BEGIN PUBLIC KEY-----`), Ed25519 or
    /// ECDSA P-256, as written by `openssl pkey -pubout` or [`generate`].
    pub fn from_public_key_pem(pem: &str) -> Result<Self, SigningError> {
        let (label, document) =
            spki::Document::from_pem(pem).map_err(|err| SigningError::PublicKeyPem(err.into()))?;
        SubjectPublicKeyInfoRef::validate_pem_label(label)
            .map_err(|err| SigningError::PublicKeyPem(err.into()))?;
        let info =
            SubjectPublicKeyInfoRef::try_from(document.as_bytes()).map_err(SigningError::PublicKeyPem)?;
        let public = match KeyAlgorithm::from_identifier(&info.algorithm)? {
            KeyAlgorithm::Ed25519 => PublicKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(document.as_bytes())
                    .map_err(SigningError::PublicKeyPem)?,
            ),
            KeyAlgorithm::P256 => PublicKey::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(document.as_bytes())
                    .map_err(SigningError::PublicKeyPem)?,
            ),
        };
        Ok(Self::from_public(public))
    }

    fn from_public(public: PublicKey) -> Self {
        // The keyid hashes our own encoding of the key, not the input bytes, so a private key
        // and its public half always agree (a P-256 point is always written uncompressed).
        let keyid = Sha256Digest::of(&spki_der(&public)).hex();
        Self { public, keyid }
    }

    /// Writes this key as SubjectPublicKeyInfo PEM with LF line endings.
    pub fn to_public_key_pem(&self) -> String {
        let pem = match &self.public {
            PublicKey::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::P256(key) => key.to_public_key_pem(LineEnding::LF),
        };
        pem.expect("encoding a valid public key as PEM cannot fail")
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.public {
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicKey::P256(_) => KeyAlgorithm::P256,
        }
    }

    /// The lowercase hex SHA-256 of this key's SPKI DER.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// Checks `signature` over `message`: a 64-byte Ed25519 signature (verified strictly) or a
    /// DER-encoded ECDSA P-256 signature over SHA-256.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SigningError> {
        let verified = match &self.public {
            PublicKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .and_then(|signature| key.verify_strict(message, &signature))
                .is_ok(),
            PublicKey::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .and_then(|signature| key.verify(message, &signature))
                .is_ok(),
        };
        if verified {
            Ok(())
        } else {
            Err(SigningError::SignatureInvalid)
        }
    }
}

fn spki_der(public: &PublicKey) -> Vec<u8> {
    let document = match public {
        PublicKey::Ed25519(key) => key.to_public_key_der(),
        PublicKey::P256(key) => key.to_public_key_der(),
    };
    document
        .expect("encoding a valid public key as DER cannot fail")
        .into_vec()
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm())
            .field("keyid", &self.keyid)
            .finish()
    }
}

/// Makes a new key pair from the operating system's random source and returns it as
/// `(PKCS#8 private key PEM, SPKI public key PEM)`, both with LF line endings.
pub fn generate(algorithm: KeyAlgorithm) -> Result<(String, String), SigningError> {
    let mut rng = rand::rngs::OsRng;
    let secret = match algorithm {
        KeyAlgorithm::Ed25519 => SecretKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
        KeyAlgorithm::P256 => SecretKey::P256(p256::ecdsa::SigningKey::random(&mut rng)),
    };
    let key = SigningKey::from_secret(secret);
    Ok((key.to_pkcs8_pem()?, key.verifying_key().to_public_key_pem()))
}
