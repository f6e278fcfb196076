//! Request extractors with the contract's limits and error shapes: a JSON body read no
//! further than the size limit, the `Idempotency-Key` header, and `Query` and `Path`
//! whose rejections are problems like every other error.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use export_core::{canonical_json, ErrorCode, Sha256Digest};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body, checked in the order of SPEC §2.1 steps 1-2, with the
/// fingerprint of its canonical form (SPEC §2.2).
pub(crate) struct JsonBody<T> {
    pub(crate) value: T,
    pub(crate) fingerprint: Sha256Digest,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_body_bytes;
        let too_large = || {
            ApiError::new(
                ErrorCode::TooLarge,
                format!("the request body is larger than {limit} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|text| text.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let bytes = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::invalid_field(
                    "body",
                    "the request body could not be read",
                ))
            }
        };
        let is_json = content_type.as_deref().is_some_and(|kind| {
            kind == "application/json" || (kind.starts_with("application/") && kind.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::RequestInvalid,
                "the content type must be application/json",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|err| ApiError::invalid_field("body", format!("malformed JSON: {err}")))?;
        let fingerprint = Sha256Digest::of(&canonical_json(&json));
        let value = serde_path_to_error::deserialize(json).map_err(|err| {
            let path = err.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::invalid_field(field, err.into_inner().to_string())
        })?;
        Ok(Self { value, fingerprint })
    }
}

/// The optional `Idempotency-Key` header: 1-255 printable ASCII characters.
pub(crate) struct IdempotencyKey(pub(crate) Option<String>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                "must be 1-255 printable ASCII characters",
            ));
        }
        Ok(Self(Some(String::from_utf8_lossy(bytes).into_owned())))
    }
}

/// axum's `Query`, whose rejection (a duplicated field, a value of the wrong type) is a
/// `400` problem rather than axum's plain-text answer.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub(crate) T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid_field("query", rejection.body_text())
    }
}

/// axum's `Path`, whose rejection (a segment that is not UTF-8 once percent-decoded) is
/// the `404` of any malformed id rather than axum's plain-text `400`.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub(crate) T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::not_found(format!("resource ({})", rejection.body_text()))
    }
}
