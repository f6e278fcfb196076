//! `GET`/`HEAD /export-center/artifacts/<runId>/<path>`: downloads through signed URLs.
//! The signature is checked before anything is read, from the key alone.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use export_artifacts::{validate_output_path, ArtifactKey};
use export_core::{ErrorCode, RunId, RunStatus};
use export_distribution::UrlVerifyError;
use futures::StreamExt;
use serde::Deserialize;

use crate::byte_range::RangeRequest;
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
    let (run_id, path) = parse_resource(uri.path())?;
    let resource = format!("{run_id}/{path}");

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
    let now = app.clock.now();
    app.urls
        .verify(&resource, expires, &kid, &sig, now)
        .map_err(|err| match err {
            UrlVerifyError::Expired => ApiError::new(ErrorCode::Expired, "the download link has expired"),
            _ => bad_signature(),
        })?;

    // The URL names the run, and the run id names its tenant: a link signed for one
    // run can only ever reach that run's files.
    let tenant = &run_id.tenant;
    let not_found = || ApiError::not_found(format!("artifact `{path}` of run `{run_id}`"));
    let run = app.store.get_run(tenant, &run_id).await?.ok_or_else(not_found)?;
    if run.status == RunStatus::Expired || run.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::new(
            ErrorCode::Expired,
            format!("run `{run_id}` is past its retention"),
        ));
    }
    let output = app
        .store
        .get_output(tenant, &run_id, &path)
        .await?
        .ok_or_else(not_found)?;

    let etag = format!("\"{}\"", output.sha256);
    let max_age = (expires - now.timestamp()).max(0);
    let mut response_headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    };
    set(header::ETAG, etag.clone());
    set(
        header::CACHE_CONTROL,
        format!("private, immutable, max-age={max_age}"),
    );
    set(header::ACCEPT_RANGES, "bytes".to_owned());
    set(header::CONTENT_TYPE, output.media_type.clone());
    let file_name = path.rsplit('/').next().unwrap_or(&path);
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

    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }

    let size = output.bytes;
    let range = match headers.get(header::RANGE).and_then(|value| value.to_str().ok()) {
        None => None,
        Some(text) => match RangeRequest::parse(text, size) {
            RangeRequest::Ignored => None,
            RangeRequest::Satisfiable(range) => Some(range),
            RangeRequest::Unsatisfiable => {
                let mut error = ApiError::new(
                    ErrorCode::RequestInvalid,
                    format!("range `{text}` is outside the {size} bytes of `{path}`"),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .into_response();
                error.headers_mut().extend(response_headers);
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    error.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(error);
            }
        },
    };
    let (status, length) = match &range {
        Some(range) => {
            // A satisfiable range is never empty and ends inside the file (`byte_range`),
            // so neither subtraction can wrap.
            let value = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response_headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, range.end - range.start)
        }
        None => (StatusCode::OK, size),
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));

    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }
    let key = ArtifactKey::for_run_output(&run_id, &path).map_err(ApiError::internal)?;
    let read = app.artifacts.get(&key, range).await.map_err(|err| match err {
        export_artifacts::ArtifactError::NotFound { .. } => not_found(),
        other => ApiError::internal(other),
    })?;
    let body = Body::from_stream(read.stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    Ok((status, response_headers, body).into_response())
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

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
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
}
