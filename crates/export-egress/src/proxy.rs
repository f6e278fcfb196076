//! `EgressProxy`: the loopback HTTP proxy every outbound client goes through, and
//! `resolve`, the one place a destination is judged after its name is resolved.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use export_core::egress::split_authority;
use export_core::{EgressPolicy, EgressRefusal};
use http::{header, HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// How long opening a connection to a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The user name in a session's proxy URL; its password is the session's token.
const PROXY_USER: &str = "egress";

/// Headers that belong to one hop (RFC 9110 §7.6.1) and the proxy's own credentials:
/// never forwarded to the destination.
const HOP_BY_HOP: [&str; 7] = [
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Why a destination could not be reached through the proxy.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Refused(EgressRefusal),
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
}

/// The addresses of `host` (a name, an IP address, or an IPv6 address in brackets) on
/// `port` that `policy` allows, resolved once: the caller connects to these and never
/// resolves the name again, so what was judged is what is reached.
///
/// A name is first judged as named (a sealed site's allowlist names hosts), then each
/// address it resolves to; addresses the rules refuse are dropped, and when none is
/// left the first refusal is the answer.
pub async fn resolve(policy: &EgressPolicy, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        policy
            .check_address(bare, port, ip)
            .map_err(EgressError::Refused)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    policy
        .check_host(bare, Some(port))
        .map_err(EgressError::Refused)?;
    let resolve_error = |source| EgressError::Resolve {
        host: bare.to_owned(),
        source,
    };
    let resolved = tokio::net::lookup_host((bare, port))
        .await
        .map_err(resolve_error)?;
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .filter(|address| match policy.check_address(bare, port, address.ip()) {
            Ok(()) => true,
            Err(refused) => {
                refusal.get_or_insert(refused);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), refusal) {
        (false, _) => Ok(allowed),
        (true, Some(refused)) => Err(EgressError::Refused(refused)),
        (true, None) => Err(resolve_error(io::Error::new(
            io::ErrorKind::NotFound,
            "the name has no address",
        ))),
    }
}

/// The egress proxy of one process: an HTTP proxy on `127.0.0.1`, for `CONNECT`
/// tunnels (HTTPS) and absolute-form requests (plain HTTP). It answers only requests
/// that carry the credential of a live [`EgressSession`], and it judges every
/// destination with [`resolve`] before it connects.
///
/// Cheap to clone; the proxy stops when the last clone and the last session are gone.
#[derive(Clone)]
pub struct EgressProxy {
    state: Arc<State>,
    _accept: Arc<AbortOnDrop>,
}

struct State {
    policy: EgressPolicy,
    address: SocketAddr,
    sessions: Mutex<HashMap<String, SessionState>>,
}

#[derive(Default)]
struct SessionState {
    /// The one `(host, port)` this session may reach without TLS.
    plain_http: Option<(String, u16)>,
    /// What the proxy last refused for this session.
    refusal: Option<EgressRefusal>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("address", &self.state.address)
            .field("policy", &self.state.policy)
            .finish_non_exhaustive()
    }
}

impl EgressProxy {
    /// Binds a free loopback port and serves the proxy there on the current runtime.
    pub async fn start(policy: EgressPolicy) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let state = Arc::new(State {
            policy,
            address: listener.local_addr()?,
            sessions: Mutex::default(),
        });
        let task = tokio::spawn(accept(listener, state.clone()));
        Ok(Self {
            state,
            _accept: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }

    /// The rules the proxy applies.
    pub fn policy(&self) -> &EgressPolicy {
        &self.state.policy
    }

    /// A session for one client. `plain_http_to` is the one `host[:port]` (port 80 when
    /// omitted) it may reach over plain HTTP; every other destination needs TLS.
    pub fn session(&self, plain_http_to: Option<&str>) -> EgressSession {
        let token: String = rand::random::<[u8; 24]>()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let plain_http = plain_http_to
            .and_then(split_authority)
            .map(|(host, port)| (host, port.unwrap_or(80)));
        self.state.sessions().insert(
            token.clone(),
            SessionState {
                plain_http,
                refusal: None,
            },
        );
        EgressSession {
            proxy: self.clone(),
            token,
        }
    }
}

impl EgressProxy {
    /// The proxy URL of a session that lasts as long as the proxy, for a client that
    /// lives as long as the process (the JWKS fetcher). Its refusals are logged only.
    pub fn lasting_proxy_url(&self, plain_http_to: Option<&str>) -> String {
        let session = self.session(plain_http_to);
        let url = session.proxy_url();
        // Forgetting the guard keeps the credential; the proxy's map still owns the
        // session's state, so nothing leaks beyond this one entry.
        std::mem::forget(session);
        url
    }
}

/// One client's way through the [`EgressProxy`]: its proxy URL, and what the proxy
/// refused for it. Dropping the session revokes its credential.
pub struct EgressSession {
    proxy: EgressProxy,
    token: String,
}

impl fmt::Debug for EgressSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressSession")
            .field("proxy", &self.proxy.state.address)
            .finish_non_exhaustive()
    }
}

impl EgressSession {
    /// `http://egress:<token>@127.0.0.1:<port>`: the proxy for every scheme.
    pub fn proxy_url(&self) -> String {
        format!("http://{PROXY_USER}:{}@{}", self.token, self.proxy.state.address)
    }

    /// What the proxy refused for this session since the last call, if anything.
    pub fn take_refusal(&self) -> Option<EgressRefusal> {
        self.proxy
            .state
            .sessions()
            .get_mut(&self.token)
            .and_then(|session| session.refusal.take())
    }
}

impl Drop for EgressSession {
    fn drop(&mut self) {
        self.proxy.state.sessions().remove(&self.token);
    }
}

impl State {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionState>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session's plain-HTTP destination (`Some(None)` when it has none), `None` when
    /// no live session has this token.
    fn plain_http_of(&self, token: &str) -> Option<Option<(String, u16)>> {
        self.sessions()
            .get(token)
            .map(|session| session.plain_http.clone())
    }

    fn refuse(&self, token: &str, refusal: EgressRefusal) -> Response<ProxyBody> {
        tracing::warn!(reason = %refusal, "egress refused: {refusal}");
        let body = refusal.to_string();
        if let Some(session) = self.sessions().get_mut(token) {
            session.refusal = Some(refusal);
        }
        answer(StatusCode::FORBIDDEN, body)
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %err, "egress proxy: accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), request));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %err, "egress proxy connection ended");
            }
        });
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let Some(token) = session_token(request.headers()) else {
        return Ok(unauthenticated());
    };
    let Some(plain_http) = state.plain_http_of(&token) else {
        return Ok(unauthenticated());
    };
    Ok(if request.method() == Method::CONNECT {
        tunnel(&state, &token, request).await
    } else {
        forward(&state, &token, plain_http, request).await
    })
}

/// `CONNECT host:port`: judged, connected, then bytes copied both ways.
async fn tunnel(state: &State, token: &str, request: Request<Incoming>) -> Response<ProxyBody> {
    let Some((host, port)) = request
        .uri()
        .authority()
        .and_then(|authority| Some((authority.host().to_owned(), authority.port_u16()?)))
    else {
        return answer(StatusCode::BAD_REQUEST, "CONNECT needs host:port".to_owned());
    };
    let upstream = match connect(state, token, &host, port).await {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(err) => tracing::debug!(error = %err, "egress proxy: the tunnel was not opened"),
        }
    });
    Response::new(empty())
}

/// An absolute-form `http://` request: judged, then sent in origin form on a connection
/// of its own, and the answer streamed back.
async fn forward(
    state: &State,
    token: &str,
    plain_http: Option<(String, u16)>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let uri = request.uri();
    let Some(authority) = uri
        .authority()
        .filter(|_| uri.scheme_str() == Some("http"))
        .cloned()
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            "the egress proxy takes CONNECT and absolute http:// requests only".to_owned(),
        );
    };
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let destination = split_authority(&host).map(|(host, _)| (host, port));
    if destination.is_none() || destination != plain_http {
        return state.refuse(
            token,
            EgressRefusal::PlainHttp {
                destination: authority.to_string(),
            },
        );
    }
    let upstream = match connect(state, token, &host, port).await {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(pair) => pair,
        Err(err) => return bad_gateway(&err),
    };
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "egress proxy: upstream connection ended");
        }
    });
    let (mut parts, body) = request.into_parts();
    let origin_form = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(value) = authority.as_str().parse() {
            parts.headers.insert(header::HOST, value);
        }
    }
    parts.uri = origin_form;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(err) => bad_gateway(&err),
    }
}

/// Resolves and judges `host:port`, then connects to an address that passed.
async fn connect(
    state: &State,
    token: &str,
    host: &str,
    port: u16,
) -> Result<TcpStream, Response<ProxyBody>> {
    let addresses = match resolve(&state.policy, host, port).await {
        Ok(addresses) => addresses,
        Err(EgressError::Refused(refusal)) => return Err(state.refuse(token, refusal)),
        Err(err) => return Err(bad_gateway(&err)),
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addresses[..])).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(bad_gateway(&err)),
        Err(_) => Err(answer(
            StatusCode::GATEWAY_TIMEOUT,
            format!("connecting to `{host}:{port}` timed out"),
        )),
    }
}

/// The token of `Proxy-Authorization: Basic base64(egress:<token>)`.
fn session_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::PROXY_AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, token) = decoded.split_once(':')?;
    (user == PROXY_USER).then(|| token.to_owned())
}

fn unauthenticated() -> Response<ProxyBody> {
    let mut response = answer(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "the egress proxy serves this process's own clients only".to_owned(),
    );
    response.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"export-center-egress\""),
    );
    response
}

fn bad_gateway(err: &dyn fmt::Display) -> Response<ProxyBody> {
    answer(StatusCode::BAD_GATEWAY, format!("egress proxy: {err}"))
}

fn answer(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}
