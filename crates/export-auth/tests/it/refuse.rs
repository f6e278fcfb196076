//! Every way a request can fail to authenticate, each with its error code and description.

use chrono::{Duration, Utc};
use export_auth::client::DpopKey;
use export_auth::{Alg, NonceSource};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::{assert_refused, b64, Setup, URL};

const TOKEN: &str = "invalid_token";
const PROOF: &str = "invalid_dpop_proof";

#[tokio::test]
async fn a_request_without_authorization_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    assert_refused(
        setup.call(None, Some(&setup.proof(&token))).await,
        TOKEN,
        "missing authorization header",
    );
}

#[tokio::test]
async fn a_malformed_token_is_refused() {
    let setup = Setup::new();
    for token in ["not-a-jwt", "a.b.c", "e30.e30", "e30.e30.e30.e30", "e30.e30.!!"] {
        let authorization = format!("DPoP {token}");
        let proof = setup.client.proof("GET", URL, Some(token), None);
        assert_refused(
            setup.call(Some(&authorization), Some(&proof)).await,
            TOKEN,
            "malformed access token",
        );
    }
    assert_refused(
        setup.call(Some("DPoP"), None).await,
        TOKEN,
        "malformed access token",
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    let now = Utc::now().timestamp();
    claims["iat"] = json!(now - 600);
    claims["nbf"] = json!(now - 600);
    claims["exp"] = json!(now - 31);
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token expired",
    );
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token exp missing",
    );
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims["nbf"] = json!(Utc::now().timestamp() + 120);
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token not yet valid",
    );
}

#[tokio::test]
async fn a_token_issued_in_the_future_beyond_the_skew_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims["iat"] = json!(Utc::now().timestamp() + 120);
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token issued in the future",
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims["iss"] = json!("https://issuer.example.test/other");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token issuer mismatch",
    );
    claims.as_object_mut().unwrap().remove("iss");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token issuer mismatch",
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    for audience in [json!("another-service"), json!(["a", "b"]), json!([])] {
        claims["aud"] = audience;
        assert_refused(
            setup.send_token(&setup.token(&claims)).await,
            TOKEN,
            "access token audience mismatch",
        );
    }
    claims.as_object_mut().unwrap().remove("aud");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token audience mismatch",
    );
}

#[tokio::test]
async fn a_token_with_a_bad_signature_is_refused() {
    let setup = Setup::new();
    // Signed by another key under the issuer's kid.
    let forger = DpopKey::generate(Alg::ES256);
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": setup.kid});
    let forged = forger.sign_jwt(&header, &setup.claims());
    assert_refused(
        setup.send_token(&forged).await,
        TOKEN,
        "access token signature invalid",
    );
    // A genuine signature over other claims.
    let genuine = setup.valid_token();
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let mut claims = setup.claims();
    claims["stellaops:tenant"] = json!("someone-else");
    let changed = b64(claims.to_string());
    parts[1] = &changed;
    assert_refused(
        setup.send_token(&parts.join(".")).await,
        TOKEN,
        "access token signature invalid",
    );
}

#[tokio::test]
async fn a_token_with_an_unknown_or_missing_kid_is_refused() {
    let setup = Setup::new();
    let mut header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "retired-key"});
    let unknown = setup.issuer.sign_jwt(&header, &setup.claims());
    assert_refused(
        setup.send_token(&unknown).await,
        TOKEN,
        "access token kid unknown",
    );
    header.as_object_mut().unwrap().remove("kid");
    let missing = setup.issuer.sign_jwt(&header, &setup.claims());
    assert_refused(
        setup.send_token(&missing).await,
        TOKEN,
        "access token kid missing",
    );
}

#[tokio::test]
async fn a_token_with_alg_none_or_hs256_is_refused() {
    let setup = Setup::new();
    let claims = b64(setup.claims().to_string());
    let none_header = b64(json!({"alg": "none", "kid": setup.kid}).to_string());
    let unsigned = format!("{none_header}.{claims}.");
    assert_refused(
        setup.send_token(&unsigned).await,
        TOKEN,
        "access token alg not allowed",
    );

    // HS256 keyed with the issuer's public key: the classic algorithm confusion.
    let hs_header = b64(json!({"alg": "HS256", "kid": setup.kid}).to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(setup.issuer.public_jwk().to_string().as_bytes()).unwrap();
    mac.update(format!("{hs_header}.{claims}").as_bytes());
    let hs256 = format!("{hs_header}.{claims}.{}", b64(mac.finalize().into_bytes()));
    assert_refused(
        setup.send_token(&hs256).await,
        TOKEN,
        "access token alg not allowed",
    );
}

#[tokio::test]
async fn a_token_with_an_alg_the_configuration_does_not_allow_is_refused() {
    let setup = Setup::build(Alg::EdDSA, |config| config.allowed_algs = vec![Alg::ES256], None);
    let token = setup.valid_token();
    assert_refused(
        setup.send_token(&token).await,
        TOKEN,
        "access token alg not allowed",
    );
}

#[tokio::test]
async fn a_token_whose_alg_does_not_fit_its_key_is_refused() {
    let setup = Setup::new();
    // An EdDSA signature under the kid of the issuer's P-256 key.
    let other = DpopKey::generate(Alg::EdDSA);
    let token = other.sign_jwt(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": setup.kid}),
        &setup.claims(),
    );
    assert_refused(
        setup.send_token(&token).await,
        TOKEN,
        "access token alg does not match its key",
    );
}

#[tokio::test]
async fn a_token_without_cnf_jkt_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims["cnf"] = json!({});
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token cnf.jkt missing",
    );
    claims.as_object_mut().unwrap().remove("cnf");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token cnf.jkt missing",
    );
}

#[tokio::test]
async fn a_token_without_a_valid_tenant_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("stellaops:tenant");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token tenant missing",
    );
    for invalid in ["Acme", "", "acme/other", "a b"] {
        claims["stellaops:tenant"] = json!(invalid);
        assert_refused(
            setup.send_token(&setup.token(&claims)).await,
            TOKEN,
            "access token tenant invalid",
        );
    }
    claims["stellaops:tenant"] = json!("acme");
    claims["tid"] = json!("globex");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token tenant claims disagree",
    );
}

#[tokio::test]
async fn a_token_without_a_subject_is_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("sub");
    assert_refused(
        setup.send_token(&setup.token(&claims)).await,
        TOKEN,
        "access token sub missing",
    );
}

#[tokio::test]
async fn a_token_with_a_crit_header_is_refused() {
    let setup = Setup::new();
    let header = json!({"alg": "ES256", "kid": setup.kid, "crit": ["exp"]});
    let token = setup.issuer.sign_jwt(&header, &setup.claims());
    assert_refused(
        setup.send_token(&token).await,
        TOKEN,
        "access token crit header not supported",
    );
}

#[tokio::test]
async fn a_token_not_typed_at_jwt_is_refused() {
    let setup = Setup::new();
    // An ID token, a proof or an untyped JWT of the same issuer is not an access token
    // (RFC 9068 §4).
    for typ in [
        json!("JWT"),
        json!("dpop+jwt"),
        json!("at+jwt+extra"),
        json!(null),
    ] {
        let header = json!({"alg": "ES256", "typ": typ, "kid": setup.kid});
        let token = setup.issuer.sign_jwt(&header, &setup.claims());
        assert_refused(
            setup.send_token(&token).await,
            TOKEN,
            "access token typ is not at+jwt",
        );
    }
    let mut header = json!({"alg": "ES256", "kid": setup.kid});
    let untyped = setup.issuer.sign_jwt(&header, &setup.claims());
    assert_refused(
        setup.send_token(&untyped).await,
        TOKEN,
        "access token typ is not at+jwt",
    );
    for typ in ["application/at+jwt", "AT+JWT"] {
        header["typ"] = json!(typ);
        let token = setup.issuer.sign_jwt(&header, &setup.claims());
        setup.send_token(&token).await.unwrap();
    }
}

#[tokio::test]
async fn a_request_without_a_proof_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    assert_refused(
        setup.call(Some(&format!("DPoP {token}")), None).await,
        PROOF,
        "missing dpop proof",
    );
}

#[tokio::test]
async fn a_request_with_two_proofs_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let two = format!("{}, {}", setup.proof(&token), setup.proof(&token));
    assert_refused(setup.send(&token, &two).await, PROOF, "multiple dpop proofs");
}

#[tokio::test]
async fn a_malformed_proof_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    assert_refused(
        setup.send(&token, "not-a-proof").await,
        PROOF,
        "malformed dpop proof",
    );
}

#[tokio::test]
async fn a_proof_with_the_wrong_typ_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let claims = proof_claims(&token);
    for typ in [json!("jwt"), json!("at+jwt"), json!(null)] {
        let header = json!({"typ": typ, "alg": "ES256", "jwk": setup.client.public_jwk()});
        let proof = setup.client.sign_jwt(&header, &claims);
        assert_refused(
            setup.send(&token, &proof).await,
            PROOF,
            "dpop proof typ is not dpop+jwt",
        );
    }
}

#[tokio::test]
async fn a_proof_with_a_symmetric_or_no_alg_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let claims = b64(proof_claims(&token).to_string());
    for alg in ["none", "HS256", "ES384"] {
        let header =
            b64(json!({"typ": "dpop+jwt", "alg": alg, "jwk": setup.client.public_jwk()}).to_string());
        let proof = format!("{header}.{claims}.{}", b64([7u8; 32]));
        assert_refused(
            setup.send(&token, &proof).await,
            PROOF,
            "dpop proof alg not allowed",
        );
    }
}

#[tokio::test]
async fn a_proof_without_a_jwk_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let proof = setup
        .client
        .sign_jwt(&json!({"typ": "dpop+jwt", "alg": "ES256"}), &proof_claims(&token));
    assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof jwk missing");
}

#[tokio::test]
async fn a_proof_whose_jwk_carries_the_private_key_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        let mut jwk = setup.client.public_jwk().clone();
        jwk[member] = json!(b64([1u8; 32]));
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let proof = setup.client.sign_jwt(&header, &proof_claims(&token));
        assert_refused(
            setup.send(&token, &proof).await,
            PROOF,
            "dpop proof jwk contains private key material",
        );
    }
}

#[tokio::test]
async fn a_proof_with_an_invalid_jwk_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let mut jwk = setup.client.public_jwk().clone();
    jwk["x"] = json!(b64([0u8; 32]));
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let proof = setup.client.sign_jwt(&header, &proof_claims(&token));
    assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof jwk invalid");
}

#[tokio::test]
async fn a_proof_not_signed_by_its_jwk_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let other = DpopKey::generate(Alg::ES256);
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": setup.client.public_jwk()});
    let proof = other.sign_jwt(&header, &proof_claims(&token));
    assert_refused(
        setup.send(&token, &proof).await,
        PROOF,
        "dpop proof signature invalid",
    );
}

#[tokio::test]
async fn a_proof_whose_alg_does_not_fit_its_jwk_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": setup.client.public_jwk()});
    let proof = setup.client.sign_jwt(&header, &proof_claims(&token));
    assert_refused(
        setup.send(&token, &proof).await,
        PROOF,
        "dpop proof alg does not match its jwk",
    );
}

#[tokio::test]
async fn a_proof_by_a_key_other_than_cnf_jkt_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    for alg in [Alg::ES256, Alg::EdDSA] {
        let other = DpopKey::generate(alg);
        let proof = other.proof("GET", URL, Some(&token), None);
        assert_refused(
            setup.send(&token, &proof).await,
            PROOF,
            "dpop proof key does not match token cnf.jkt",
        );
    }
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let proof = setup.proof(&token);
    setup.send(&token, &proof).await.unwrap();
    assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof replayed");
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let proof = setup.client.proof("POST", URL, Some(&token), None);
    assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof htm mismatch");
    let lowercase = setup.client.proof("get", URL, Some(&token), None);
    assert_refused(
        setup.send(&token, &lowercase).await,
        PROOF,
        "dpop proof htm mismatch",
    );
}

#[tokio::test]
async fn a_proof_for_another_url_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    for url in [
        "https://export.example.test/export-center/runs/other",
        "http://export.example.test/export-center/runs",
        "https://export.example.test:8443/export-center/runs",
        "https://internal.svc:8080/export-center/runs",
        "not a url",
    ] {
        let proof = setup.client.proof("GET", url, Some(&token), None);
        assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof htu mismatch");
    }
}

#[tokio::test]
async fn a_proof_with_the_wrong_or_no_ath_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let mut other_claims = setup.claims();
    other_claims["sub"] = json!("client-2");
    let other_token = setup.token(&other_claims);
    let proof = setup.client.proof("GET", URL, Some(&other_token), None);
    assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof ath mismatch");
    let proof = setup.client.proof("GET", URL, None, None);
    assert_refused(setup.send(&token, &proof).await, PROOF, "dpop proof ath missing");
}

#[tokio::test]
async fn a_stale_or_future_proof_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let stale = setup
        .client
        .proof_at("GET", URL, Some(&token), None, Utc::now() - Duration::seconds(75));
    assert_refused(setup.send(&token, &stale).await, PROOF, "dpop proof iat too old");
    let future = setup
        .client
        .proof_at("GET", URL, Some(&token), None, Utc::now() + Duration::seconds(75));
    assert_refused(
        setup.send(&token, &future).await,
        PROOF,
        "dpop proof iat in the future",
    );
}

#[tokio::test]
async fn a_proof_without_jti_or_iat_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": setup.client.public_jwk()});
    for (member, description) in [
        ("jti", "dpop proof jti missing"),
        ("iat", "dpop proof iat missing"),
    ] {
        let mut claims = proof_claims(&token);
        claims.as_object_mut().unwrap().remove(member);
        let proof = setup.client.sign_jwt(&header, &claims);
        assert_refused(setup.send(&token, &proof).await, PROOF, description);
    }
}

#[tokio::test]
async fn a_dpop_bound_token_presented_as_bearer_is_refused() {
    let setup = Setup::new();
    let token = setup.valid_token();
    let proof = setup.proof(&token);
    let bearer = format!("Bearer {token}");
    assert_refused(
        setup.call(Some(&bearer), Some(&proof)).await,
        TOKEN,
        "dpop-bound token presented as bearer",
    );
    let lowercase = format!("bearer {token}");
    assert_refused(
        setup.call(Some(&lowercase), None).await,
        TOKEN,
        "dpop-bound token presented as bearer",
    );
}

#[tokio::test]
async fn other_authorization_schemes_are_refused() {
    let setup = Setup::new();
    let mut claims = setup.claims();
    claims.as_object_mut().unwrap().remove("cnf");
    let unbound = setup.token(&claims);
    let bearer = format!("Bearer {unbound}");
    assert_refused(
        setup.call(Some(&bearer), None).await,
        TOKEN,
        "authorization scheme is not dpop",
    );
    assert_refused(
        setup.call(Some("Basic dXNlcjpwYXNz"), None).await,
        TOKEN,
        "authorization scheme is not dpop",
    );
}

#[tokio::test]
async fn a_required_nonce_is_asked_for_then_accepted() {
    let nonces = NonceSource::new(
        b"a secret shared by every replica",
        std::time::Duration::from_secs(60),
    );
    let setup = Setup::build(Alg::ES256, |config| config.require_nonce = true, Some(nonces));
    let token = setup.valid_token();

    let error = setup.send(&token, &setup.proof(&token)).await.unwrap_err();
    assert_eq!(error.error_code(), Some("use_dpop_nonce"));
    let challenge = error.www_authenticate();
    assert!(challenge.contains("error=\"use_dpop_nonce\""), "{challenge}");
    assert!(challenge.ends_with("algs=\"ES256 EdDSA RS256\""), "{challenge}");
    let nonce = error
        .dpop_nonce()
        .expect("use_dpop_nonce carries a nonce")
        .to_owned();

    let wrong = setup.client.proof("GET", URL, Some(&token), Some("made-up"));
    let error = setup.send(&token, &wrong).await.unwrap_err();
    assert_eq!(error.error_code(), Some("use_dpop_nonce"));

    let proof = setup.client.proof("GET", URL, Some(&token), Some(&nonce));
    let principal = setup.send(&token, &proof).await.unwrap();
    assert_eq!(principal.tenant.as_str(), "acme");
}

#[tokio::test]
async fn the_challenge_lists_only_the_configured_algs() {
    let setup = Setup::build(
        Alg::ES256,
        |config| config.allowed_algs = vec![Alg::ES256, Alg::EdDSA],
        None,
    );
    let error = setup.call(None, None).await.unwrap_err();
    assert_eq!(
        setup.auth.www_authenticate(&error),
        "DPoP error=\"invalid_token\", error_description=\"missing authorization header\", algs=\"ES256 EdDSA\""
    );
}

/// Valid proof claims for `GET URL` with `token`.
fn proof_claims(token: &str) -> serde_json::Value {
    json!({
        "jti": b64(rand_bytes()),
        "htm": "GET",
        "htu": URL,
        "iat": Utc::now().timestamp(),
        "ath": export_auth::client::access_token_hash(token),
    })
}

fn rand_bytes() -> [u8; 16] {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}
