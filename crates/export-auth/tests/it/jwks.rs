//! Key sets: parsing, a file that can be reloaded, and a URL fetched with caching, refetch on
//! an unknown `kid`, and a rate limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use export_auth::client::DpopKey;
use export_auth::{
    Alg, AuthConfig, AuthError, Authenticator, FileJwks, Jwks, JwksSource, MemoryReplayCache, RequestFacts,
    UrlJwks,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn jwk(key: &DpopKey, kid: &str) -> Value {
    let mut jwk = key.public_jwk().clone();
    jwk["kid"] = kid.into();
    jwk
}

fn jwks_json(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

#[test]
fn a_jwks_skips_keys_it_cannot_use_and_refuses_broken_ones() {
    let es = DpopKey::generate(Alg::ES256);
    let ed = DpopKey::generate(Alg::EdDSA);
    let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AAAA", "y": "AAAA"});
    let x25519 = json!({"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AAAA"});
    let mut encryption = jwk(&es, "enc");
    encryption["use"] = json!("enc");
    let mut no_kid = jwk(&ed, "x");
    no_kid.as_object_mut().unwrap().remove("kid");
    let jwks = Jwks::from_json(&jwks_json(&[
        jwk(&es, "es"),
        jwk(&ed, "ed"),
        p384,
        x25519,
        encryption,
        no_kid,
    ]))
    .unwrap();
    assert_eq!(jwks.kids(), ["ed", "es"]);
    assert_eq!(jwks.get("es").unwrap().thumbprint(), es.jwk_thumbprint());
    assert_eq!(
        Jwks::from_json(&serde_json::to_vec(&jwks.to_json()).unwrap())
            .unwrap()
            .kids(),
        ["ed", "es"]
    );

    let mut private = jwk(&es, "private");
    private["d"] = json!("AAAA");
    let broken_point = json!({"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AAAA", "y": "AAAA"});
    let short_rsa = json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"});
    // A point of order 8, and y = 2^255 - 18 (not below the field's prime): keys for which
    // one signature verifies for many messages, or that no strict decoder reads.
    let weak_ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": "xxdqcD1N2E-6PAt2DRBnDyogU_osOczGTsf9d5KsA3o"});
    let non_canonical_ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "nc", "x": "7v_______________________________________38"});
    for keys in [
        vec![private],
        vec![broken_point],
        vec![short_rsa],
        vec![weak_ed],
        vec![non_canonical_ed],
        vec![jwk(&es, "twice"), jwk(&ed, "twice")],
    ] {
        assert!(
            matches!(Jwks::from_json(&jwks_json(&keys)), Err(AuthError::Jwks(_))),
            "{keys:?}"
        );
    }
    assert!(Jwks::from_json(b"{}").is_err());
    assert!(Jwks::from_json(b"not json").is_err());
}

#[tokio::test]
async fn a_jwks_file_is_read_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let old = DpopKey::generate(Alg::ES256);
    let new = DpopKey::generate(Alg::EdDSA);
    std::fs::write(&path, jwks_json(&[jwk(&old, "old")])).unwrap();
    let source = FileJwks::load(&path).unwrap();
    assert!(source.key("old").await.unwrap().is_some());
    assert!(source.key("new").await.unwrap().is_none());

    std::fs::write(&path, jwks_json(&[jwk(&new, "new")])).unwrap();
    assert_eq!(source.reload().unwrap(), 1);
    assert!(source.key("old").await.unwrap().is_none());
    assert!(source.key("new").await.unwrap().is_some());

    std::fs::write(&path, "broken").unwrap();
    assert!(source.reload().is_err());
    assert!(
        source.key("new").await.unwrap().is_some(),
        "a failed reload keeps the keys"
    );

    std::fs::write(&path, jwks_json(&[])).unwrap();
    assert!(FileJwks::load(&path).is_err(), "a file without keys is refused");
    assert!(matches!(
        FileJwks::load(dir.path().join("missing.json")),
        Err(AuthError::Io { .. })
    ));
}

/// A minimal HTTP server on 127.0.0.1 that answers every request with the current body
/// (or a 500 while it is `None`) and counts requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<Option<Vec<u8>>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: Vec<u8>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(Some(body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (body.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let current = served.lock().unwrap().clone();
                let response = match current {
                    Some(body) => {
                        let mut response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        response.extend_from_slice(&body);
                        response
                    }
                    None => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            }
        });
        Self { url, body, hits }
    }

    fn serve(&self, body: Option<Vec<u8>>) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_jwks_url_is_cached_and_refetched_for_a_new_kid() {
    let first = DpopKey::generate(Alg::ES256);
    let second = DpopKey::generate(Alg::EdDSA);
    let server = JwksServer::start(jwks_json(&[jwk(&first, "k1")])).await;
    let source = UrlJwks::new(&server.url, Duration::from_secs(300))
        .unwrap()
        .with_min_refetch_interval(Duration::from_secs(1));

    assert!(source.key("k1").await.unwrap().is_some());
    assert!(source.key("k1").await.unwrap().is_some());
    assert_eq!(server.hits(), 1, "known keys come from the cache");

    // The issuer rotates: an unknown kid triggers one refetch, then the rate limit holds.
    server.serve(Some(jwks_json(&[jwk(&first, "k1"), jwk(&second, "k2")])));
    assert!(
        source.key("k2").await.unwrap().is_none(),
        "right after a fetch, no refetch"
    );
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(source.key("unknown").await.unwrap().is_none());
    assert_eq!(server.hits(), 2);
    assert!(
        source.key("k2").await.unwrap().is_some(),
        "the refetch already brought k2"
    );
    for _ in 0..5 {
        assert!(source.key("made-up").await.unwrap().is_none());
    }
    assert_eq!(server.hits(), 2, "unknown kids are rate-limited");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(source.key("made-up").await.unwrap().is_none());
    assert_eq!(server.hits(), 3);

    // While the issuer is down, the keys already known keep working.
    server.serve(None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(source.key("k2").await.unwrap().is_some());
    assert!(source.key("another").await.unwrap().is_none());
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn a_jwks_url_that_never_answered_is_an_error() {
    let server = JwksServer::start(Vec::new()).await;
    server.serve(None);
    let source = UrlJwks::new(&server.url, Duration::from_secs(300)).unwrap();
    assert!(matches!(source.key("k1").await, Err(AuthError::Jwks(_))));
    assert!(matches!(source.key("k1").await, Err(AuthError::Jwks(_))));
    assert_eq!(server.hits(), 1, "failed fetches are rate-limited too");
    assert!(source.refresh().await.is_err());

    let key = DpopKey::generate(Alg::ES256);
    server.serve(Some(jwks_json(&[jwk(&key, "k1")])));
    assert_eq!(source.refresh().await.unwrap(), 1);
    assert!(source.key("k1").await.unwrap().is_some());
    assert!(UrlJwks::new("file:///etc/jwks.json", Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn a_stale_jwks_url_is_refetched() {
    let key = DpopKey::generate(Alg::ES256);
    let server = JwksServer::start(jwks_json(&[jwk(&key, "k1")])).await;
    let source = UrlJwks::new(&server.url, Duration::from_millis(100))
        .unwrap()
        .with_min_refetch_interval(Duration::from_millis(10));
    assert!(source.key("k1").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.serve(Some(jwks_json(&[])));
    assert!(
        source.key("k1").await.unwrap().is_none(),
        "the rotated-out key is gone after the ttl"
    );
    assert_eq!(server.hits(), 2);
}

/// An authenticator over a JWKS file holding `issuer` under `kid`, and a token of it for
/// `client`.
fn file_backed(
    dir: &std::path::Path,
    issuer: &DpopKey,
    client: &DpopKey,
) -> (Arc<FileJwks>, Authenticator, String) {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks_json(&[jwk(issuer, "k1")])).unwrap();
    let source = Arc::new(FileJwks::load(&path).unwrap());
    let auth = Authenticator::new(
        AuthConfig::new(crate::ISSUER, crate::AUDIENCE),
        source.clone(),
        Arc::new(MemoryReplayCache::new()),
        None,
    );
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": crate::ISSUER, "aud": crate::AUDIENCE, "sub": "client-1", "iat": now, "exp": now + 300,
        "scope": "export:read", "stellaops:tenant": "acme", "cnf": {"jkt": client.jwk_thumbprint()},
    });
    let token = issuer.sign_jwt(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}), &claims);
    (source, auth, token)
}

async fn present(auth: &Authenticator, client: &DpopKey, token: &str) -> Result<(), AuthError> {
    let authorization = format!("DPoP {token}");
    let proof = client.proof("GET", crate::URL, Some(token), None);
    let facts = RequestFacts {
        method: "GET",
        public_url: crate::URL,
        authorization: Some(&authorization),
        dpop: Some(&proof),
        now: chrono::Utc::now(),
    };
    auth.authenticate(&facts).await.map(|_| ())
}

#[tokio::test]
async fn a_cached_token_is_refused_as_soon_as_its_key_leaves_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let (issuer, client) = (DpopKey::generate(Alg::ES256), DpopKey::generate(Alg::ES256));
    let (source, auth, token) = file_backed(dir.path(), &issuer, &client);
    present(&auth, &client, &token).await.unwrap();
    present(&auth, &client, &token).await.unwrap();
    assert_eq!(
        auth.token_verifications(),
        1,
        "the second use comes from the cache"
    );

    // The issuer's key is withdrawn: the file is rewritten without it and reread.
    let other = DpopKey::generate(Alg::ES256);
    std::fs::write(source.path(), jwks_json(&[jwk(&other, "k2")])).unwrap();
    source.reload().unwrap();
    let error = present(&auth, &client, &token).await.unwrap_err();
    assert_eq!(error.description(), Some("access token kid unknown"), "{error}");

    // Another key under the same kid does not verify the cached token either.
    std::fs::write(source.path(), jwks_json(&[jwk(&other, "k1")])).unwrap();
    source.reload().unwrap();
    let error = present(&auth, &client, &token).await.unwrap_err();
    assert_eq!(
        error.description(),
        Some("access token signature invalid"),
        "{error}"
    );

    // Put back, the key verifies the token again.
    std::fs::write(source.path(), jwks_json(&[jwk(&issuer, "k1")])).unwrap();
    source.reload().unwrap();
    present(&auth, &client, &token).await.unwrap();
}

#[tokio::test]
async fn a_changed_jwks_file_is_reread_by_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let (old, new) = (DpopKey::generate(Alg::ES256), DpopKey::generate(Alg::EdDSA));
    std::fs::write(&path, jwks_json(&[jwk(&old, "old")])).unwrap();
    let source = FileJwks::load(&path)
        .unwrap()
        .with_change_check(Duration::from_millis(50));
    assert!(source.key("old").await.unwrap().is_some());

    std::fs::write(&path, jwks_json(&[jwk(&new, "new")])).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        source.key("old").await.unwrap().is_none(),
        "the removed key is gone"
    );
    assert!(source.key("new").await.unwrap().is_some());

    // A broken rewrite keeps the keys read before.
    std::fs::write(&path, "{").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(source.key("new").await.unwrap().is_some());
}
