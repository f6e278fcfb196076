//! Public JSON Web Keys (RFC 7517) for the three supported algorithms, their RFC 7638
//! thumbprints, signature verification, and key sets looked up by `kid`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::rand::SystemRandom;
use ring::signature::{RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Map, Value};

use crate::config::Alg;
use crate::error::AuthError;
use crate::jose::{b64_decode, b64_sha256};

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
pub(crate) const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3), and the largest ring verifies.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The encodings of the eight points of small order on Curve25519 in Edwards form (the
/// identity, the point of order 2, two of order 4, four of order 8): a "weak" Ed25519
/// public key, for which one signature verifies for many messages. ring verifies with
/// any public key that decodes, so these are refused when a JWK is read.
const ED25519_SMALL_ORDER: [[u8; 32]; 8] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
];

const fn hex32(text: &str) -> [u8; 32] {
    const fn nibble(digit: u8) -> u8 {
        match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let text = text.as_bytes();
    assert!(text.len() == 64);
    let mut bytes = [0u8; 32];
    let mut index = 0;
    while index < 32 {
        bytes[index] = (nibble(text[2 * index]) << 4) | nibble(text[2 * index + 1]);
        index += 1;
    }
    bytes
}

/// A public signing key read from a JWK: EC P-256, OKP Ed25519 or RSA.
#[derive(Clone)]
pub struct PublicJwk {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the key may then only be used with it.
    alg: Option<String>,
    key: Key,
    thumbprint: String,
}

/// Every key is verified with ring; what ring checks only when it verifies (a point on the
/// curve, the RSA parameters) is checked when the key is read, so a broken key in a key set
/// fails the set.
#[derive(Clone)]
enum Key {
    /// The uncompressed SEC1 point `0x04 || x || y`.
    P256 {
        sec1: Vec<u8>,
        x: String,
        y: String,
    },
    Ed25519 {
        public: [u8; 32],
        x: String,
    },
    Rsa {
        n_bytes: Vec<u8>,
        e_bytes: Vec<u8>,
        n: String,
        e: String,
    },
}

/// Why a JWK was not usable; `Unsupported` keys are skipped in key sets.
#[derive(Debug)]
pub(crate) enum JwkProblem {
    Unsupported(&'static str),
    Invalid(&'static str),
}

impl JwkProblem {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            JwkProblem::Unsupported(message) | JwkProblem::Invalid(message) => message,
        }
    }
}

impl PublicJwk {
    /// Reads one public JWK. Keys with private members, of other types or curves, or
    /// meant for encryption (`use` other than `sig`) are refused.
    pub fn from_json(value: &Value) -> Result<Self, AuthError> {
        let object = value
            .as_object()
            .ok_or_else(|| AuthError::Key("jwk is not a json object".into()))?;
        Self::from_members(object).map_err(|problem| AuthError::Key(problem.message().into()))
    }

    pub(crate) fn from_members(jwk: &Map<String, Value>) -> Result<Self, JwkProblem> {
        if PRIVATE_MEMBERS.iter().any(|member| jwk.contains_key(*member)) {
            return Err(JwkProblem::Invalid("jwk contains private key members"));
        }
        let text = |member: &str| -> Result<Option<String>, JwkProblem> {
            match jwk.get(member) {
                None => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(JwkProblem::Invalid("jwk member is not a string")),
            }
        };
        let required = |member: &str| -> Result<String, JwkProblem> {
            text(member)?.ok_or(JwkProblem::Invalid("jwk is missing a required member"))
        };
        let bytes = |value: &str| b64_decode(value).ok_or(JwkProblem::Invalid("jwk member is not base64url"));
        if let Some(usage) = text("use")? {
            if usage != "sig" {
                return Err(JwkProblem::Unsupported("jwk use is not sig"));
            }
        }
        let key = match required("kty")?.as_str() {
            "EC" => {
                if required("crv")? != "P-256" {
                    return Err(JwkProblem::Unsupported("ec jwk curve is not p-256"));
                }
                let (x, y) = (required("x")?, required("y")?);
                let (x_bytes, y_bytes) = (bytes(&x)?, bytes(&y)?);
                if x_bytes.len() != 32 || y_bytes.len() != 32 {
                    return Err(JwkProblem::Invalid("ec jwk coordinates are not 32 bytes"));
                }
                let sec1 = [&[4u8][..], &x_bytes[..], &y_bytes[..]].concat();
                if !on_p256(&sec1) {
                    return Err(JwkProblem::Invalid("ec jwk is not a point on p-256"));
                }
                Key::P256 { sec1, x, y }
            }
            "OKP" => {
                if required("crv")? != "Ed25519" {
                    return Err(JwkProblem::Unsupported("okp jwk curve is not ed25519"));
                }
                let x = required("x")?;
                let x_bytes: [u8; 32] = bytes(&x)?
                    .try_into()
                    .map_err(|_| JwkProblem::Invalid("okp jwk x is not 32 bytes"))?;
                // y ≥ 2^255 - 19: a non-canonical encoding, which `ed25519-dalek`'s strict
                // decoding refused too (and among which hide more small-order points).
                let non_canonical = x_bytes[0] >= 0xed
                    && x_bytes[1..31].iter().all(|byte| *byte == 0xff)
                    && x_bytes[31] & 0x7f == 0x7f;
                if non_canonical {
                    return Err(JwkProblem::Invalid("okp jwk is not an ed25519 public key"));
                }
                if ED25519_SMALL_ORDER.contains(&x_bytes) {
                    return Err(JwkProblem::Invalid("okp jwk is a weak ed25519 key"));
                }
                Key::Ed25519 { public: x_bytes, x }
            }
            "RSA" => {
                let (n, e) = (required("n")?, required("e")?);
                // Leading zero octets are not allowed (RFC 7518 §6.3.1) but do occur; ring
                // wants the minimal encoding.
                let minimal = |bytes: Vec<u8>| {
                    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
                    bytes[zeros..].to_vec()
                };
                let (n_bytes, e_bytes) = (minimal(bytes(&n)?), minimal(bytes(&e)?));
                let bits = |bytes: &[u8]| match bytes.first() {
                    Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
                    None => 0,
                };
                if bits(&n_bytes) < *RSA_BITS.start() {
                    return Err(JwkProblem::Invalid("rsa jwk is shorter than 2048 bits"));
                }
                // ring's limits: an odd modulus of at most 8192 bits, an odd exponent of at
                // least 3 and at most 33 bits.
                let odd = |bytes: &[u8]| bytes.last().is_some_and(|last| last & 1 == 1);
                let exponent_bits = bits(&e_bytes);
                if !RSA_BITS.contains(&bits(&n_bytes))
                    || !odd(&n_bytes)
                    || !odd(&e_bytes)
                    || !(2..=33).contains(&exponent_bits)
                {
                    return Err(JwkProblem::Invalid("rsa jwk is not a valid public key"));
                }
                Key::Rsa {
                    n_bytes,
                    e_bytes,
                    n,
                    e,
                }
            }
            _ => return Err(JwkProblem::Unsupported("jwk kty is not EC, OKP or RSA")),
        };
        let thumbprint = b64_sha256(thumbprint_input(&key));
        Ok(Self {
            kid: text("kid")?,
            alg: text("alg")?,
            key,
            thumbprint,
        })
    }

    /// The key id, if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, base64url: what `cnf.jkt` names.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// `EC`, `OKP` or `RSA`.
    pub fn kty(&self) -> &'static str {
        match self.key {
            Key::P256 { .. } => "EC",
            Key::Ed25519 { .. } => "OKP",
            Key::Rsa { .. } => "RSA",
        }
    }

    /// Whether this key can verify `alg` signatures: the key type fits, and the JWK's own
    /// `alg`, if any, is `alg`.
    pub fn supports(&self, alg: Alg) -> bool {
        let fits = matches!(
            (&self.key, alg),
            (Key::P256 { .. }, Alg::ES256)
                | (Key::Ed25519 { .. }, Alg::EdDSA)
                | (Key::Rsa { .. }, Alg::RS256)
        );
        fits && self.alg.as_deref().is_none_or(|own| own == alg.as_str())
    }

    /// Verifies a JWS signature over `signing_input`; false if the key does not fit `alg`.
    pub fn verify(&self, alg: Alg, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        match &self.key {
            Key::P256 { sec1, .. } => ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1)
                .verify(signing_input, signature)
                .is_ok(),
            Key::Ed25519 { public, .. } => ring::signature::UnparsedPublicKey::new(&ED25519, public)
                .verify(signing_input, signature)
                .is_ok(),
            Key::Rsa { n_bytes, e_bytes, .. } => RsaPublicKeyComponents {
                n: n_bytes,
                e: e_bytes,
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signing_input, signature)
            .is_ok(),
        }
    }

    /// The public JWK as JSON: the key's members, plus `kid`, `alg` and `use` when known.
    pub fn to_json(&self) -> Value {
        let mut value = public_members(&self.key);
        let object = value.as_object_mut().expect("public members are an object");
        if let Some(kid) = &self.kid {
            object.insert("kid".into(), kid.clone().into());
        }
        if let Some(alg) = &self.alg {
            object.insert("alg".into(), alg.clone().into());
        }
        object.insert("use".into(), "sig".into());
        value
    }
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicJwk")
            .field("kid", &self.kid)
            .field("kty", &self.kty())
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

/// Whether `sec1` is a point on P-256. ring checks a peer's point before any key agreement
/// (and only then), so an agreement with a throwaway key is the check.
fn on_p256(sec1: &[u8]) -> bool {
    let rng = SystemRandom::new();
    EphemeralPrivateKey::generate(&ECDH_P256, &rng).is_ok_and(|private| {
        agree_ephemeral(private, &UnparsedPublicKey::new(&ECDH_P256, sec1), |_| ()).is_ok()
    })
}

fn public_members(key: &Key) -> Value {
    match key {
        Key::P256 { x, y, .. } => json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
        Key::Ed25519 { x, .. } => json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
        Key::Rsa { n, e, .. } => json!({"kty": "RSA", "n": n, "e": e}),
    }
}

/// The RFC 7638 thumbprint input: the required members only, in lexicographic order, no
/// whitespace. The values are base64url text, which JSON never needs to escape.
fn thumbprint_input(key: &Key) -> String {
    match key {
        Key::P256 { x, y, .. } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
        Key::Ed25519 { x, .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        Key::Rsa { n, e, .. } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
    }
}

/// A JSON Web Key Set (RFC 7517 §5): the issuer's public keys, looked up by `kid`.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: HashMap<String, Arc<PublicJwk>>,
}

impl Jwks {
    /// Reads `{"keys": [...]}`. Keys without `kid`, of unsupported types or curves, or for
    /// encryption are skipped; a malformed supported key, a key with private members or a
    /// repeated `kid` fails the whole set.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AuthError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| AuthError::Jwks("jwks is not valid json".into()))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| AuthError::Jwks("jwks has no `keys` array".into()))?;
        let mut jwks = Jwks::default();
        for (index, key) in keys.iter().enumerate() {
            let Some(object) = key.as_object() else {
                return Err(AuthError::Jwks(format!("jwks key {index} is not a json object")));
            };
            match PublicJwk::from_members(object) {
                Ok(jwk) if jwk.kid.is_some() => jwks.insert(jwk)?,
                Ok(_) | Err(JwkProblem::Unsupported(_)) => {}
                Err(JwkProblem::Invalid(message)) => {
                    return Err(AuthError::Jwks(format!("jwks key {index}: {message}")))
                }
            }
        }
        Ok(jwks)
    }

    /// A set of the given keys, each of which must have a distinct `kid`.
    pub fn from_keys(keys: impl IntoIterator<Item = PublicJwk>) -> Result<Self, AuthError> {
        let mut jwks = Jwks::default();
        for key in keys {
            jwks.insert(key)?;
        }
        Ok(jwks)
    }

    fn insert(&mut self, key: PublicJwk) -> Result<(), AuthError> {
        let kid = key
            .kid
            .clone()
            .ok_or_else(|| AuthError::Jwks("jwks key has no kid".into()))?;
        if self.keys.contains_key(&kid) {
            return Err(AuthError::Jwks(format!("jwks has kid `{kid}` twice")));
        }
        self.keys.insert(kid, Arc::new(key));
        Ok(())
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<Arc<PublicJwk>> {
        self.keys.get(kid).cloned()
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// The set as JWKS JSON, keys sorted by `kid`.
    pub fn to_json(&self) -> Value {
        let keys: Vec<Value> = self
            .kids()
            .into_iter()
            .map(|kid| self.keys[kid].to_json())
            .collect();
        json!({ "keys": keys })
    }
}
