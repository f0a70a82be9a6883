//! The errors a client can see: one type, each variant one HTTP status and one
//! stable `code`. Internal causes are logged, never sent.

use http::StatusCode;

/// An error answered to an HTTP client as `{"error":{"code","message"}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The sub-tenant id breaks the id rule.
    #[error("{0}")]
    InvalidSubTenant(String),
    /// A multi-tenant function was called without a sub-tenant.
    #[error(
        "this function serves sub-tenants only: send a sub-tenant token or an account key with x-stratus-sub-tenant"
    )]
    SubTenantRequired,
    /// The upload is not a component the host can run.
    #[error("{0}")]
    InvalidComponent(String),
    /// The component imports interfaces the host does not provide.
    #[error("the component imports what Stratus does not provide: {}", .0.join(", "))]
    UnknownImports(Vec<String>),
    /// No valid credential where one is needed.
    #[error("{0}")]
    Unauthorized(String),
    /// The credential is valid but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A cross-account alias whose grant was revoked.
    #[error("the owner revoked the grant behind this alias")]
    GrantRevoked,
    /// Nothing by that name is visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The request body exceeds its limit.
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Something stored would exceed a size limit (env, an account's blobs).
    #[error("{0}")]
    TooLarge(String),
    /// The request body came in slower than the host's minimum rate.
    #[error("the request body came in slower than {min_rate} bytes/s (after a grace of {grace_ms} ms); send it faster")]
    RequestTimeout {
        /// The minimum rate, bytes per second.
        min_rate: u64,
        /// The grace before the rate applies, ms.
        grace_ms: u64,
    },
    /// A per-account or per-sub-tenant cap is reached.
    #[error("{message}")]
    QuotaExceeded {
        /// What was exceeded.
        message: String,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
    /// Something failed inside the host; the cause is logged only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// The guest trapped or answered with an invalid response.
    #[error("{0}")]
    GuestError(String),
    /// The host is shutting down or saturated.
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
    /// The invocation ran past its deadline.
    #[error("the function did not answer within {timeout_ms} ms{logs}")]
    Timeout {
        /// The deadline that passed.
        timeout_ms: u64,
        /// Where its owner reads what it printed (empty when there is no
        /// invocation to point at).
        logs: String,
    },
    /// The host shut down before the invocation answered.
    #[error("the host shut down: the function did not answer within the {grace_ms} ms shutdown grace; retry")]
    CutOff {
        /// The grace period that passed.
        grace_ms: u64,
    },
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidSubTenant(_)
            | ApiError::SubTenantRequired
            | ApiError::InvalidComponent(_)
            | ApiError::UnknownImports(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::GrantRevoked => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } | ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::GuestError(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout { .. } | ApiError::CutOff { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidSubTenant(_) => "invalid_sub_tenant",
            ApiError::SubTenantRequired => "sub_tenant_required",
            ApiError::InvalidComponent(_) => "invalid_component",
            ApiError::UnknownImports(_) => "unknown_imports",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::GrantRevoked => "grant_revoked",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } | ApiError::TooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::Internal(_) => "internal",
            ApiError::GuestError(_) => "guest_error",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Timeout { .. } | ApiError::CutOff { .. } => "timeout",
        }
    }

    /// Seconds for a `Retry-After` header, where the status calls for one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::QuotaExceeded { retry_after, .. } | ApiError::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::UnknownImports(imports) = self {
            error["imports"] = serde_json::json!(imports);
        }
        serde_json::json!({ "error": error })
    }

    /// Wraps an internal failure.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<crate::names::NameError> for ApiError {
    fn from(err: crate::names::NameError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = ApiError::internal(anyhow::anyhow!("disk /secret/path is full"));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.body().to_string().contains("secret"));
    }
}
