//! The outermost middleware: gives every request a trace id and a span, renders every
//! error as `application/problem+json` (including axum's own 404, 405 and panics), and
//! stamps `X-Sealed-Mode` on every response.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use export_api_types::Problem;
use export_core::ErrorCode;
use tracing::Instrument;

use crate::error::ProblemDraft;
use crate::state::AppState;

pub(crate) async fn problems(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let trace_id = trace_id(&request);
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned());
    let span = tracing::info_span!("request", trace_id = %trace_id, method = %method, path = %path);
    let started = Instant::now();

    let mut response = next.run(request).instrument(span.clone()).await;

    render_problem(&mut response, &path, &trace_id, &span);
    let headers = response.headers_mut();
    headers.insert(
        "x-sealed-mode",
        HeaderValue::from_static(if state.config.sealed { "true" } else { "false" }),
    );
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        headers.insert("x-trace-id", value);
    }
    record(&method, route, response.status(), started);
    response
}

/// Gives an error response its problem body: the handler's `ApiError`, or for an empty
/// error response (axum's 404 and 405, the panic catcher) one made from its status. An
/// error response that carries its own body (readiness) keeps it.
fn render_problem(response: &mut Response, path: &str, trace_id: &str, span: &tracing::Span) {
    let draft = response.extensions_mut().remove::<ProblemDraft>();
    let status = response.status();
    let bare = !response.headers().contains_key(header::CONTENT_TYPE);
    let draft = draft.or_else(|| {
        ((status.is_client_error() || status.is_server_error()) && bare).then(|| fallback(status, path))
    });
    let Some(draft) = draft else {
        return;
    };
    let problem = Problem {
        kind: format!("urn:export-center:error:{}", draft.code),
        title: draft.code.title().to_owned(),
        status: status.as_u16(),
        detail: draft.detail,
        instance: path.to_owned(),
        code: draft.code.to_string(),
        trace_id: trace_id.to_owned(),
        errors: draft.errors,
        retry_after_seconds: draft.retry_after,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = Body::from(body);
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "answered with a server error"));
    }
}

/// The request metrics, by method, route template and status.
fn record(method: &Method, route: Option<String>, status: StatusCode, started: Instant) {
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
}

/// The problem for an error response that no handler described: axum's unmatched
/// route and wrong method, and the panic catcher's 500.
fn fallback(status: StatusCode, path: &str) -> ProblemDraft {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, format!("no resource at `{path}`")),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::RequestInvalid,
            format!("method not allowed on `{path}`"),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::RequestInvalid,
            "the request was not completed within the server's time limit".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::TooLarge, "the request body is too large".to_owned()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::RequestInvalid,
            "the content type must be application/json".to_owned(),
        ),
        status if status.is_server_error() => (
            ErrorCode::Internal,
            "an internal error occurred; quote the trace id to the operator".to_owned(),
        ),
        _ => (ErrorCode::RequestInvalid, "the request is invalid".to_owned()),
    };
    ProblemDraft {
        code,
        detail,
        errors: Vec::new(),
        retry_after: None,
    }
}

/// The W3C `traceparent` trace id when the caller sent one, else a fresh random id.
fn trace_id(request: &Request) -> String {
    let from_header = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && *id != "0".repeat(32));
    match from_header {
        Some(id) => id.to_ascii_lowercase(),
        None => hex_id(rand::random::<[u8; 16]>()),
    }
}

fn hex_id(bytes: [u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
