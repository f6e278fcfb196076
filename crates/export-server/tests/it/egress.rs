//! The egress rules (SPEC §17) on every hop, and tenant-scoped OCI repositories, against a
//! hostile fake registry on loopback: it sends the client to a second loopback listener
//! (a token `realm`, a redirect, an upload `Location`) that the allowlist does not name,
//! and that listener must never see a connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use export_oci::{OciSettings, RegistrySettings};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::helpers::{assert_problem, TestApp};

/// What the fake registry does to its client.
#[derive(Clone, Copy)]
enum Hostility {
    /// `GET /v2/` answers 401 with a bearer `realm` on the other listener.
    RealmElsewhere,
    /// Starting a blob upload answers 307 to the other listener.
    RedirectUpload,
    /// Starting a blob upload answers 202 with a `Location` on the other listener.
    UploadLocationElsewhere,
    /// Starting a blob upload answers 500 with 10 KB of HTML holding a secret.
    HugeErrorBody,
}

const SECRET: &str = "AKIAIOSFODNN7EXAMPLE-wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

struct FakeRegistry {
    address: SocketAddr,
}

impl FakeRegistry {
    async fn start(hostility: Hostility, elsewhere: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .fallback(answer)
            .with_state((hostility, elsewhere));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { address }
    }
}

async fn answer(State((hostility, elsewhere)): State<(Hostility, SocketAddr)>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == "/v2/" {
        return match hostility {
            Hostility::RealmElsewhere => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"https://{elsewhere}/token\",service=\"fake\""),
                )],
            )
                .into_response(),
            _ => StatusCode::OK.into_response(),
        };
    }
    if method == Method::HEAD && path.contains("/blobs/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    if method == Method::POST && path.ends_with("/blobs/uploads/") {
        return match hostility {
            Hostility::RedirectUpload => (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("https://{elsewhere}{path}"))],
            )
                .into_response(),
            Hostility::UploadLocationElsewhere => (
                StatusCode::ACCEPTED,
                [
                    (header::LOCATION, format!("http://{elsewhere}/upload/1")),
                    (header::RANGE, "0-0".to_owned()),
                ],
            )
                .into_response(),
            Hostility::HugeErrorBody | Hostility::RealmElsewhere => (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                format!(
                    "<html><body><h1>Internal Server Error</h1><pre>token={SECRET}</pre>{}</body></html>",
                    "<p>stack frame at /srv/registry/internal/handler.go:42</p>".repeat(200)
                ),
            )
                .into_response(),
        };
    }
    StatusCode::NOT_FOUND.into_response()
}

/// A loopback listener that counts the connections it accepts (and answers none).
struct Elsewhere {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Elsewhere {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { address, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A run of `acme` pushed to a fake registry whose address alone is allowlisted.
async fn push_to_hostile_registry(hostility: Hostility) -> (Value, usize) {
    let elsewhere = Elsewhere::start().await;
    let registry = FakeRegistry::start(hostility, elsewhere.address).await;
    let mut settings = OciSettings {
        attempts: 2,
        retry_backoff_ms: 10,
        timeout_seconds: 5,
        ..OciSettings::default()
    };
    settings.registries.insert(
        registry.address.to_string(),
        RegistrySettings {
            insecure: true,
            ..RegistrySettings::default()
        },
    );
    let app = TestApp::spawn_with(|config| {
        config.distribution.oci = settings;
        config.egress_allowlist = vec![registry.address.to_string()];
    })
    .await;
    app.install_signing_key("acme", "signer", "ed25519");
    app.ingest_fixtures("acme").await;
    let done = app
        .tenant("acme")
        .export(
            "published",
            json!({ "distribution": { "type": "oci", "ref": format!("{}/acme/daily", registry.address) } }),
        )
        .await;
    assert_eq!(done.status, "failed");
    let error = serde_json::to_value(&done.errors[0]).unwrap();
    (error, elsewhere.connections())
}

#[tokio::test]
async fn a_token_realm_on_a_host_outside_the_rules_is_never_contacted() {
    let (error, connections) = push_to_hostile_registry(Hostility::RealmElsewhere).await;
    assert_eq!(connections, 0, "the realm's listener saw no connection");
    assert_eq!(error["code"], "ERR_EXPORT_EGRESS_BLOCKED", "{error}");
    assert!(error["message"].as_str().unwrap().contains("loopback"), "{error}");
    assert!(
        error.get("retryAfterSeconds").is_none_or(Value::is_null),
        "{error}"
    );
}

#[tokio::test]
async fn a_redirected_blob_upload_is_not_followed_outside_the_rules() {
    let (error, connections) = push_to_hostile_registry(Hostility::RedirectUpload).await;
    assert_eq!(connections, 0, "the redirect's target saw no connection");
    assert_eq!(error["code"], "ERR_EXPORT_EGRESS_BLOCKED", "{error}");
}

#[tokio::test]
async fn an_upload_location_outside_the_rules_is_not_followed() {
    let (error, connections) = push_to_hostile_registry(Hostility::UploadLocationElsewhere).await;
    assert_eq!(connections, 0, "the upload location saw no connection");
    assert_eq!(error["code"], "ERR_EXPORT_EGRESS_BLOCKED", "{error}");
}

#[tokio::test]
async fn a_remote_error_body_is_kept_only_as_a_short_sanitised_excerpt() {
    let (error, _) = push_to_hostile_registry(Hostility::HugeErrorBody).await;
    assert_eq!(error["code"], "ERR_EXPORT_DISTRIBUTION_FAILED", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.len() < 400, "bounded: {} bytes: {message}", message.len());
    assert!(!message.contains('<'), "no markup: {message}");
    assert!(!message.contains(SECRET), "no secret: {message}");
}

#[tokio::test]
async fn a_reference_outside_the_tenant_prefix_is_refused() {
    let app = TestApp::spawn_with(|config| {
        config.egress_allowlist = vec!["127.0.0.1:5000".to_owned()];
        config.distribution.oci.registries.insert(
            "shared.example".to_owned(),
            RegistrySettings {
                repository_prefix: Some("teams/{tenant}/".to_owned()),
                ..RegistrySettings::default()
            },
        );
    })
    .await;
    app.install_signing_key("acme", "signer", "ed25519");
    let acme = app.tenant("acme");
    let create = |reference: &str| {
        acme.post("/export-center/runs").json(&json!({
            "profileId": acme.profile_id("published"),
            "distribution": { "type": "oci", "ref": reference },
        }))
    };
    for foreign in [
        "127.0.0.1:5000/other-tenant/daily",
        "127.0.0.1:5000/acme-evil/daily",
        "127.0.0.1:5000/exports/acme/daily",
        "shared.example/acme/daily",
        "shared.example/teams/other/daily",
    ] {
        let response = create(foreign).send().await.unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_EGRESS_BLOCKED").await;
        assert_eq!(problem["errors"][0]["field"], "distribution.ref", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("tenant `acme`"),
            "{problem}"
        );
    }
    for own in ["127.0.0.1:5000/acme/daily:v1", "shared.example/teams/acme/daily"] {
        let response = create(own).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{own}");
    }
}

#[tokio::test]
async fn an_open_site_refuses_internal_addresses_at_request_time() {
    let app = TestApp::spawn().await;
    app.install_signing_key("acme", "signer", "ed25519");
    let acme = app.tenant("acme");
    for (reference, class) in [
        ("169.254.169.254/acme/daily", "cloud metadata"),
        ("10.0.0.1:5000/acme/daily", "private"),
        ("[fd00:ec2::254]:80/acme/daily", "cloud metadata"),
        ("127.0.0.1:5000/acme/daily", "loopback"),
        ("localhost:5000/acme/daily", "loopback"),
    ] {
        let response = acme
            .post("/export-center/runs")
            .json(&json!({
                "profileId": acme.profile_id("published"),
                "distribution": { "type": "oci", "ref": reference },
            }))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400, "ERR_EXPORT_EGRESS_BLOCKED").await;
        assert_eq!(problem["errors"][0]["field"], "distribution.ref", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(class),
            "{reference}: {problem}"
        );
    }
    // Refused before anything was queued, so no worker ever connects anywhere.
    let runs: Value = acme
        .get("/export-center/runs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(0), "{runs}");
}

#[tokio::test]
async fn a_jwks_url_on_a_private_address_is_refused_at_startup() {
    for url in ["http://10.0.0.1/jwks", "http://169.254.169.254/latest/jwks"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = export_server::Config::for_data_dir(dir.path());
        config.auth.mode = export_server::config::AuthMode::Jwt;
        config.auth.jwks_url = Some(url.to_owned());
        let err = format!("{:#}", config.validate().unwrap_err());
        assert!(err.contains("auth.jwks_url"), "{err}");
        assert!(err.contains("private") || err.contains("metadata"), "{err}");
    }
}

#[tokio::test]
async fn a_jwks_redirect_outside_the_rules_is_not_followed() {
    let elsewhere = Elsewhere::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = listener.local_addr().unwrap();
    let target = format!("http://{}/jwks", elsewhere.address);
    let router = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::FOUND, [(header::LOCATION, target)]) }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });

    let app = TestApp::spawn_with(|config| {
        config.auth.jwks_file = None;
        config.auth.jwks_url = Some(format!("http://{issuer}/jwks"));
        config.egress_allowlist = vec![issuer.to_string()];
    })
    .await;
    let response = app
        .tenant("acme")
        .get("/export-center/runs")
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_client_error() || response.status().is_server_error(),
        "{}",
        response.status()
    );
    assert_eq!(
        elsewhere.connections(),
        0,
        "the redirect's target saw no connection"
    );
}
