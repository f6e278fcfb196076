//! Every destination is judged after resolution and before any connection: listeners
//! that the rules refuse must never see a connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use export_core::{AddressClass, EgressPolicy, EgressRefusal};
use export_egress::{resolve, EgressError, EgressProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback HTTP server that answers `hello` and counts the connections it accepts.
struct Listener {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
                        .await;
                });
            }
        });
        Self { address, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn through(proxy_url: &str) -> reqwest::Client {
    export_egress::install_crypto_provider();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy_url).unwrap())
        .build()
        .unwrap()
}

fn open_listing(entries: &[String]) -> EgressPolicy {
    EgressPolicy {
        sealed: false,
        allow: entries.to_vec(),
    }
}

#[tokio::test]
async fn an_allowlisted_loopback_endpoint_is_reached_over_plain_http_by_its_session() {
    let server = Listener::start().await;
    let proxy = EgressProxy::start(open_listing(&[server.address.to_string()]))
        .await
        .unwrap();
    let session = proxy.session(Some(&server.address.to_string()));
    let response = through(&session.proxy_url())
        .get(format!("http://{}/v2/", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");
    assert_eq!(server.connections(), 1);
    assert!(session.take_refusal().is_none());
}

#[tokio::test]
async fn internal_addresses_not_on_the_allowlist_are_refused_before_any_connection() {
    let listed = Listener::start().await;
    let other = Listener::start().await;
    let proxy = EgressProxy::start(open_listing(&[listed.address.to_string()]))
        .await
        .unwrap();
    let session = proxy.session(Some(&other.address.to_string()));
    let client = through(&session.proxy_url());

    // Plain HTTP, allowed by the session but not by the rules.
    let response = client
        .get(format!("http://{}/token", other.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(matches!(
        session.take_refusal(),
        Some(EgressRefusal::Internal {
            class: AddressClass::Loopback,
            ..
        })
    ));
    // HTTPS, through a tunnel the proxy does not open.
    assert!(client
        .get(format!("https://{}/token", other.address))
        .send()
        .await
        .is_err());
    assert!(session.take_refusal().is_some());
    assert_eq!(other.connections(), 0, "the refused listener saw no connection");
}

#[tokio::test]
async fn names_are_judged_by_the_addresses_they_resolve_to() {
    // A name that is not `localhost` but resolves to loopback, as a rebinding name would.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    let name = hosts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address: std::net::IpAddr = fields.next()?.parse().ok()?;
            address
                .is_loopback()
                .then(|| fields.find(|name| !name.contains("localhost") && !name.starts_with('#')))?
        })
        .next()
        .expect("/etc/hosts names a loopback address with a name other than localhost")
        .to_owned();
    let server = Listener::start().await;
    let policy = open_listing(&[]);
    assert!(
        policy.check_host(&name, Some(server.address.port())).is_ok(),
        "`{name}` passes the request-time check"
    );
    let refused = resolve(&policy, &name, server.address.port()).await.unwrap_err();
    assert!(
        matches!(refused, EgressError::Refused(EgressRefusal::Internal { .. })),
        "{refused}"
    );

    let proxy = EgressProxy::start(policy).await.unwrap();
    let session = proxy.session(Some(&format!("{name}:{}", server.address.port())));
    let response = through(&session.proxy_url())
        .get(format!("http://{name}:{}/", server.address.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(server.connections(), 0);

    // Listed by address, the same name is reached.
    let listed = open_listing(&[server.address.to_string()]);
    let addresses = resolve(&listed, &name, server.address.port()).await.unwrap();
    assert!(addresses.iter().all(|address| address.ip().is_loopback()));
}

#[tokio::test]
async fn plain_http_reaches_only_the_endpoint_the_session_was_opened_for() {
    let first = Listener::start().await;
    let second = Listener::start().await;
    let proxy = EgressProxy::start(open_listing(&[
        first.address.to_string(),
        second.address.to_string(),
    ]))
    .await
    .unwrap();
    let session = proxy.session(Some(&first.address.to_string()));
    let response = through(&session.proxy_url())
        .get(format!("http://{}/", second.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(matches!(
        session.take_refusal(),
        Some(EgressRefusal::PlainHttp { .. })
    ));
    assert_eq!(second.connections(), 0);
}

#[tokio::test]
async fn only_live_sessions_may_use_the_proxy() {
    let server = Listener::start().await;
    let proxy = EgressProxy::start(open_listing(&[server.address.to_string()]))
        .await
        .unwrap();
    let session = proxy.session(Some(&server.address.to_string()));
    let url = session.proxy_url();
    let anonymous = url.replace(&url[7..url.find('@').unwrap() + 1], "");
    let response = through(&anonymous)
        .get(format!("http://{}/", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 407);
    drop(session);
    let response = through(&url)
        .get(format!("http://{}/", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        407,
        "a dropped session's credential is revoked"
    );
    assert_eq!(server.connections(), 0);
}
