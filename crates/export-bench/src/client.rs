//! Credentials, DPoP proofs and HTTP/1.1 connections for the load generators.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use export_auth::client::{authorization_header, DpopKey};
use export_auth::dev::DevIssuer;
use export_auth::http::DpopClient;
use export_auth::Alg;
use export_core::TenantId;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};

/// The tenant header of every tenant-scoped request.
pub const TENANT_HEADER: &str = "x-stellaops-tenant";

/// Parses a proof algorithm name: `es256` or `eddsa` (any case).
pub fn parse_alg(name: &str) -> anyhow::Result<Alg> {
    match name.to_ascii_lowercase().as_str() {
        "es256" => Ok(Alg::ES256),
        "eddsa" | "ed25519" => Ok(Alg::EdDSA),
        _ => bail!("unknown proof algorithm `{name}`: use es256 or eddsa"),
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub struct Credentials {
    /// The access token; `None` when the server runs with `auth.mode = "disabled"`.
    token: Option<String>,
    key: DpopKey,
    authorization: Option<HeaderValue>,
    tenant: HeaderValue,
}

impl Credentials {
    /// No authentication: the tenant header alone (`auth.mode = "disabled"`).
    pub fn disabled(tenant: &str) -> anyhow::Result<Self> {
        Ok(Self {
            token: None,
            key: DpopKey::generate(Alg::EdDSA),
            authorization: None,
            tenant: HeaderValue::from_str(tenant).context("tenant header")?,
        })
    }

    /// A token minted from the server's dev issuer key (`<data_dir>/dev-issuer.pem`, the
    /// server must run with `auth.mode = "dev"` and the default issuer and audience), bound
    /// to a fresh proof key of `alg`.
    pub fn mint(data_dir: &Path, tenant: &str, alg: Alg, lifetime: Duration) -> anyhow::Result<Self> {
        let issuer = DevIssuer::load_or_create(data_dir)
            .with_context(|| format!("loading the dev issuer of {}", data_dir.display()))?;
        let tenant_id = TenantId::parse(tenant).context("tenant")?;
        let key = DpopKey::generate(alg);
        let token = issuer.mint(
            &tenant_id,
            &["export:read", "export:write"],
            "bench",
            key.jwk_thumbprint(),
            lifetime,
        );
        Self::with_token(token, key, tenant)
    }

    /// The JSON printed by `export-center token`: `{"accessToken", "dpopKey"}`.
    pub fn from_token_json(path: &Path, tenant: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let token = json["accessToken"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: no accessToken", path.display()))?;
        let pem = json["dpopKey"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: no dpopKey", path.display()))?;
        let key = DpopKey::from_pkcs8_pem(pem).map_err(|err| anyhow!("dpopKey: {err}"))?;
        Self::with_token(token.to_owned(), key, tenant)
    }

    fn with_token(token: String, key: DpopKey, tenant: &str) -> anyhow::Result<Self> {
        let authorization = HeaderValue::from_str(&authorization_header(&token)).context("token")?;
        Ok(Self {
            token: Some(token),
            key,
            authorization: Some(authorization),
            tenant: HeaderValue::from_str(tenant).context("tenant header")?,
        })
    }

    /// The project's DPoP client (`export_auth::http::DpopClient`: a fresh proof per
    /// request, nonce challenges answered) over `http`, with these credentials; `None`
    /// without authentication.
    pub fn dpop_client(&self, http: reqwest::Client) -> Option<DpopClient> {
        let token = self.token.clone()?;
        Some(DpopClient::new(http, token, self.key.clone()))
    }

    /// The tenant header's value.
    pub fn tenant(&self) -> &HeaderValue {
        &self.tenant
    }

    /// Whether requests carry a token and proofs.
    pub fn authenticated(&self) -> bool {
        self.token.is_some()
    }

    /// The proof key's algorithm.
    pub fn alg(&self) -> Alg {
        self.key.alg()
    }

    /// A fresh proof (new `jti`, `iat` = now) for one `method` request to `url`; `None`
    /// without authentication.
    pub fn proof(&self, method: &str, url: &str) -> Option<String> {
        let token = self.token.as_deref()?;
        Some(self.key.proof(method, url, Some(token), None))
    }

    /// Like [`Credentials::proof`], carrying the server's `nonce` when given (the answer to
    /// a `use_dpop_nonce` challenge).
    pub fn proof_with_nonce(&self, method: &str, url: &str, nonce: Option<&str>) -> Option<String> {
        let token = self.token.as_deref()?;
        Some(self.key.proof(method, url, Some(token), nonce))
    }

    /// Like [`Credentials::proof`], with `iat` = `issued_at` (pre-generated proofs).
    pub fn proof_at(
        &self,
        method: &str,
        url: &str,
        issued_at: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        let token = self.token.as_deref()?;
        Some(self.key.proof_at(method, url, Some(token), None, issued_at))
    }

    /// A request with the tenant header, and the token and `proof` when authenticated.
    pub fn request(
        &self,
        method: Method,
        url: &str,
        proof: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let uri: http::Uri = url.parse().with_context(|| format!("url {url}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("url {url} has no host"))?
            .clone();
        let mut builder = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/"))
            .header(http::header::HOST, authority.as_str())
            .header(TENANT_HEADER, self.tenant.clone());
        if let Some(authorization) = &self.authorization {
            builder = builder.header(http::header::AUTHORIZATION, authorization.clone());
        }
        if let Some(proof) = proof {
            builder = builder.header("dpop", proof);
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                body
            }
            None => Bytes::new(),
        };
        builder.body(Full::new(body)).context("building the request")
    }
}

/// The socket address of an `http://host:port` base URL (numeric host only).
pub fn socket_addr(base_url: &str) -> anyhow::Result<SocketAddr> {
    let uri: http::Uri = base_url.parse().with_context(|| format!("url {base_url}"))?;
    let host = uri.host().ok_or_else(|| anyhow!("{base_url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let ip: IpAddr = host
        .parse()
        .with_context(|| format!("{base_url}: the host must be an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// One HTTP/1.1 keep-alive connection to `server`, from `local` (any port) when given.
/// The connection is driven by a spawned task.
pub async fn connect(server: SocketAddr, local: Option<IpAddr>) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = connect_tcp(server, local).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A TCP connection to `server` from `local` (any port) when given, with `TCP_NODELAY`.
pub async fn connect_tcp(server: SocketAddr, local: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding {ip}"))?;
    }
    let stream = socket
        .connect(server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request on a fresh connection, for set-up: the status and the whole body. A
/// `use_dpop_nonce` challenge (a server asks for one in the second it started) is answered
/// once, on another fresh connection, with a proof carrying the nonce.
pub async fn one_shot(
    credentials: &Credentials,
    method: Method,
    url: &str,
    body: Option<Bytes>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut nonce: Option<String> = None;
    loop {
        let mut sender = connect(socket_addr(url)?, None).await?;
        let proof = credentials.token.as_deref().map(|token| {
            credentials
                .key
                .proof(method.as_str(), url, Some(token), nonce.as_deref())
        });
        let request = credentials.request(method.clone(), url, proof.as_deref(), body.clone())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.contains("use_dpop_nonce"));
        let offered = response
            .headers()
            .get("dpop-nonce")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        match offered {
            Some(offered) if status == StatusCode::UNAUTHORIZED && challenge && nonce.is_none() => {
                nonce = Some(offered);
            }
            _ => return Ok((status, body)),
        }
    }
}

/// Creates a run of `profile_id` and returns its id.
pub async fn create_run(
    credentials: &Credentials,
    base_url: &str,
    profile_id: &str,
) -> anyhow::Result<String> {
    let url = format!("{base_url}/export-center/runs");
    let body = serde_json::json!({ "profileId": profile_id }).to_string();
    let (status, body) = one_shot(credentials, Method::POST, &url, Some(Bytes::from(body))).await?;
    if status != StatusCode::ACCEPTED {
        bail!(
            "POST {url}: {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(500)
                .collect::<String>()
        );
    }
    let json: Value = serde_json::from_slice(&body).context("run creation answer")?;
    json["runId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("run creation answer has no runId"))
}

/// The run's status JSON.
pub async fn get_run(credentials: &Credentials, base_url: &str, run_id: &str) -> anyhow::Result<Value> {
    let url = format!("{base_url}/export-center/runs/{run_id}");
    let (status, body) = one_shot(credentials, Method::GET, &url, None).await?;
    if status != StatusCode::OK {
        bail!("GET {url}: {status}");
    }
    serde_json::from_slice(&body).context("run status")
}

/// Polls the run until it has ended; its final status JSON.
pub async fn wait_for_run(
    credentials: &Credentials,
    base_url: &str,
    run_id: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let run = get_run(credentials, base_url, run_id).await?;
        let status = run["status"].as_str().unwrap_or_default();
        if !matches!(status, "queued" | "running") {
            return Ok(run);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("run {run_id} still {status} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
