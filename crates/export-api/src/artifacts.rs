//! `GET`/`HEAD /export-center/artifacts/<runId>/<path>`: downloads through signed URLs.
//! The signature is checked before anything is read, from the key alone.

use std::ops::Range;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use export_artifacts::{validate_output_path, ArtifactKey};
use export_core::{ErrorCode, RunId, RunStatus};
use export_distribution::{UrlSigner, UrlVerifyError};
use export_store::RunOutput;
use futures::StreamExt;
use serde::Deserialize;

use crate::body::Query;
use crate::byte_range::RangeRequest;
use crate::conditional::not_modified;
use crate::error::ApiError;
use crate::state::AppState;

const PREFIX: &str = "/export-center/artifacts/";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SignedQuery {
    /// Unix seconds after which the link is refused.
    expires: Option<String>,
    /// The URL-signing key id.
    kid: Option<String>,
    /// base64url HMAC-SHA256 over `GET\n<runId>/<path>\n<expires>`.
    sig: Option<String>,
}

/// Downloads one output of a run through a signed URL (no token).
#[utoipa::path(
    get,
    path = "/export-center/artifacts/{runId}/{path}",
    tag = "artifacts",
    params(
        ("runId" = String, Path, description = "The run"),
        ("path" = String, Path, description = "The output's file name"),
        SignedQuery,
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=a-b`"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a cached copy"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range"),
        (status = 304, description = "The cached copy is current"),
        (status = 403, description = "Signature or key id wrong", body = export_api_types::Problem),
        (status = 404, description = "No such artifact", body = export_api_types::Problem),
        (status = 410, description = "Link or run expired", body = export_api_types::Problem),
        (status = 416, description = "Range not satisfiable", body = export_api_types::Problem),
    )
)]
pub(crate) async fn download_artifact(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<SignedQuery>,
) -> Result<Response, ApiError> {
    let (run_id, path, expires) = check_link(&app.urls, uri.path(), query, app.clock.now())?;
    let output = downloadable_output(&app, &run_id, &path).await?;
    let max_age = (expires - app.clock.now().timestamp()).max(0);
    let (etag, mut response_headers) = download_headers(&output, max_age);
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let range = match requested_range(&headers, &output) {
        Ok(range) => range,
        Err(unsatisfiable) => return Ok(unsatisfiable.into_response(response_headers)),
    };
    let status = content_range(&mut response_headers, range.as_ref(), output.bytes);
    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }
    let body = read(&app, &run_id, &path, range).await?;
    Ok((status, response_headers, body).into_response())
}

/// The bytes of the output (or of `range` of it), streamed from the artifact store.
async fn read(
    app: &AppState,
    run_id: &RunId,
    path: &str,
    range: Option<Range<u64>>,
) -> Result<Body, ApiError> {
    let key = ArtifactKey::for_run_output(run_id, path).map_err(ApiError::internal)?;
    let read = app.artifacts.get(&key, range).await.map_err(|err| match err {
        export_artifacts::ArtifactError::NotFound { .. } => artifact_not_found(run_id, path),
        other => ApiError::internal(other),
    })?;
    Ok(Body::from_stream(
        read.stream.map(|chunk| chunk.map_err(std::io::Error::other)),
    ))
}

/// What a download link must pass before anything is read: its raw path names a run and
/// an output path (`parse_resource`), then its signature and expiry verify from the key
/// alone. The run, the path and when the link expires (Unix seconds).
pub(crate) fn check_link(
    urls: &UrlSigner,
    raw_path: &str,
    query: SignedQuery,
    now: DateTime<Utc>,
) -> Result<(RunId, String, i64), ApiError> {
    let (run_id, path) = parse_resource(raw_path)?;
    let expires = verify_link(urls, &format!("{run_id}/{path}"), query, now)?;
    Ok((run_id, path, expires))
}

/// Checks the link's signature, then its expiry (SPEC §9.1), from the key alone;
/// returns when it expires (Unix seconds).
fn verify_link(
    urls: &UrlSigner,
    resource: &str,
    query: SignedQuery,
    now: DateTime<Utc>,
) -> Result<i64, ApiError> {
    let bad_signature = || {
        ApiError::new(
            ErrorCode::SignatureInvalid,
            "the download link's signature is not valid",
        )
    };
    let (Some(expires), Some(kid), Some(sig)) = (query.expires, query.kid, query.sig) else {
        return Err(bad_signature());
    };
    let expires: i64 = expires.parse().map_err(|_| bad_signature())?;
    urls.verify(resource, expires, &kid, &sig, now)
        .map_err(|err| match err {
            UrlVerifyError::Expired => ApiError::new(ErrorCode::Expired, "the download link has expired"),
            _ => bad_signature(),
        })?;
    Ok(expires)
}

/// The output `path` of run `run_id`, unless the run is past its retention (`410`).
/// The URL names the run, and the run id names its tenant: a link signed for one run
/// can only ever reach that run's files.
async fn downloadable_output(app: &AppState, run_id: &RunId, path: &str) -> Result<RunOutput, ApiError> {
    let tenant = &run_id.tenant;
    let not_found = || artifact_not_found(run_id, path);
    let run = app.store.get_run(tenant, run_id).await?.ok_or_else(not_found)?;
    if run.status == RunStatus::Expired || run.expires_at.is_some_and(|at| at <= app.clock.now()) {
        return Err(ApiError::new(
            ErrorCode::Expired,
            format!("run `{run_id}` is past its retention"),
        ));
    }
    app.store
        .get_output(tenant, run_id, path)
        .await?
        .ok_or_else(not_found)
}

fn artifact_not_found(run_id: &RunId, path: &str) -> ApiError {
    ApiError::not_found(format!("artifact `{path}` of run `{run_id}`"))
}

/// The output's entity tag, and the headers of every answer about it (SPEC §9.1), `304`
/// and `416` included.
fn download_headers(output: &RunOutput, max_age: i64) -> (String, HeaderMap) {
    let etag = format!("\"{}\"", output.sha256);
    let mut headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, etag.clone());
    set(
        header::CACHE_CONTROL,
        format!("private, immutable, max-age={max_age}"),
    );
    set(header::ACCEPT_RANGES, "bytes".to_owned());
    set(header::CONTENT_TYPE, output.media_type.clone());
    let file_name = output.path.rsplit('/').next().unwrap_or(&output.path);
    set(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{file_name}\""),
    );
    set(
        header::HeaderName::from_static("repr-digest"),
        format!("sha-256=:{}:", STANDARD.encode(output.sha256.0)),
    );
    set(
        header::HeaderName::from_static("x-content-sha256"),
        output.sha256.hex(),
    );
    (etag, headers)
}

/// A `Range` outside the file.
struct Unsatisfiable {
    range: String,
    path: String,
    size: u64,
}

impl Unsatisfiable {
    /// `416` with `Content-Range: bytes */<size>` and the output's headers.
    fn into_response(self, headers: HeaderMap) -> Response {
        let Self { range, path, size } = self;
        let mut error = ApiError::new(
            ErrorCode::RequestInvalid,
            format!("range `{range}` is outside the {size} bytes of `{path}`"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .into_response();
        error.headers_mut().extend(headers);
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
            error.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        error
    }
}

/// The one byte range asked for, `None` for the whole file (no `Range`, or one this
/// server ignores: several ranges, other units, malformed).
fn requested_range(headers: &HeaderMap, output: &RunOutput) -> Result<Option<Range<u64>>, Unsatisfiable> {
    let Some(text) = headers.get(header::RANGE).and_then(|value| value.to_str().ok()) else {
        return Ok(None);
    };
    match RangeRequest::parse(text, output.bytes) {
        RangeRequest::Ignored => Ok(None),
        RangeRequest::Satisfiable(range) => Ok(Some(range)),
        RangeRequest::Unsatisfiable => Err(Unsatisfiable {
            range: text.to_owned(),
            path: output.path.clone(),
            size: output.bytes,
        }),
    }
}

/// Sets `Content-Length` (and `Content-Range` for a range) and says `200` or `206`.
fn content_range(headers: &mut HeaderMap, range: Option<&Range<u64>>, size: u64) -> StatusCode {
    let (status, length) = match range {
        Some(range) => {
            // A satisfiable range is never empty and ends inside the file (`byte_range`),
            // so neither subtraction can wrap.
            let value = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, range.end - range.start)
        }
        None => (StatusCode::OK, size),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    status
}

/// Splits `/export-center/artifacts/<runId>/<path>` from the raw (still encoded) URI
/// path, refusing every trick: percent-encoding, dot segments, empty segments.
fn parse_resource(raw_path: &str) -> Result<(RunId, String), ApiError> {
    let not_found = || ApiError::not_found("artifact");
    let rest = raw_path.strip_prefix(PREFIX).ok_or_else(not_found)?;
    if rest.contains('%') || rest.contains('\\') {
        return Err(not_found());
    }
    let (run_id, path) = rest.split_once('/').ok_or_else(not_found)?;
    let run_id = RunId::parse(run_id).map_err(|_| not_found())?;
    validate_output_path(path).map_err(|_| not_found())?;
    Ok((run_id, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_tricks_are_refused() {
        let run = "export-run::acme::2025-12-06::0001";
        assert!(parse_resource(&format!("{PREFIX}{run}/advisory.json")).is_ok());
        for bad in [
            format!("{PREFIX}{run}/../other/advisory.json"),
            format!("{PREFIX}{run}/%2e%2e/advisory.json"),
            format!("{PREFIX}{run}%2Fadvisory.json"),
            format!("{PREFIX}{run}//advisory.json"),
            format!("{PREFIX}{run}/"),
            format!("{PREFIX}{run}"),
            format!("{PREFIX}export-run::acme::2025-12-06::1/advisory.json"),
        ] {
            assert!(parse_resource(&bad).is_err(), "{bad}");
        }
    }

    /// The checks the fuzz target `signed_url` drives (`crate::fuzzing`): a link signed for
    /// an output passes them until it expires, and a tampered one never does.
    #[test]
    fn signed_links_pass_the_link_checks_until_they_expire() {
        use export_distribution::UrlSigningKey;

        let urls = UrlSigner::new(vec![UrlSigningKey {
            kid: "k1".into(),
            secret: vec![7; 32],
        }])
        .unwrap();
        let run = RunId::parse("export-run::acme::2025-12-06::0001").unwrap();
        let at = |seconds| DateTime::from_timestamp(seconds, 0).unwrap();
        let link = urls.sign(&run, "advisory.json", at(1_765_036_800));
        let check =
            |link: &str, now| crate::fuzzing::check_download_link(&urls, &link.parse().unwrap(), at(now));
        let (checked_run, path, expires) = check(&link, 1_765_036_799).unwrap();
        assert_eq!(
            (checked_run, path.as_str(), expires),
            (run, "advisory.json", 1_765_036_800)
        );
        assert_eq!(check(&link, 1_765_036_800).unwrap_err().code, ErrorCode::Expired);
        let tampered = link.replace("advisory.json", "vex.json");
        assert_eq!(check(&tampered, 0).unwrap_err().code, ErrorCode::SignatureInvalid);
        let twice = format!("{link}&kid=k1");
        assert_eq!(check(&twice, 0).unwrap_err().code, ErrorCode::RequestInvalid);
    }
}
