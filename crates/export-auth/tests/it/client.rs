//! The DPoP client key and the dev issuer.

use std::sync::Arc;
use std::time::Duration;

use export_auth::client::DpopKey;
use export_auth::dev::{DevIssuer, DEV_ISSUER_FILE};
use export_auth::{Alg, Authenticator, MemoryReplayCache, PublicJwk};
use export_core::TenantId;
use serde_json::{json, Value};

use crate::{key_for, URL};

#[test]
fn the_thumbprint_matches_rfc_7638_section_3_1() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let jwk = PublicJwk::from_json(&jwk).unwrap();
    assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn the_thumbprint_ignores_optional_members() {
    let key = DpopKey::generate(Alg::ES256);
    let mut jwk = key.public_jwk().clone();
    jwk["kid"] = json!("some-kid");
    jwk["use"] = json!("sig");
    assert_eq!(
        PublicJwk::from_json(&jwk).unwrap().thumbprint(),
        key.jwk_thumbprint()
    );
}

#[test]
fn a_key_survives_a_pem_round_trip() {
    for alg in [Alg::ES256, Alg::EdDSA] {
        let key = DpopKey::generate(alg);
        let again = DpopKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.alg(), alg);
        assert_eq!(again.jwk_thumbprint(), key.jwk_thumbprint());
    }
    let rsa = key_for(Alg::RS256);
    let again = DpopKey::from_pkcs8_pem(&rsa.to_pkcs8_pem().unwrap()).unwrap();
    assert_eq!(again.alg(), Alg::RS256);
    assert_eq!(again.jwk_thumbprint(), rsa.jwk_thumbprint());
    assert!(
        DpopKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
    );
}

/// ring generates no RSA key: a dev issuer asked for a new RS256 key says how to make one,
/// and uses an RSA key that is already there.
#[test]
fn the_dev_issuer_uses_an_rsa_key_it_is_given_and_names_the_way_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = DevIssuer::load_or_create_with(dir.path(), Alg::RS256).unwrap_err();
    assert!(
        error.to_string().contains("openssl genpkey -algorithm RSA"),
        "{error}"
    );
    assert!(!dir.path().join(DEV_ISSUER_FILE).exists());

    let pem = key_for(Alg::RS256).to_pkcs8_pem().unwrap();
    std::fs::write(dir.path().join(DEV_ISSUER_FILE), pem.as_bytes()).unwrap();
    let issuer = DevIssuer::load_or_create(dir.path()).unwrap();
    assert_eq!(issuer.alg(), Alg::RS256);
}

/// Saved proof and dev-issuer keys are PKCS#8 files other tools read (SPEC §17).
#[test]
fn a_saved_key_loads_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [Alg::ES256, Alg::EdDSA] {
        let path = dir.path().join(format!("{alg}.pem"));
        let pem = DpopKey::generate(alg).to_pkcs8_pem().unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let openssl = std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&path)
            .output()
            .expect("running openssl (is it installed?)");
        assert!(
            openssl.status.success(),
            "openssl pkey refused the {alg} key: {}",
            String::from_utf8_lossy(&openssl.stderr)
        );
    }
}

#[test]
fn a_proof_carries_the_public_jwk_and_the_request() {
    let key = DpopKey::default();
    let proof = key.proof(
        "POST",
        "https://example.com/runs?x=1#y",
        Some("token"),
        Some("nonce-1"),
    );
    let (header, claims) = decode(&proof);
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(&header["jwk"], key.public_jwk());
    assert!(header["jwk"].get("d").is_none());
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "https://example.com/runs");
    assert_eq!(claims["ath"], export_auth::client::access_token_hash("token"));
    assert_eq!(claims["nonce"], "nonce-1");
    let (_, again) = decode(&key.proof("POST", "https://example.com/runs", None, None));
    assert_ne!(claims["jti"], again["jti"]);
    assert!(again.get("ath").is_none() && again.get("nonce").is_none());
}

#[tokio::test]
async fn the_dev_issuer_keeps_its_key_and_mints_accepted_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let issuer = DevIssuer::load_or_create(&data)
        .unwrap()
        .with_issuer("https://dev.local", "export-center-dev");
    assert_eq!(issuer.alg(), Alg::ES256);
    let path = data.join(DEV_ISSUER_FILE);
    assert_eq!(issuer.path(), path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(files, [DEV_ISSUER_FILE], "no temporary file is left behind");

    let again = DevIssuer::load_or_create(&data).unwrap();
    assert_eq!(again.kid(), issuer.kid());
    assert_eq!(again.issuer(), DevIssuer::DEFAULT_ISSUER);

    let client = DpopKey::generate(Alg::EdDSA);
    let tenant = TenantId::parse("acme").unwrap();
    let token = issuer.mint(
        &tenant,
        &["export:read"],
        "dev-user",
        client.jwk_thumbprint(),
        Duration::from_secs(600),
    );
    let (header, claims) = decode(&token);
    assert_eq!(header["kid"], issuer.kid());
    assert_eq!(claims["iss"], "https://dev.local");
    assert_eq!(claims["aud"], "export-center-dev");
    assert_eq!(claims["cnf"]["jkt"], client.jwk_thumbprint());

    let auth = Authenticator::new(
        issuer.auth_config(),
        Arc::new(again.jwks()),
        Arc::new(MemoryReplayCache::new()),
        None,
    );
    let authorization = format!("DPoP {token}");
    let proof = client.proof("GET", URL, Some(&token), None);
    let facts = export_auth::RequestFacts {
        method: "GET",
        public_url: URL,
        authorization: Some(&authorization),
        dpop: Some(&proof),
        now: chrono::Utc::now(),
    };
    let principal = auth.authenticate(&facts).await.unwrap();
    assert_eq!(principal.subject, "dev-user");
    assert_eq!(principal.tenant, tenant);
    assert!(principal.has_scope("export:read"));
}

#[test]
fn the_dev_issuer_may_use_eddsa_and_refuses_a_broken_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = DevIssuer::load_or_create_with(dir.path(), Alg::EdDSA).unwrap();
    assert_eq!(issuer.alg(), Alg::EdDSA);
    assert_eq!(DevIssuer::load_or_create(dir.path()).unwrap().alg(), Alg::EdDSA);
    assert_eq!(issuer.jwks().kids(), [issuer.kid()]);

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join(DEV_ISSUER_FILE), "not a key").unwrap();
    let error = DevIssuer::load_or_create(broken.path()).unwrap_err();
    assert!(
        error.to_string().contains("is not a usable issuer key"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(broken.path().join(DEV_ISSUER_FILE)).unwrap(),
        b"not a key",
        "a key file that cannot be used is left as it is, never replaced"
    );
}

/// Processes starting together on one data directory (the CLI's `token` beside `serve`)
/// end with one issuer key: a key is created under a temporary name and linked into
/// place, never renamed over one another process has just written (SPEC §17).
#[test]
fn dev_issuers_created_at_once_agree_on_one_key() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(8);
        let kids: Vec<String> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        DevIssuer::load_or_create(dir.path()).unwrap().kid().to_owned()
                    })
                })
                .collect();
            racers.into_iter().map(|racer| racer.join().unwrap()).collect()
        });
        let on_disk = DevIssuer::load_or_create(dir.path()).unwrap();
        assert!(kids.iter().all(|kid| kid == on_disk.kid()), "{kids:?}");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "no temporary file is left behind");
    }
}

fn decode(jwt: &str) -> (Value, Value) {
    use base64::Engine as _;
    let part = |text: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .unwrap(),
        )
        .unwrap()
    };
    let mut parts = jwt.split('.');
    (part(parts.next().unwrap()), part(parts.next().unwrap()))
}
