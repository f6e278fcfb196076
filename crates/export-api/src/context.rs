//! The request context: who is calling, for which tenant and project, with which
//! scopes. Handlers take a `Caller` and never read identity headers themselves, so the
//! authenticated caller of the DPoP layer plugs in here without touching them.

use std::borrow::Cow;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use export_auth::{public_request_url, Authenticator, Principal, RequestFacts};
use export_core::{ErrorCode, ProjectId, TenantId};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) const TENANT_HEADER: &str = "x-stellaops-tenant";
pub(crate) const LEGACY_TENANT_HEADER: &str = "x-stella-tenant";
pub(crate) const PROJECT_HEADER: &str = "x-stellaops-project";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ExportRead,
    ExportWrite,
    /// Manages the tenant's profiles, schedules and webhooks (SPEC §16).
    ExportAdmin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExportRead => "export:read",
            Self::ExportWrite => "export:write",
            Self::ExportAdmin => "export:admin",
        }
    }
}

/// The caller of a tenant-scoped endpoint.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub project: Option<ProjectId>,
    /// The token's `sub`; scopes idempotency keys.
    pub subject: String,
    pub scopes: Vec<Scope>,
    /// The access token's `exp`; `None` when authentication is disabled. Event streams
    /// end then.
    pub token_expires: Option<DateTime<Utc>>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::ScopeMismatch,
                format!("this request needs the `{}` scope", scope.as_str()),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Authentication comes first: an anonymous request learns nothing else.
        let principal = match &state.auth {
            Some(auth) => Some(authenticate(parts, state, auth).await?),
            None => None,
        };
        let tenant = tenant_from_headers(parts)?;
        let project = match header_text(parts, PROJECT_HEADER)? {
            Some(text) => Some(
                ProjectId::parse(text)
                    .map_err(|err| ApiError::invalid_field("X-StellaOps-Project", err.to_string()))?,
            ),
            None => None,
        };
        let Some(principal) = principal else {
            // Authentication disabled (benchmarks only): the tenant header alone.
            return Ok(Caller {
                tenant,
                project,
                subject: "anonymous".to_owned(),
                scopes: vec![Scope::ExportRead, Scope::ExportWrite, Scope::ExportAdmin],
                token_expires: None,
            });
        };
        if principal.tenant != tenant {
            return Err(ApiError::new(
                ErrorCode::TenantMismatch,
                "the `X-StellaOps-Tenant` header names another tenant than the access token",
            ));
        }
        let scopes = [Scope::ExportRead, Scope::ExportWrite, Scope::ExportAdmin]
            .into_iter()
            .filter(|scope| principal.has_scope(scope.as_str()))
            .collect();
        Ok(Caller {
            tenant,
            project,
            subject: principal.subject,
            scopes,
            token_expires: Some(principal.token_expires),
        })
    }
}

/// Verifies the DPoP-bound access token and its proof for this request; the proof's
/// `htu` is checked against the public URL, so the service works behind a proxy.
async fn authenticate(parts: &Parts, state: &AppState, auth: &Authenticator) -> Result<Principal, ApiError> {
    // Several headers of one name are joined with `,` (then refused by the verifier);
    // the usual single header is borrowed, not copied.
    let joined = |name: &str| {
        let mut values = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let first = values.next()?;
        let mut joined = Cow::Borrowed(first);
        for value in values {
            let text = joined.to_mut();
            text.push(',');
            text.push_str(value);
        }
        Some(joined)
    };
    let authorization = joined("authorization");
    let dpop = joined("dpop");
    let public_url = public_request_url(&state.config.public_base_url, parts.uri.path());
    let facts = RequestFacts {
        method: parts.method.as_str(),
        public_url: &public_url,
        authorization: authorization.as_deref(),
        dpop: dpop.as_deref(),
        now: state.clock.now(),
    };
    auth.authenticate(&facts).await.map_err(|err| {
        if err.is_unauthenticated() {
            let detail = err.description().unwrap_or("authentication failed").to_owned();
            let mut error = ApiError::new(ErrorCode::Unauthenticated, detail)
                .with_header("www-authenticate", auth.www_authenticate(&err));
            if let Some(nonce) = err.dpop_nonce() {
                error = error.with_header("dpop-nonce", nonce);
            }
            error
        } else {
            ApiError::internal(anyhow::anyhow!("authentication backend: {err}"))
                .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        }
    })
}

fn tenant_from_headers(parts: &Parts) -> Result<TenantId, ApiError> {
    let primary = header_text(parts, TENANT_HEADER)?;
    let legacy = header_text(parts, LEGACY_TENANT_HEADER)?;
    let text = match (primary, legacy) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid_field(
                "X-StellaOps-Tenant",
                "`X-StellaOps-Tenant` and `X-Stella-Tenant` name different tenants",
            ))
        }
        (Some(text), _) | (None, Some(text)) => text,
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::TenantRequired,
                "the `X-StellaOps-Tenant` header is required",
            ))
        }
    };
    TenantId::parse(text).map_err(|err| ApiError::new(ErrorCode::TenantRequired, err.to_string()))
}

fn header_text<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, ApiError> {
    match parts.headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim()))
            .map_err(|_| ApiError::invalid_field(name, "the header is not printable ASCII")),
    }
}
