//! Building responses: JSON bodies, errors, and the one body type the server uses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::error::ApiError;

/// The body type of every response (guest bodies stream through it).
pub type Body = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// An empty `204`.
pub fn no_content() -> Response<Body> {
    let mut res = Response::new(full(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

/// The JSON error response; internal causes go to the log only.
pub fn error(err: &ApiError) -> Response<Body> {
    if let ApiError::Internal(cause) = err {
        tracing::error!(error = format!("{cause:#}"), "internal error");
    }
    let mut res = json(err.status(), &err.body());
    if let Some(secs) = err.retry_after() {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// Registry outcomes as the client sees them: one status each.
/// What etcd says when its backend quota is reached.
pub const ETCD_FULL: &str = "database space exceeded";

impl From<crate::registry::RegistryError> for ApiError {
    fn from(err: crate::registry::RegistryError) -> Self {
        use crate::registry::RegistryError as E;
        use crate::registry::store::StoreError;
        match err {
            E::Invalid(message) => ApiError::BadRequest(message),
            E::NotFound(message) => ApiError::NotFound(message),
            E::Forbidden(message) => ApiError::Forbidden(message),
            E::Conflict(message) => ApiError::Conflict(message),
            E::TooLarge(message) => ApiError::TooLarge(message),
            E::Busy(message) => ApiError::Unavailable {
                message,
                retry_after: 1,
            },
            E::Store(StoreError::Conflict) => ApiError::Unavailable {
                message: "the registry changed while this was prepared; retry".into(),
                retry_after: 1,
            },
            E::Store(StoreError::Backend(message)) if message.contains(ETCD_FULL) => {
                tracing::error!(%message, "etcd is full");
                ApiError::Unavailable {
                    message: "the cluster's store is full (etcd's backend quota is reached, alarm NOSPACE): \
                              reads still work, writes do not until the operator frees space (docs/cluster.md)"
                        .into(),
                    retry_after: 60,
                }
            }
            E::Store(StoreError::Backend(message)) => {
                tracing::warn!(%message, "the registry's store failed");
                ApiError::Unavailable {
                    message: "the registry's store is unreachable; reads still work, writes do not: retry".into(),
                    retry_after: 2,
                }
            }
            E::Store(err) => ApiError::internal(err),
            E::Internal(err) => ApiError::Internal(err),
        }
    }
}
