//! The error codes of the contract (SPEC §8), shared by the API (as HTTP problems) and
//! the run engine (as run failure codes).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    #[serde(rename = "ERR_EXPORT_REQUEST_INVALID")]
    RequestInvalid,
    #[serde(rename = "ERR_EXPORT_PROFILE_NOT_FOUND")]
    ProfileNotFound,
    #[serde(rename = "ERR_EXPORT_NOT_FOUND")]
    NotFound,
    #[serde(rename = "ERR_EXPORT_TOO_LARGE")]
    TooLarge,
    #[serde(rename = "ERR_EXPORT_RATE_LIMIT")]
    RateLimit,
    #[serde(rename = "ERR_EXPORT_DISTRIBUTION_FAILED")]
    DistributionFailed,
    #[serde(rename = "ERR_EXPORT_EXPIRED")]
    Expired,
    #[serde(rename = "ERR_EXPORT_SIGNATURE_INVALID")]
    SignatureInvalid,
    #[serde(rename = "ERR_EXPORT_CONFLICT")]
    Conflict,
    #[serde(rename = "ERR_EXPORT_IDEMPOTENCY_MISMATCH")]
    IdempotencyMismatch,
    #[serde(rename = "ERR_EXPORT_EGRESS_BLOCKED")]
    EgressBlocked,
    #[serde(rename = "ERR_EXPORT_BASE_MISSING")]
    BaseMissing,
    #[serde(rename = "ERR_EXPORT_TIMEOUT")]
    Timeout,
    /// The service's storage (the artifact store or the database) cannot take a write:
    /// no space left, a quota reached, or an object store refusing writes. Retryable once
    /// space returns; nothing of the refused write is kept.
    #[serde(rename = "ERR_EXPORT_STORAGE_FULL")]
    StorageFull,
    #[serde(rename = "ERR_EXPORT_INTERNAL")]
    Internal,
    #[serde(rename = "ERR_UNAUTHENTICATED")]
    Unauthenticated,
    #[serde(rename = "ERR_TENANT_REQUIRED")]
    TenantRequired,
    #[serde(rename = "ERR_TENANT_MISMATCH")]
    TenantMismatch,
    #[serde(rename = "ERR_SCOPE_MISMATCH")]
    ScopeMismatch,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        Self::RequestInvalid,
        Self::ProfileNotFound,
        Self::NotFound,
        Self::TooLarge,
        Self::RateLimit,
        Self::DistributionFailed,
        Self::Expired,
        Self::SignatureInvalid,
        Self::Conflict,
        Self::IdempotencyMismatch,
        Self::EgressBlocked,
        Self::BaseMissing,
        Self::Timeout,
        Self::StorageFull,
        Self::Internal,
        Self::Unauthenticated,
        Self::TenantRequired,
        Self::TenantMismatch,
        Self::ScopeMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestInvalid => "ERR_EXPORT_REQUEST_INVALID",
            Self::ProfileNotFound => "ERR_EXPORT_PROFILE_NOT_FOUND",
            Self::NotFound => "ERR_EXPORT_NOT_FOUND",
            Self::TooLarge => "ERR_EXPORT_TOO_LARGE",
            Self::RateLimit => "ERR_EXPORT_RATE_LIMIT",
            Self::DistributionFailed => "ERR_EXPORT_DISTRIBUTION_FAILED",
            Self::Expired => "ERR_EXPORT_EXPIRED",
            Self::SignatureInvalid => "ERR_EXPORT_SIGNATURE_INVALID",
            Self::Conflict => "ERR_EXPORT_CONFLICT",
            Self::IdempotencyMismatch => "ERR_EXPORT_IDEMPOTENCY_MISMATCH",
            Self::EgressBlocked => "ERR_EXPORT_EGRESS_BLOCKED",
            Self::BaseMissing => "ERR_EXPORT_BASE_MISSING",
            Self::Timeout => "ERR_EXPORT_TIMEOUT",
            Self::StorageFull => "ERR_EXPORT_STORAGE_FULL",
            Self::Internal => "ERR_EXPORT_INTERNAL",
            Self::Unauthenticated => "ERR_UNAUTHENTICATED",
            Self::TenantRequired => "ERR_TENANT_REQUIRED",
            Self::TenantMismatch => "ERR_TENANT_MISMATCH",
            Self::ScopeMismatch => "ERR_SCOPE_MISMATCH",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// The HTTP status this code answers with; run-only codes (`ERR_EXPORT_TIMEOUT`)
    /// answer 500 if they ever reach HTTP.
    pub fn http_status(self) -> u16 {
        match self {
            Self::RequestInvalid | Self::EgressBlocked | Self::BaseMissing | Self::TenantRequired => 400,
            Self::Unauthenticated => 401,
            Self::SignatureInvalid | Self::TenantMismatch | Self::ScopeMismatch => 403,
            Self::ProfileNotFound | Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Expired => 410,
            Self::TooLarge => 413,
            Self::IdempotencyMismatch => 422,
            Self::RateLimit => 429,
            Self::DistributionFailed => 502,
            // RFC 4918 §11.5: the server is unable to store what the request needs.
            Self::StorageFull => 507,
            Self::Timeout | Self::Internal => 500,
        }
    }

    /// A short human title for problem responses.
    pub fn title(self) -> &'static str {
        match self {
            Self::RequestInvalid => "Invalid request",
            Self::ProfileNotFound => "Profile not found",
            Self::NotFound => "Not found",
            Self::TooLarge => "Too large",
            Self::RateLimit => "Rate limit exceeded",
            Self::DistributionFailed => "Distribution failed",
            Self::Expired => "Expired",
            Self::SignatureInvalid => "Invalid signature",
            Self::Conflict => "Conflict",
            Self::IdempotencyMismatch => "Idempotency key reused with another request",
            Self::EgressBlocked => "Egress blocked",
            Self::BaseMissing => "Mirror base missing",
            Self::Timeout => "Timed out",
            Self::StorageFull => "Insufficient storage",
            Self::Internal => "Internal error",
            Self::Unauthenticated => "Unauthenticated",
            Self::TenantRequired => "Tenant required",
            Self::TenantMismatch => "Tenant mismatch",
            Self::ScopeMismatch => "Missing scope",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
