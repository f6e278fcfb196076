//! The HTTP side of `exportctl`: credentials from the token file, DPoP-signed requests to
//! `/export-center`, and the errors a command can end with (problem, unreachable).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use export_api_types::Problem;
use export_auth::client::DpopKey;
use export_auth::http::DpopClient;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The server answered with an error; printed as `error: <code>: <detail>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", .0.code, .0.detail)]
pub(crate) struct ProblemError(pub(crate) Box<Problem>);

/// The server could not be reached (connection refused, reset or timed out): exit code 4.
#[derive(Debug, thiserror::Error)]
#[error("server {server} unreachable: {reason}")]
pub(crate) struct Unreachable {
    pub(crate) server: String,
    pub(crate) reason: String,
}

/// What `export-center token` prints.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenFile {
    access_token: String,
    dpop_key: String,
}

/// The token and proof key of `--token-file`, kept out of every message and log.
pub(crate) struct Credentials {
    access_token: String,
    key: DpopKey,
}

impl Credentials {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        // serde's messages quote the offending input, which here would be the token.
        let file: TokenFile = serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!(
                "token file {} is not the JSON of `export-center token` (accessToken, dpopKey)",
                path.display()
            )
        })?;
        let key = DpopKey::from_pkcs8_pem(&file.dpop_key).map_err(|_| {
            anyhow::anyhow!(
                "token file {}: dpopKey is not a PKCS#8 PEM private key",
                path.display()
            )
        })?;
        Ok(Self {
            access_token: file.access_token,
            key,
        })
    }

    /// The tenant claim of the access token (`stellaops:tenant`, else `tid`), read without
    /// verifying it: the server does that, this only saves typing `--tenant`.
    pub(crate) fn tenant_claim(&self) -> Option<String> {
        let payload = self.access_token.split('.').nth(1)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        ["stellaops:tenant", "tid"]
            .iter()
            .find_map(|name| claims.get(*name)?.as_str().map(str::to_owned))
    }
}

/// Settings shared by every command.
pub(crate) struct Connection {
    pub(crate) server: String,
    pub(crate) tenant: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    /// CA certificates (PEM) trusted besides the operating system's store.
    pub(crate) ca_file: Option<PathBuf>,
}

/// An authenticated client of one server and tenant.
pub(crate) struct Api {
    base: String,
    tenant: String,
    dpop: DpopClient,
    /// For signed download links, which carry their own credential.
    plain: reqwest::Client,
}

impl Api {
    pub(crate) fn connect(connection: &Connection) -> anyhow::Result<Self> {
        let base = connection.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--server `{base}` must start with http:// or https://");
        }
        let path = connection
            .token_file
            .as_deref()
            .context("no token: pass --token-file <file> (the JSON printed by `export-center token`) or set EXPORTCTL_TOKEN_FILE")?;
        let credentials = Credentials::load(path)?;
        let tenant = match &connection.tenant {
            Some(tenant) => tenant.clone(),
            None => credentials
                .tenant_claim()
                .context("no tenant: pass --tenant or set EXPORTCTL_TENANT")?,
        };
        let http = http_client(connection.ca_file.as_deref())?;
        Ok(Self {
            base,
            tenant,
            dpop: DpopClient::new(http.clone(), credentials.access_token, credentials.key),
            plain: http,
        })
    }

    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a DPoP-signed request to `path` with the tenant header, mapping transport
    /// failures to [`Unreachable`]. Any status is returned.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Response> {
        let url = self.url(path);
        self.dpop
            .send(method, &url, |request| {
                build(request.header("X-StellaOps-Tenant", &self.tenant))
            })
            .await
            .map_err(|err| self.transport_error(err))
    }

    /// A request whose success body is JSON; an error status becomes [`ProblemError`].
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.send(method, path, build).await?;
        let response = check(response).await?;
        let body = response.bytes().await.map_err(|err| self.transport_error(err))?;
        serde_json::from_slice(&body).with_context(|| format!("reading the answer of {path}"))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.json(Method::GET, path, |request| request).await
    }

    /// GETs a signed download link (absolute, or a path on this server) without the token.
    pub(crate) async fn download(&self, url: &str) -> anyhow::Result<Response> {
        let url = if url.starts_with('/') {
            self.url(url)
        } else {
            url.to_owned()
        };
        let response = self
            .plain
            .get(&url)
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        check(response).await
    }

    /// Classifies a reqwest error; signed URLs are removed from the message, since they
    /// are credentials until they expire.
    pub(crate) fn transport_error(&self, err: reqwest::Error) -> anyhow::Error {
        let unreachable =
            err.is_connect() || err.is_timeout() || err.is_request() || err.is_body() || err.is_decode();
        let reason = error_chain(&err.without_url());
        if unreachable {
            Unreachable {
                server: self.base.clone(),
                reason,
            }
            .into()
        } else {
            anyhow::anyhow!("talking to {}: {reason}", self.base)
        }
    }
}

/// The one HTTP client of a command: rustls over ring, trusting the operating system's
/// certificate store and the CA certificates of `ca_file`.
fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    export_egress::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("exportctl/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // The event stream sends a keep-alive comment every 15 s, so a read that waits
        // longer than this is a dead connection.
        .read_timeout(Duration::from_secs(45));
    let Some(path) = ca_file else {
        return builder.build().context("building the HTTP client");
    };
    builder
        .tls_certs_merge(ca_certificates(path)?)
        .build()
        .with_context(|| format!("--ca-file {}: building the HTTP client", path.display()))
}

/// The certificates of a PEM file (`--ca-file`); an error names the file and the reason.
fn ca_certificates(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let failed = |reason: String| anyhow::anyhow!("--ca-file {}: {reason}", path.display());
    let pem = std::fs::read(path).map_err(|err| failed(err.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|err| failed(format!("not a PEM certificate bundle: {}", error_chain(&err))))?;
    if certificates.is_empty() {
        return Err(failed(
            "no PEM certificate (`-----BEGIN CERTIFICATE-----`) in the file".into(),
        ));
    }
    Ok(certificates)
}

/// The error with its causes, `a: b: c`, as `{:#}` prints an anyhow chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Passes a successful response through; turns an error status into [`ProblemError`]
/// (or a plain error when the body is not a problem).
pub(crate) async fn check(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(problem_of(response).await)
}

/// The problem a failed response carries.
pub(crate) async fn problem_of(response: Response) -> anyhow::Error {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => ProblemError(Box::new(problem)).into(),
        Err(_) => anyhow::anyhow!("server answered {}", describe(status)),
    }
}

fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The `Retry-After` of a response, in whole seconds (the HTTP-date form is not used by
/// this server).
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let text = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A path segment holding a run id. Run ids are URL-safe (`export-run::t::date::seq`), so
/// this only refuses what would change the path.
pub(crate) fn run_path(run_id: &str) -> anyhow::Result<String> {
    if run_id.is_empty() || run_id.contains(['/', '?', '#', '%']) || run_id.chars().any(char::is_whitespace) {
        anyhow::bail!("run id `{run_id}` is not a run id (export-run::<tenant>::<date>::<seq>)");
    }
    Ok(format!("/export-center/runs/{run_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tenant_claim_without_verifying() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"stellaops:tenant":"acme","sub":"u"}"#);
        let credentials = Credentials {
            access_token: format!("e30.{payload}.sig"),
            key: DpopKey::generate(export_auth::Alg::ES256),
        };
        assert_eq!(credentials.tenant_claim().as_deref(), Some("acme"));
        let credentials = Credentials {
            access_token: "not-a-jwt".to_owned(),
            ..credentials
        };
        assert_eq!(credentials.tenant_claim(), None);
    }

    #[test]
    fn run_paths_refuse_separators() {
        assert_eq!(
            run_path("export-run::t::2025-12-06::0001").unwrap(),
            "/export-center/runs/export-run::t::2025-12-06::0001"
        );
        assert!(run_path("a/../b").is_err());
        assert!(run_path("a?b").is_err());
        assert!(run_path("").is_err());
    }
}
