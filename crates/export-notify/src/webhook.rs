//! One attempt of a webhook delivery: a signed `POST` of the stored body through the
//! egress proxy, redirects not followed, the answer reduced to its status and at most a
//! sanitized excerpt.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use export_core::{remote_excerpt, NotificationEvent};
use export_egress::EgressProxy;
use export_store::AttemptResult;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};

use crate::signature::{signature_header, SIGNATURE_HEADER};

/// How much of a failed answer's body is read for its excerpt.
const EXCERPT_BYTES: usize = 4096;

/// What one webhook attempt sends.
pub(crate) struct WebhookRequest<'a> {
    pub(crate) url: &'a str,
    pub(crate) secret: &'a str,
    pub(crate) notification_id: &'a str,
    pub(crate) event: NotificationEvent,
    pub(crate) body: &'a [u8],
}

/// Sends `request` at `now`; a `2xx` answer is a delivery, anything else (a redirect, an
/// error status, a refusal of the egress rules, a timeout) a failure to retry.
pub(crate) async fn attempt(
    egress: &EgressProxy,
    request: &WebhookRequest<'_>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> AttemptResult {
    let started = Instant::now();
    let (http_status, error) = send(egress, request, now, timeout).await;
    AttemptResult {
        at: now,
        duration: started.elapsed(),
        delivered: error.is_none(),
        http_status,
        error,
    }
}

async fn send(
    egress: &EgressProxy,
    request: &WebhookRequest<'_>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> (Option<u16>, Option<String>) {
    // Plain HTTP only to the URL's own host (which creation allowed only when the
    // allowlist lists it); every other destination, redirects included, needs TLS.
    let plain_http = request
        .url
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    let session = egress.session(plain_http);
    let client = match client(&session.proxy_url(), timeout) {
        Ok(client) => client,
        Err(err) => return (None, Some(format!("client: {err}"))),
    };
    let answer = client
        .post(request.url)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "export-center-webhooks/1")
        .header("X-Export-Center-Event", request.event.as_str())
        .header("X-Export-Center-Delivery", request.notification_id)
        .header(
            SIGNATURE_HEADER,
            signature_header(request.secret.as_bytes(), now.timestamp(), request.body),
        )
        .body(request.body.to_vec())
        .send()
        .await;
    if let Some(refusal) = session.take_refusal() {
        return (None, Some(format!("egress_blocked: {refusal}")));
    }
    match answer {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => {
            let status = response.status().as_u16();
            let class = if response.status().is_redirection() {
                "redirect_not_followed"
            } else {
                "http_status"
            };
            let excerpt = excerpt(response).await;
            let error = if excerpt.is_empty() {
                format!("{class}: {status}")
            } else {
                format!("{class}: {status}: {excerpt}")
            };
            (Some(status), Some(error))
        }
        Err(err) if err.is_timeout() => (
            None,
            Some(format!("timeout: no answer within {}s", timeout.as_secs())),
        ),
        Err(err) if err.is_connect() => (
            None,
            Some("connect: the receiver could not be reached".to_owned()),
        ),
        Err(_) => (
            None,
            Some("request: the request failed before an answer".to_owned()),
        ),
    }
}

fn client(proxy_url: &str, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    export_egress::install_crypto_provider();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy_url)?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
}

/// At most `EXCERPT_BYTES` of the answer, as `remote_excerpt` keeps remote text.
async fn excerpt(response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= EXCERPT_BYTES {
            bytes.truncate(EXCERPT_BYTES);
            break;
        }
    }
    remote_excerpt(&String::from_utf8_lossy(&bytes))
}
