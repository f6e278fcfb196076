//! Authentication hardening (SPEC §17): DPoP proofs are refused after a restart as before
//! it, and replicas that share a nonce secret accept each other's nonces.

use export_auth::client::DpopKey;
use export_auth::http::DpopClient;
use export_auth::Alg;
use export_core::Clock;
use reqwest::{Method, StatusCode};

use crate::helpers::{assert_problem, TestApp};
use crate::processes::{command, mint, start};

/// `GET url` with the token and `proof`, as tenant-default.
async fn send(url: &str, token: &str, proof: &str) -> reqwest::Response {
    crate::helpers::http_client()
        .get(url)
        .header("X-StellaOps-Tenant", "tenant-default")
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap()
}

/// The `use_dpop_nonce` challenge of `response`: its `DPoP-Nonce`.
async fn nonce_challenge(response: reqwest::Response) -> String {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
    let nonce = response.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_problem(response, 401, "ERR_UNAUTHENTICATED").await;
    nonce
}

/// On the embedded default (SQLite, replay cache in memory) a real server is killed with
/// SIGKILL and restarted on the same data directory: a proof it accepted before is
/// refused after, and a well-behaved client still gets through.
#[tokio::test]
async fn a_proof_accepted_before_a_restart_is_refused_after_it() {
    let data = tempfile::tempdir().unwrap();
    let (token, key) = mint(command(data.path()));
    let mut server = start(command(data.path()), &[]).await;
    let address = server.address;
    let url = format!("{}/export-center/profiles", server.base());

    // A proof made in the second the server started is dated before its start, and is
    // challenged (the nonce is of this process); later ones pass as they are.
    let mut proof = key.proof("GET", &url, Some(&token), None);
    let first = send(&url, &token, &proof).await;
    if first.status() == StatusCode::UNAUTHORIZED {
        let nonce = nonce_challenge(first).await;
        proof = key.proof("GET", &url, Some(&token), Some(&nonce));
        assert_eq!(send(&url, &token, &proof).await.status(), StatusCode::OK);
    } else {
        assert_eq!(first.status(), StatusCode::OK);
    }
    let replayed = send(&url, &token, &proof).await;
    assert_problem(replayed, 401, "ERR_UNAUTHENTICATED").await;

    server.child.kill().unwrap(); // SIGKILL: nothing is saved on the way out.
    server.child.wait().unwrap();
    drop(server);
    // On the same address: the proof names its URL.
    let mut restart = command(data.path());
    restart.env("EXPORT_CENTER_SERVER__LISTEN", address.to_string());
    let _server = start(restart, &[]).await;

    // The replay record of the first process is gone, and the proof is refused all the same.
    let replayed = send(&url, &token, &proof).await;
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    nonce_challenge(replayed).await;

    // The shared client answers the challenge at once and gets through.
    let client = DpopClient::new(crate::helpers::http_client(), &token, key);
    let response = client
        .send(Method::GET, &url, |r| {
            r.header("X-StellaOps-Tenant", "tenant-default")
        })
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Two servers configured with the same `auth.nonce_secret_file` accept each other's
/// nonces; a server with a secret of its own (the default, in its data directory) does not.
#[tokio::test]
async fn servers_sharing_a_nonce_secret_file_accept_each_others_nonces() {
    let secrets = tempfile::tempdir().unwrap();
    let shared = secrets.path().join("nonce.key");
    std::fs::write(&shared, "c2hhcmVkIGJ5IGV2ZXJ5IHJlcGxpY2Egb2YgdGhlIHNpdGUh\n").unwrap();
    let with_shared = |config: &mut export_server::Config| {
        config.auth.require_nonce = true;
        config.auth.nonce_secret_file = Some(shared.clone());
    };
    let first = TestApp::spawn_with(with_shared).await;
    let second = TestApp::spawn_with(with_shared).await;
    let own = TestApp::spawn_with(|config| config.auth.require_nonce = true).await;
    assert!(own.data_dir.join("dpop-nonce.key").exists());

    let nonce = nonce_challenge(
        first
            .tenant("acme")
            .get("/export-center/profiles")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let answer = |app: &TestApp| {
        let key = DpopKey::generate(Alg::EdDSA);
        let token = app.tenant("acme").token(&key, &["export:read"]);
        let url = app.url("/export-center/profiles");
        let proof = key.proof_at("GET", &url, Some(&token), Some(&nonce), app.clock.now());
        app.http
            .get(url)
            .header("X-StellaOps-Tenant", "acme")
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .send()
    };
    assert_eq!(answer(&second).await.unwrap().status(), StatusCode::OK);
    nonce_challenge(answer(&own).await.unwrap()).await;
}
