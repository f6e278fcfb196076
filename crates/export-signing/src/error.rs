//! The one error type of this crate.

/// Why a key could not be read or made, or an envelope or statement did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("reading PKCS#8 PEM: {0}")]
    PrivateKeyPem(pkcs8::Error),
    #[error("reading SPKI public key PEM: {0}")]
    PublicKeyPem(spki::Error),
    #[error("unsupported key type {0} (expected Ed25519 or ECDSA P-256)")]
    UnsupportedKeyType(String),
    #[error("unknown key algorithm `{0}` (expected `ed25519` or `p256`)")]
    UnknownAlgorithm(String),
    #[error("encoding key as PEM: {0}")]
    EncodingKey(String),
    #[error("reading DSSE envelope: {0}")]
    MalformedEnvelope(String),
    #[error("no signature by key {keyid}")]
    NoSignatureByKey { keyid: String },
    #[error("signature invalid")]
    SignatureInvalid,
    #[error("reading in-toto statement: {0}")]
    MalformedStatement(String),
}
