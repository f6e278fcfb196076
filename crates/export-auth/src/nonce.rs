//! Stateless DPoP server nonces (RFC 9449 §8): an issue time and an HMAC over it, so any
//! replica that shares the secret can check a nonce another one issued.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

use crate::jose::{b64, b64_decode};

/// Bytes of HMAC tag kept in a nonce.
const TAG_BYTES: usize = 16;
/// Domain separation, so the secret cannot be confused with one used elsewhere.
const CONTEXT: &[u8] = b"export-center dpop nonce v1\0";

/// Issues and checks server nonces valid for `window` either side of their issue time.
#[derive(Clone)]
pub struct NonceSource {
    secret: Arc<[u8]>,
    window: Duration,
}

impl NonceSource {
    /// Nonces keyed by `secret`, which every replica must share (32 random bytes or more).
    pub fn new(secret: &[u8], window: Duration) -> Self {
        Self {
            secret: secret.into(),
            window,
        }
    }

    /// Nonces keyed by a random secret: for a single process only.
    pub fn random(window: Duration) -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::new(&secret, window)
    }

    /// How long a nonce stays valid.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// A nonce issued at `now`: base64url of the issue second and a truncated HMAC-SHA-256.
    pub fn issue(&self, now: DateTime<Utc>) -> String {
        let issued = now.timestamp().to_be_bytes();
        let mut nonce = issued.to_vec();
        nonce.extend_from_slice(&self.mac(&issued).finalize().into_bytes()[..TAG_BYTES]);
        b64(nonce)
    }

    /// Whether `nonce` was issued by a holder of the secret within `window` of `now`.
    pub fn verify(&self, nonce: &str, now: DateTime<Utc>) -> bool {
        let Some(bytes) = b64_decode(nonce) else {
            return false;
        };
        if bytes.len() != 8 + TAG_BYTES {
            return false;
        }
        let (issued, tag) = bytes.split_at(8);
        if self.mac(issued).verify_truncated_left(tag).is_err() {
            return false;
        }
        let issued = i64::from_be_bytes(issued.try_into().expect("8 bytes"));
        let age = now.timestamp().saturating_sub(issued).unsigned_abs();
        age <= self.window.as_secs()
    }

    fn mac(&self, issued: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes keys of any length");
        mac.update(CONTEXT);
        mac.update(issued);
        mac
    }
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}
