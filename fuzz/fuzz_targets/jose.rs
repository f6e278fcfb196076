//! Fuzzes DPoP authentication (`export_auth::Authenticator`, SPEC §3): the parsing of the
//! `Authorization` and `DPoP` values (compact JWS, base64url, the protected header, the
//! claims, the proof's JWK, `htu`, nonces) and every check after it, with fixed keys at a
//! fixed time; and the readers of JWK sets, JWKs, `htu` URLs and server nonces.
//!
//! The first byte says what the rest is:
//! - `S`, `N` or `B` (signed): up to four lines, each a JSON merge patch (RFC 7396) of, in
//!   order, the access token's header, its claims, the proof's header and its claims,
//!   applied to a valid request (an empty line or a missing one changes nothing). The target
//!   signs what results with the fixed keys, so the checks behind the signatures are reached.
//!   `N` makes the verifier require a server nonce, `B` sets `replay_record_since` after the
//!   proof's `iat` (so only a nonce of this verifier will do); the unpatched request carries
//!   one. An unpatched request must be accepted, and an accepted one names the token's
//!   subject and tenant and is bound to the proof key.
//! - anything else (raw): up to four lines: the `Authorization` value, the `DPoP` value,
//!   the method and the public URL (the valid request's when missing). The whole rest is
//!   also read as a JWK set and a JWK, and each line as an `htu` and a server nonce.
//!
//! With `FUZZ_JOSE_SEEDS=<dir>` set, the target writes the valid request in raw form to
//! `<dir>` when it starts: `scripts/fuzz` builds the raw seeds so, with the keys below.
#![no_main]

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};
use export_auth::client::{access_token_hash, authorization_header, DpopKey};
use export_auth::{
    normalize_htu, AuthConfig, AuthError, Authenticator, Jwks, MemoryReplayCache, NonceSource, Principal,
    PublicJwk, RequestFacts,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// The time every request is checked at: 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
const ISSUER: &str = "https://issuer.fuzz.example";
const AUDIENCE: &str = "export-center";
const KID: &str = "fuzz-issuer";
const METHOD: &str = "POST";
const URL: &str = "https://export.example/export-center/runs";

/// Fixed Ed25519 keys (made for this target with `openssl genpkey -algorithm ed25519`;
/// they protect nothing): Ed25519 signatures are deterministic, so an input gives the same
/// token and proof on every run, and a crash replays.
const ISSUER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIL3LJaGECKFrWM/jnXlpVzWIXXkpCOdcbZieErLpcK89
-----END PRIVATE KEY-----
";
const PROOF_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILDgrJJqkYq8Mpwt/B+JXSd4Qowvx6Gmld2NleQ2g7Vv
-----END PRIVATE KEY-----
";

struct Fixture {
    issuer: DpopKey,
    proof: DpopKey,
    jwks: Jwks,
    /// Shared by every verifier, so the nonce of the valid request is this verifier's own.
    nonces: NonceSource,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer = DpopKey::from_pkcs8_pem(ISSUER_KEY).expect("the issuer key reads");
        let proof = DpopKey::from_pkcs8_pem(PROOF_KEY).expect("the proof key reads");
        let mut public = issuer.public_jwk().clone();
        public["kid"] = KID.into();
        public["alg"] = "EdDSA".into();
        let jwks =
            Jwks::from_keys([PublicJwk::from_json(&public).expect("the issuer jwk reads")]).expect("one key");
        Fixture {
            issuer,
            proof,
            jwks,
            nonces: NonceSource::new(&[9; 32], Duration::from_secs(60)),
        }
    })
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).expect("a valid time")
}

/// How the verifier is set up for one input.
#[derive(Clone, Copy, PartialEq)]
enum Nonces {
    NotRequired,
    Required,
    /// `replay_record_since` is after the proof's `iat`: only this verifier's nonce will do.
    OwnSinceRecord,
}

fn authenticator(nonces: Nonces) -> Authenticator {
    let fixture = fixture();
    let mut config = AuthConfig::new(ISSUER, AUDIENCE);
    config.require_nonce = nonces == Nonces::Required;
    if nonces == Nonces::OwnSinceRecord {
        config.replay_record_since = Some(now() + chrono::TimeDelta::seconds(1));
    }
    Authenticator::new(
        config,
        Arc::new(fixture.jwks.clone()),
        Arc::new(MemoryReplayCache::with_capacity(16)),
        Some(fixture.nonces.clone()),
    )
}

/// The four parts of a valid request, before signing; the proof's `ath` is set once the
/// token is signed.
fn valid_parts(nonces: Nonces) -> [Value; 4] {
    let fixture = fixture();
    let mut proof_claims = json!({"jti": "proof-1", "htm": METHOD, "htu": URL, "iat": NOW});
    if nonces != Nonces::NotRequired {
        proof_claims["nonce"] = fixture.nonces.issue(now()).into();
    }
    [
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": KID}),
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "fuzz-client",
            "iat": NOW - 60,
            "nbf": NOW - 60,
            "exp": NOW + 3600,
            "jti": "token-1",
            "scope": "export:read export:write",
            "stellaops:tenant": "tenant-fuzz",
            "cnf": {"jkt": fixture.proof.jwk_thumbprint()},
        }),
        json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": fixture.proof.public_jwk()}),
        proof_claims,
    ]
}

/// Signs the four parts: the token with the issuer key, the proof with the proof key. The
/// proof's `ath` is the token's unless its claims set one.
fn sign(parts: &[Value; 4], proof_sets_ath: bool) -> (String, String) {
    let fixture = fixture();
    let token = fixture.issuer.sign_jwt(&parts[0], &parts[1]);
    let mut proof_claims = parts[3].clone();
    if !proof_sets_ath {
        if let Some(claims) = proof_claims.as_object_mut() {
            claims.insert("ath".into(), access_token_hash(&token).into());
        }
    }
    let proof = fixture.proof.sign_jwt(&parts[2], &proof_claims);
    (token, proof)
}

fn write_raw_seeds(dir: &std::path::Path) {
    let (token, proof) = sign(&valid_parts(Nonces::NotRequired), false);
    let authorization = authorization_header(&token);
    let seeds = [
        ("raw-valid", format!("R{authorization}\n{proof}\n{METHOD}\n{URL}")),
        ("raw-bearer", format!("RBearer {token}\n{proof}")),
        ("raw-two-proofs", format!("R{authorization}\n{proof},{proof}")),
    ];
    std::fs::create_dir_all(dir).expect("the seed directory can be made");
    for (name, seed) in seeds {
        std::fs::write(dir.join(name), seed).expect("a seed can be written");
    }
}

/// Runs `future` to its end: with an in-memory key set and replay cache, authentication
/// never waits.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("authentication waited with nothing to wait for"),
    }
}

fn authenticate(
    nonces: Nonces,
    authorization: Option<&str>,
    dpop: Option<&str>,
    method: &str,
    public_url: &str,
) -> Result<Principal, AuthError> {
    let facts = RequestFacts {
        method,
        public_url,
        authorization,
        dpop,
        now: now(),
    };
    complete(authenticator(nonces).authenticate(&facts))
}

/// RFC 7396: members of `patch` replace those of `target`, `null` removes one, and a patch
/// that is not an object replaces the whole value.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

fn signed(nonces: Nonces, input: &str) {
    let valid = valid_parts(nonces);
    let mut parts = valid.clone();
    let mut proof_sets_ath = false;
    for (index, line) in input.split('\n').take(4).enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(patch) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if index == 3 && patch.get("ath").is_some() {
            proof_sets_ath = true;
        }
        merge_patch(&mut parts[index], &patch);
    }
    let (token, proof) = sign(&parts, proof_sets_ath);
    let authorization = authorization_header(&token);
    let outcome = authenticate(nonces, Some(&authorization), Some(&proof), METHOD, URL);
    if parts == valid && !proof_sets_ath {
        if let Err(error) = &outcome {
            panic!("the valid request was refused: {error}");
        }
    }
    if let Ok(principal) = outcome {
        let claims = &parts[1];
        assert_eq!(
            principal.jkt,
            fixture().proof.jwk_thumbprint(),
            "accepted with a proof that is not the proof key's"
        );
        assert_eq!(Some(principal.subject.as_str()), claims["sub"].as_str());
        let tenant = claims["stellaops:tenant"].as_str().or(claims["tid"].as_str());
        assert_eq!(Some(principal.tenant.as_str()), tenant);
    }
}

fn raw(input: &str) {
    let mut lines = input.split('\n');
    let authorization = lines.next();
    let dpop = lines.next();
    let method = lines.next().unwrap_or(METHOD);
    let public_url = lines.next().unwrap_or(URL);
    for nonces in [Nonces::NotRequired, Nonces::Required] {
        let _ = authenticate(nonces, authorization, dpop, method, public_url);
    }
    let _ = Jwks::from_json(input.as_bytes());
    if let Ok(value) = serde_json::from_str::<Value>(input) {
        let _ = PublicJwk::from_json(&value);
    }
    for line in input.split('\n') {
        if let Some(normalized) = normalize_htu(line) {
            assert_eq!(
                normalize_htu(&normalized).as_deref(),
                Some(normalized.as_str()),
                "normalizing {line:?} twice changes it"
            );
        }
        let _ = fixture().nonces.verify(line, now());
    }
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: std::sync::Once = std::sync::Once::new();
    SEEDS.call_once(|| {
        if let Some(dir) = std::env::var_os("FUZZ_JOSE_SEEDS") {
            write_raw_seeds(std::path::Path::new(&dir));
        }
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = String::from_utf8_lossy(rest);
    match mode {
        b'S' => signed(Nonces::NotRequired, &input),
        b'N' => signed(Nonces::Required, &input),
        b'B' => signed(Nonces::OwnSinceRecord, &input),
        _ => raw(&input),
    }
});
