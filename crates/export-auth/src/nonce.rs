//! Stateless DPoP server nonces (RFC 9449 §8): an issue time, the issuing process's
//! incarnation and an HMAC over both, so any replica that shares the secret can check a
//! nonce another one issued, and a process can tell the nonces it issued itself.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::jose::{b64, b64_decode};
use crate::private_file::create_private;

/// Bytes of HMAC tag kept in a nonce.
const TAG_BYTES: usize = 16;
/// Domain separation, so the secret cannot be confused with one used elsewhere. Version 2
/// nonces carry the issuer's incarnation besides the issue time.
const CONTEXT: &[u8] = b"export-center dpop nonce v2\0";
/// Issue time (milliseconds since the epoch) and incarnation, each 8 bytes.
const SIGNED_BYTES: usize = 16;
/// The shortest secret accepted.
const MIN_SECRET_BYTES: usize = 32;
/// Largest secret file read.
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Issues and checks server nonces valid for `window` either side of their issue time.
///
/// Each source has an incarnation, a random number drawn when it is made (once per process,
/// in the server), that its nonces carry: [`NonceSource::verify_own`] accepts only those,
/// which tells a nonce issued by this process from one issued before it started, however
/// close in time.
#[derive(Clone)]
pub struct NonceSource {
    secret: Arc<Zeroizing<Vec<u8>>>,
    window: Duration,
    incarnation: u64,
}

impl NonceSource {
    /// Nonces keyed by `secret`, which every replica must share (32 random bytes or more).
    pub fn new(secret: &[u8], window: Duration) -> Self {
        Self {
            secret: Arc::new(Zeroizing::new(secret.to_vec())),
            window,
            incarnation: rand::rngs::OsRng.next_u64(),
        }
    }

    /// Nonces keyed by a random secret: for a single process only.
    pub fn random(window: Duration) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        Self::new(secret.as_ref(), window)
    }

    /// Nonces keyed by the secret in the file at `path`: base64 of at least 32 bytes. Every
    /// replica reads the same secret, so each accepts the nonces of the others.
    pub fn from_file(path: &Path, window: Duration) -> Result<Self, AuthError> {
        read_secret_file(path).map(|secret| Self::new(&secret, window))
    }

    /// Like [`NonceSource::from_file`], but creates the file (mode 0600, 32 random bytes)
    /// when there is none. A file that exists is never replaced: one that cannot be read or
    /// holds no valid secret is an error.
    pub fn load_or_create(path: &Path, window: Duration) -> Result<Self, AuthError> {
        if !path.exists() {
            let mut secret = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(secret.as_mut());
            let text = Zeroizing::new(format!("{}\n", STANDARD.encode(secret.as_ref())));
            match create_private(path, text.as_bytes()) {
                Ok(()) => tracing::info!("created the dpop nonce secret {}", path.display()),
                // Another process created it first: use theirs.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(AuthError::io("creating the dpop nonce secret", path, error)),
            }
        }
        Self::from_file(path, window)
    }

    /// How long a nonce stays valid.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// A nonce issued at `now`: base64url of the issue time (milliseconds since the epoch),
    /// this source's incarnation and a truncated HMAC-SHA-256 over both.
    pub fn issue(&self, now: DateTime<Utc>) -> String {
        let mut nonce = now.timestamp_millis().to_be_bytes().to_vec();
        nonce.extend_from_slice(&self.incarnation.to_be_bytes());
        let tag = self.mac(&nonce).finalize().into_bytes();
        nonce.extend_from_slice(&tag[..TAG_BYTES]);
        b64(nonce)
    }

    /// Whether `nonce` was issued by a holder of the secret within `window` of `now`.
    pub fn verify(&self, nonce: &str, now: DateTime<Utc>) -> bool {
        self.incarnation_of(nonce, now).is_some()
    }

    /// Whether `nonce` was issued by this source (this process) within `window` of `now`.
    pub fn verify_own(&self, nonce: &str, now: DateTime<Utc>) -> bool {
        self.incarnation_of(nonce, now) == Some(self.incarnation)
    }

    /// The incarnation that issued `nonce`, if a holder of the secret issued it within
    /// `window` of `now`.
    fn incarnation_of(&self, nonce: &str, now: DateTime<Utc>) -> Option<u64> {
        let bytes = b64_decode(nonce)?;
        if bytes.len() != SIGNED_BYTES + TAG_BYTES {
            return None;
        }
        let (signed, tag) = bytes.split_at(SIGNED_BYTES);
        self.mac(signed).verify_truncated_left(tag).ok()?;
        let (issued, incarnation) = signed.split_at(8);
        let issued = i64::from_be_bytes(issued.try_into().expect("8 bytes"));
        let age_ms = now.timestamp_millis().saturating_sub(issued).unsigned_abs();
        if u128::from(age_ms) > self.window.as_millis() {
            return None;
        }
        Some(u64::from_be_bytes(incarnation.try_into().expect("8 bytes")))
    }

    fn mac(&self, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes keys of any length");
        mac.update(CONTEXT);
        mac.update(signed);
        mac
    }
}

/// The secret in a nonce secret file: base64 (surrounding whitespace ignored) of at least
/// [`MIN_SECRET_BYTES`] bytes.
fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let reading = |error| AuthError::io("reading the dpop nonce secret", path, error);
    let metadata = std::fs::metadata(path).map_err(reading)?;
    if !metadata.is_file() || metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(AuthError::Key(format!(
            "{} is not a dpop nonce secret file (a file of at most 4 KiB)",
            path.display()
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(reading)?);
    let secret = STANDARD
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| AuthError::Key(format!("{} does not hold base64", path.display())))?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::Key(format!(
            "{} holds {} bytes; a dpop nonce secret needs at least {MIN_SECRET_BYTES}",
            path.display(),
            secret.len()
        )));
    }
    Ok(secret)
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}
