//! What the verifier accepts, and what it makes of it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use export_auth::client::DpopKey;
use export_auth::{normalize_htu, public_request_url, Alg, RequestFacts};
use serde_json::json;

use crate::{assert_refused, key_for, Setup, AUDIENCE, URL};

fn scopes(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|scope| scope.to_string()).collect()
}

#[tokio::test]
async fn es256_eddsa_and_rs256_access_tokens_are_accepted() {
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let setup = Setup::with_issuer_alg(alg);
        let claims = setup.claims();
        let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
        assert_eq!(principal.subject, "client-1");
        assert_eq!(principal.tenant.as_str(), "acme");
        assert_eq!(principal.scopes, scopes(&["export:read", "export:write"]));
        assert_eq!(principal.jkt, setup.client.jwk_thumbprint());
        let exp = claims["exp"].as_i64().unwrap();
        assert_eq!(principal.token_expires, DateTime::from_timestamp(exp, 0).unwrap());
        assert!(principal.has_scope("export:write"));
    }
}

#[tokio::test]
async fn eddsa_and_rs256_proofs_are_accepted() {
    for alg in [Alg::EdDSA, Alg::RS256] {
        let mut setup = Setup::new();
        setup.client = key_for(alg);
        let principal = setup.send_token(&setup.valid_token()).await.unwrap();
        assert_eq!(principal.jkt, setup.client.jwk_thumbprint());
    }
}

#[tokio::test]
async fn scopes_come_from_scope_or_scp() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims["scope"] = json!("  export:read   extra ");
    let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
    assert_eq!(principal.scopes, scopes(&["export:read", "extra"]));

    claims.as_object_mut().unwrap().remove("scope");
    claims["scp"] = json!(["export:write", "export:read"]);
    let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
    assert_eq!(principal.scopes, scopes(&["export:read", "export:write"]));

    claims["scp"] = json!("export:read");
    let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
    assert_eq!(principal.scopes, scopes(&["export:read"]));

    claims.as_object_mut().unwrap().remove("scp");
    let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
    assert!(principal.scopes.is_empty());
}

#[tokio::test]
async fn the_tenant_may_come_from_tid() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("stellaops:tenant");
    claims["tid"] = json!("globex");
    let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
    assert_eq!(principal.tenant.as_str(), "globex");

    claims["stellaops:tenant"] = json!("globex");
    let principal = setup.send_token(&setup.token(&claims)).await.unwrap();
    assert_eq!(principal.tenant.as_str(), "globex");
}

#[tokio::test]
async fn the_audience_may_be_an_array() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims["aud"] = json!(["another-service", AUDIENCE]);
    setup.send_token(&setup.token(&claims)).await.unwrap();
}

#[tokio::test]
async fn times_within_the_clock_skew_are_accepted() {
    let setup = Setup::new();
    let now = Utc::now().timestamp();
    let mut claims = setup.claims();
    claims["exp"] = json!(now - 20);
    claims["iat"] = json!(now + 20);
    claims["nbf"] = json!(now + 20);
    setup.send_token(&setup.token(&claims)).await.unwrap();
    // Fractional NumericDates are allowed by RFC 7519.
    claims["exp"] = json!(now as f64 + 300.5);
    setup.send_token(&setup.token(&claims)).await.unwrap();
}

#[tokio::test]
async fn htu_is_compared_after_normalization() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let pairs = [
        ("https://Example.COM:443/x", "https://example.com/x"),
        ("https://example.com/x", "HTTPS://EXAMPLE.com:443/x"),
        ("http://example.com:80/a/./b/../c", "http://example.com/a/c"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/x?page=2#top", "https://example.com/x"),
    ];
    for (proof_url, public_url) in pairs {
        let proof = setup.client.proof("GET", proof_url, Some(&token), None);
        let authorization = format!("DPoP {token}");
        let principal = setup
            .call_to("GET", public_url, Some(&authorization), Some(&proof))
            .await;
        assert!(principal.is_ok(), "{proof_url} vs {public_url}: {principal:?}");
    }
    // A proof that keeps the query is still for the same resource.
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": setup.client.public_jwk()});
    let claims = json!({
        "jti": "with-query", "htm": "GET", "htu": format!("{URL}?limit=5"),
        "iat": Utc::now().timestamp(), "ath": export_auth::client::access_token_hash(&token),
    });
    setup
        .send(&token, &setup.client.sign_jwt(&header, &claims))
        .await
        .unwrap();
}

#[test]
fn the_public_request_url_is_the_public_base_plus_the_path() {
    assert_eq!(
        public_request_url(
            "https://gateway.example.com/tools/",
            "/export-center/runs?limit=5"
        ),
        "https://gateway.example.com/tools/export-center/runs"
    );
    assert_eq!(
        public_request_url("https://gateway.example.com", "/export-center/runs"),
        "https://gateway.example.com/export-center/runs"
    );
    assert_eq!(
        normalize_htu("https://Example.COM:443/x?y#z").as_deref(),
        Some("https://example.com/x")
    );
    assert_eq!(normalize_htu("ftp://example.com/x"), None);
    assert_eq!(normalize_htu("https://user:pw@example.com/x"), None);
    assert_eq!(normalize_htu("/relative"), None);
}

#[tokio::test]
async fn a_cached_token_is_not_verified_again_but_its_proof_is() {
    let setup = Setup::new();
    let token = setup.valid_token();
    setup.send_token(&token).await.unwrap();
    assert_eq!(setup.auth.token_verifications(), 1);
    setup.send_token(&token).await.unwrap();
    setup.send_token(&token).await.unwrap();
    assert_eq!(setup.auth.token_verifications(), 1);

    let stranger = DpopKey::generate(Alg::ES256);
    let proof = stranger.proof("GET", URL, Some(&token), None);
    assert_refused(
        setup.send(&token, &proof).await,
        "invalid_dpop_proof",
        "dpop proof key does not match token cnf.jkt",
    );
    let replayed = setup.proof(&token);
    setup.send(&token, &replayed).await.unwrap();
    assert_refused(
        setup.send(&token, &replayed).await,
        "invalid_dpop_proof",
        "dpop proof replayed",
    );
    assert_eq!(setup.auth.token_verifications(), 1);
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    let now = Utc::now();
    claims["exp"] = json!(now.timestamp() + 60);
    let token = setup.token(&claims);
    setup.send_token(&token).await.unwrap();

    let later = now + chrono::Duration::seconds(120);
    let proof = setup.client.proof_at("GET", URL, Some(&token), None, later);
    let authorization = format!("DPoP {token}");
    let facts = RequestFacts {
        method: "GET",
        public_url: URL,
        authorization: Some(&authorization),
        dpop: Some(&proof),
        now: later,
    };
    assert_refused(
        setup.auth.authenticate(&facts).await,
        "invalid_token",
        "access token expired",
    );
    assert_eq!(setup.auth.token_verifications(), 1);
}

#[tokio::test]
async fn request_facts_do_not_show_credentials_in_debug_output() {
    let facts = RequestFacts {
        method: "GET",
        public_url: URL,
        authorization: Some("DPoP secret-token"),
        dpop: Some("secret-proof"),
        now: Utc::now(),
    };
    let debug = format!("{facts:?}");
    assert!(!debug.contains("secret"), "{debug}");
    let key = DpopKey::generate(Alg::EdDSA);
    assert!(!format!("{key:?}").contains(&*key.to_pkcs8_pem().unwrap()));
}
