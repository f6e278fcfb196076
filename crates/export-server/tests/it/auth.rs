//! DPoP authentication, tenancy, scopes and rate limits on every endpoint (SPEC §3, §12).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use export_auth::client::DpopKey;
use export_auth::dev::DevIssuer;
use export_auth::Alg;
use export_core::{Clock, TenantId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, TestClock};

/// Every authenticated endpoint, with a body for the POSTs.
fn endpoints(run_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/export-center/profiles".into(), None),
        (Method::GET, "/export-center/runs".into(), None),
        (
            Method::POST,
            "/export-center/runs".into(),
            Some(json!({ "profileId": "export-profile::acme::tiny" })),
        ),
        (Method::GET, format!("/export-center/runs/{run_id}"), None),
        (Method::POST, format!("/export-center/runs/{run_id}/cancel"), None),
    ]
}

/// What a request carries: the `Authorization` value and the `DPoP` proof.
struct Credentials {
    authorization: Option<String>,
    proof: Option<String>,
    tenant: &'static str,
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: &Option<Value>,
    creds: &Credentials,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method.clone(), app.url(path))
        .header("X-StellaOps-Tenant", creds.tenant);
    if let Some(value) = &creds.authorization {
        request = request.header("Authorization", value);
    }
    if let Some(proof) = &creds.proof {
        request = request.header("DPoP", proof);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_authenticated_endpoint_refuses_every_broken_credential() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme");
    let run_id = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await
        .run_id;
    let now = app.clock.now();
    let hour = Duration::from_secs(3600);
    let tenant = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let other_issuer = DevIssuer::load_or_create(&app.data_dir.join("other-issuer")).unwrap();
    let all = ["export:read", "export:write"];

    for (method, path, body) in endpoints(&run_id) {
        let url = app.url(&path);
        let key = DpopKey::generate(Alg::ES256);
        let jkt = key.jwk_thumbprint().to_owned();
        let good = app.issuer.mint_at(&tenant, &all, "alice", &jkt, hour, now);
        let proof = |token: &str| key.proof_at(method.as_str(), &url, Some(token), None, now);
        let dpop = |token: &str| Some(format!("DPoP {token}"));
        let mut tampered = good.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let wrong_iss = app
            .issuer
            .clone()
            .with_issuer("urn:someone-else", app.issuer.audience());
        let wrong_aud = app
            .issuer
            .clone()
            .with_issuer(app.issuer.issuer(), "another-service");
        let other_key = DpopKey::generate(Alg::EdDSA);

        let cases: Vec<(&str, Credentials, u16, &str, Option<&str>)> = vec![
            (
                "no token",
                Credentials {
                    authorization: None,
                    proof: None,
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "malformed token",
                Credentials {
                    authorization: dpop("not.a.jwt"),
                    proof: Some(proof("not.a.jwt")),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "expired",
                {
                    let token = app.issuer.mint_at(
                        &tenant,
                        &all,
                        "alice",
                        &jkt,
                        hour,
                        now - chrono::Duration::hours(3),
                    );
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "not yet valid",
                {
                    let token = app.issuer.mint_at(
                        &tenant,
                        &all,
                        "alice",
                        &jkt,
                        hour,
                        now + chrono::Duration::hours(1),
                    );
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "wrong issuer",
                {
                    let token = wrong_iss.mint_at(&tenant, &all, "alice", &jkt, hour, now);
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "wrong audience",
                {
                    let token = wrong_aud.mint_at(&tenant, &all, "alice", &jkt, hour, now);
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "bad signature",
                Credentials {
                    authorization: dpop(&tampered),
                    proof: Some(proof(&tampered)),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "unknown kid",
                {
                    let token = other_issuer.mint_at(&tenant, &all, "alice", &jkt, hour, now);
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                "token of another tenant",
                {
                    let token = app.issuer.mint_at(&globex, &all, "mallory", &jkt, hour, now);
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                403,
                "ERR_TENANT_MISMATCH",
                None,
            ),
            (
                "missing scope",
                {
                    let scope = if method == Method::GET {
                        "export:write"
                    } else {
                        "export:read"
                    };
                    let token = app.issuer.mint_at(&tenant, &[scope], "alice", &jkt, hour, now);
                    Credentials {
                        authorization: dpop(&token),
                        proof: Some(proof(&token)),
                        tenant: "acme",
                    }
                },
                403,
                "ERR_SCOPE_MISMATCH",
                None,
            ),
            (
                "proof missing",
                Credentials {
                    authorization: dpop(&good),
                    proof: None,
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "proof by another key",
                Credentials {
                    authorization: dpop(&good),
                    proof: Some(other_key.proof_at(method.as_str(), &url, Some(&good), None, now)),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "proof for another method",
                Credentials {
                    authorization: dpop(&good),
                    proof: Some(key.proof_at(
                        if method == Method::GET { "POST" } else { "GET" },
                        &url,
                        Some(&good),
                        None,
                        now,
                    )),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "proof for another URL",
                Credentials {
                    authorization: dpop(&good),
                    proof: Some(key.proof_at(
                        method.as_str(),
                        &app.url("/export-center/elsewhere"),
                        Some(&good),
                        None,
                        now,
                    )),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "wrong ath",
                Credentials {
                    authorization: dpop(&good),
                    proof: Some(key.proof_at(method.as_str(), &url, Some("another-token"), None, now)),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "stale iat",
                Credentials {
                    authorization: dpop(&good),
                    proof: Some(key.proof_at(
                        method.as_str(),
                        &url,
                        Some(&good),
                        None,
                        now - chrono::Duration::minutes(5),
                    )),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "future iat",
                Credentials {
                    authorization: dpop(&good),
                    proof: Some(key.proof_at(
                        method.as_str(),
                        &url,
                        Some(&good),
                        None,
                        now + chrono::Duration::minutes(5),
                    )),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_dpop_proof"),
            ),
            (
                "dpop-bound token as bearer",
                Credentials {
                    authorization: Some(format!("Bearer {good}")),
                    proof: Some(proof(&good)),
                    tenant: "acme",
                },
                401,
                "ERR_UNAUTHENTICATED",
                Some("invalid_token"),
            ),
        ];
        for (name, creds, status, code, challenge) in cases {
            let response = send(&app, &method, &path, &body, &creds).await;
            let www = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let problem = assert_problem(response, status, code).await;
            assert!(
                problem.get("items").is_none() && problem.get("runId").is_none(),
                "{name}: data leaked"
            );
            match challenge {
                Some(error) => {
                    let www = www.unwrap_or_else(|| panic!("{method} {path} {name}: no WWW-Authenticate"));
                    assert!(www.starts_with("DPoP "), "{name}: {www}");
                    assert!(
                        www.contains(&format!("error=\"{error}\"")),
                        "{method} {path} {name}: {www}"
                    );
                    assert!(www.contains("algs=\"ES256 EdDSA RS256\""), "{name}: {www}");
                }
                None => assert!(www.is_none(), "{name}"),
            }
        }

        // A proof is good once: the same request replayed is refused.
        let creds = Credentials {
            authorization: dpop(&good),
            proof: Some(proof(&good)),
            tenant: "acme",
        };
        let first = send(&app, &method, &path, &body, &creds).await;
        assert!(
            first.status().is_success() || first.status() == StatusCode::CONFLICT,
            "{method} {path}: {}",
            first.status()
        );
        let replay = send(&app, &method, &path, &body, &creds).await;
        let www = replay.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_problem(replay, 401, "ERR_UNAUTHENTICATED").await;
        assert!(www.contains("invalid_dpop_proof"), "{www}");
    }
}

#[tokio::test]
async fn a_proof_for_the_public_url_is_accepted_behind_a_reverse_proxy() {
    let app = TestApp::spawn_with(|config| {
        config.server.public_base_url = Some("https://gateway.example.com/stella".to_owned());
    })
    .await;
    let acme = app.tenant("acme");
    let key = DpopKey::generate(Alg::EdDSA);
    let token = acme.token(&key, &["export:read"]);
    let now = app.clock.now();
    // The proxy took `https://gateway.example.com/stella/export-center/profiles` and
    // forwarded it to the service's own address without the prefix.
    let public = "https://gateway.example.com/stella/export-center/profiles";
    let forwarded = |proof: String| {
        app.http
            .get(app.url("/export-center/profiles"))
            .header("Host", "internal-service:8080")
            .header("X-StellaOps-Tenant", "acme")
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
    };
    let accepted = forwarded(key.proof_at("GET", public, Some(&token), None, now))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    // A proof for the address the service happens to listen on is not the public URL.
    let direct = forwarded(key.proof_at(
        "GET",
        &app.url("/export-center/profiles"),
        Some(&token),
        None,
        now,
    ))
    .send()
    .await
    .unwrap();
    assert_problem(direct, 401, "ERR_UNAUTHENTICATED").await;
    // Signed download links use the public URL too.
    app.ingest_fixtures("acme").await;
    let run = acme
        .create_run(json!({ "profileId": acme.profile_id("tiny") }))
        .await;
    app.run_pending().await;
    let status = acme.run(&run.run_id).await;
    assert!(status.outputs.iter().all(|o| o
        .url
        .starts_with("https://gateway.example.com/stella/export-center/artifacts/")));
}

#[tokio::test]
async fn tokens_and_proofs_from_an_independent_jose_implementation_are_accepted_and_tampering_refused() {
    let work = tempfile::tempdir().unwrap();
    let public_base = "https://exports.example.test";
    let url = format!("{public_base}/export-center/profiles");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../export-auth/tests/mint.py");
    // The Python proofs carry the wall-clock second at which they are made. The server's
    // clock starts on the second before, so they are not dated before its start (which
    // would ask for a nonce, SPEC §17).
    let started = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let output = Command::new("python3")
        .arg(&script)
        .arg(work.path())
        .args(["GET", &url, "urn:python-issuer", "export-center", "acme"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mint.py failed (run `pip install pyjwt cryptography`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted: Value = serde_json::from_slice(&output.stdout).unwrap();
    let jwks = minted["jwks_path"].as_str().unwrap().to_owned();
    let app = TestApp::spawn_at(TestClock::starting_at(started), |config| {
        config.server.public_base_url = Some(public_base.to_owned());
        config.auth.jwks_file = Some(jwks.into());
        config.auth.issuer = "urn:python-issuer".to_owned();
        config.auth.audience = "export-center".to_owned();
    })
    .await;
    let mut accepted = 0;
    for case in minted["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let response = app
            .http
            .get(app.url("/export-center/profiles"))
            .header("X-StellaOps-Tenant", "acme")
            .header(
                "Authorization",
                format!("DPoP {}", case["token"].as_str().unwrap()),
            )
            .header("DPoP", case["proof"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        match case["expect"].as_str().unwrap() {
            "ok" => {
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "{name}: {}",
                    response.text().await.unwrap()
                );
                accepted += 1;
            }
            error => {
                let www = response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_owned());
                assert_problem(response, 401, "ERR_UNAUTHENTICATED").await;
                assert!(www.unwrap_or_default().contains(error), "{name}");
            }
        }
    }
    assert!(accepted >= 3, "several algorithms were accepted");
}

#[tokio::test]
async fn run_creation_is_rate_limited_per_tenant() {
    let app = TestApp::spawn_with(|config| {
        config.limits.runs_per_minute = 6;
        config.limits.runs_burst = 3;
    })
    .await;
    let acme = app.tenant("acme");
    for _ in 0..3 {
        acme.create_run(json!({ "profileId": acme.profile_id("tiny") }))
            .await;
    }
    let refused = acme
        .post("/export-center/runs")
        .json(&json!({ "profileId": acme.profile_id("tiny") }))
        .send()
        .await
        .unwrap();
    let headers = refused.headers().clone();
    let problem = assert_problem(refused, 429, "ERR_EXPORT_RATE_LIMIT").await;
    assert_eq!(headers["retry-after"], "10", "one run every 10 s at 6 per minute");
    assert_eq!(problem["retryAfterSeconds"], 10);
    assert_eq!(headers["ratelimit-policy"], "3;w=30");
    assert_eq!(headers["ratelimit"], "limit=3, remaining=0, reset=10");
    let globex = app.tenant("globex");
    let other = globex
        .post("/export-center/runs")
        .json(&json!({ "profileId": globex.profile_id("daily") }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::ACCEPTED,
        "other tenants are unaffected"
    );
}

#[test]
fn the_dev_mode_token_command_mints_a_token_the_server_accepts() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_export-center"))
        .args(["token", "--tenant", "tenant-default", "--scopes", "export:read"])
        .env("EXPORT_CENTER_SERVER__DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(minted["tokenType"], "DPoP");
    let key = DpopKey::from_pkcs8_pem(minted["dpopKey"].as_str().unwrap()).unwrap();
    let issuer = DevIssuer::load_or_create(data.path()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = export_server::Config::for_data_dir(data.path());
        config.workers.concurrency = 0;
        let app = export_server::App::build(config).await.unwrap();
        let listeners = app.bind().await.unwrap();
        let base = format!("http://{}", listeners.public_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(app.serve(listeners, export_server::Role::Api, shutdown.clone()));
        let client = export_auth::http::DpopClient::new(
            crate::helpers::http_client(),
            minted["accessToken"].as_str().unwrap(),
            key,
        );
        let url = format!("{base}/export-center/profiles");
        let response = client
            .send(Method::GET, &url, |r| {
                r.header("X-StellaOps-Tenant", "tenant-default")
            })
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let _ = issuer;
        shutdown.cancel();
    });
}

#[tokio::test]
async fn a_full_replay_cache_refuses_new_proofs_until_its_entries_expire() {
    let clock = TestClock::new();
    let app = TestApp::spawn_at(clock.clone(), |config| config.auth.replay_cache_capacity = 2).await;
    let acme = app.tenant("acme");
    for _ in 0..2 {
        let answer = acme.get("/export-center/profiles").send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    // A third fresh proof does not fit, and is not let through unchecked.
    let refused = acme.get("/export-center/profiles").send().await.unwrap();
    let problem = assert_problem(refused, 503, "ERR_EXPORT_INTERNAL").await;
    assert!(problem.get("items").is_none(), "no data: {problem}");
    // Entries live for the proof window plus the clock skew (60 + 30 s by default).
    clock.advance(chrono::Duration::seconds(91));
    let answer = acme.get("/export-center/profiles").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "expired entries make room");
}

#[tokio::test]
async fn the_dpop_client_answers_a_nonce_challenge_by_retrying_once() {
    let app = TestApp::spawn_at(TestClock::starting_at(Utc::now()), |config| {
        config.auth.require_nonce = true
    })
    .await;
    let acme = app.tenant("acme");
    // Without a nonce the server challenges and hands one out.
    let bare = acme.get("/export-center/profiles").send().await.unwrap();
    let nonce = bare
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    let www = bare.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_problem(bare, 401, "ERR_UNAUTHENTICATED").await;
    assert!(www.contains("use_dpop_nonce"), "{www}");
    assert!(nonce.is_some());
    // The shared client retries with it and gets through.
    let key = DpopKey::generate(Alg::EdDSA);
    let token = acme.token(&key, &["export:read"]);
    let client = export_auth::http::DpopClient::new(crate::helpers::http_client(), token, key);
    let url = app.url("/export-center/profiles");
    let response = client
        .send(Method::GET, &url, |r| r.header("X-StellaOps-Tenant", "acme"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
