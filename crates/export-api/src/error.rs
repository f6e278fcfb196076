//! `ApiError`: the only place errors become HTTP. A handler returns one; the problem
//! layer turns it into an RFC 9457 body with the request path and trace id.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use export_api_types::FieldError;
use export_core::{ErrorCode, PlanError, PlanErrorKind};
use export_store::StoreError;

/// When a request refused for want of storage may be sent again.
const STORAGE_FULL_RETRY_SECONDS: u64 = 60;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// Usually the code's own status; a few cases (415, 405, 416) differ.
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// The cause of a 5xx: logged with the trace id, never sent.
    pub source: Option<anyhow::Error>,
    /// Headers the answer must carry (`WWW-Authenticate`, `DPoP-Nonce`, rate limits).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            code,
            status,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            source: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// `400 ERR_EXPORT_REQUEST_INVALID` naming the offending field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::field_error(ErrorCode::RequestInvalid, field, message)
    }

    /// `400 ERR_EXPORT_EGRESS_BLOCKED`: the egress rules (SPEC §17) refuse the destination.
    pub fn egress_blocked(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::field_error(ErrorCode::EgressBlocked, field, message)
    }

    /// `400 ERR_EXPORT_BASE_MISSING`: a mirror delta without a usable base run (SPEC §15).
    pub fn base_missing(message: impl Into<String>) -> Self {
        Self::field_error(ErrorCode::BaseMissing, "mirror.baseRunId", message)
    }

    /// An error of `code` whose detail and `errors` name `field`.
    fn field_error(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let mut error = Self::new(code, format!("{field}: {message}"));
        error.errors.push(FieldError { field, message });
        error
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, format!("{} not found", what.into()))
    }

    /// `507 ERR_EXPORT_STORAGE_FULL` with `Retry-After`: the service's storage had no room
    /// for what the request writes, so nothing of it was stored. The cause is logged with
    /// the trace id, never sent.
    pub fn storage_full(source: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::new(
            ErrorCode::StorageFull,
            "the service's storage is full, so nothing was stored; retry once space is freed",
        );
        error.retry_after = Some(STORAGE_FULL_RETRY_SECONDS);
        error.source = Some(source.into());
        error
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::new(
            ErrorCode::Internal,
            "an internal error occurred; quote the trace id to the operator",
        );
        error.source = Some(source.into());
        error
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::StorageFull(_) => Self::storage_full(err),
            err => Self::internal(err),
        }
    }
}

impl From<PlanError> for ApiError {
    fn from(err: PlanError) -> Self {
        let code = match err.kind {
            PlanErrorKind::Invalid => ErrorCode::RequestInvalid,
            PlanErrorKind::TooLarge => ErrorCode::TooLarge,
        };
        let mut error = Self::new(code, err.to_string());
        error.errors.push(FieldError {
            field: err.field,
            message: err.message,
        });
        error
    }
}

/// What the problem layer needs to render the body; travels in the response extensions.
#[derive(Debug, Clone)]
pub(crate) struct ProblemDraft {
    pub(crate) code: ErrorCode,
    pub(crate) detail: String,
    pub(crate) errors: Vec<FieldError>,
    pub(crate) retry_after: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(error = format!("{source:#}"), code = %self.code, "request failed");
        }
        let mut response = self.status.into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(*name, value);
            }
        }
        // The detail of an internal error could tell what the cause says; the other
        // codes' details are written for the client.
        let detail = if self.code == ErrorCode::Internal && self.source.is_some() {
            "an internal error occurred; quote the trace id to the operator".to_owned()
        } else {
            self.detail
        };
        response.extensions_mut().insert(ProblemDraft {
            code: self.code,
            detail,
            errors: self.errors,
            retry_after: self.retry_after,
        });
        response
    }
}
