//! What the admin handlers share: reading a bounded body, and finding the
//! function a route names.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::state::AppState;
use crate::error::ApiError;
use crate::names::{AccountName, FunctionName};
use crate::runtime::body::{MinRate, RateBody};

/// Largest JSON body the admin API reads.
const JSON_LIMIT: usize = 1024 * 1024;

/// The error for a function `account` does not have.
pub(super) fn no_function(function: &FunctionName) -> ApiError {
    ApiError::NotFound(format!("no function {function}"))
}

/// The registry as it is now, once `function` is known to exist in `account`.
pub(super) fn snapshot_with(
    state: &AppState,
    account: &AccountName,
    function: &FunctionName,
) -> Result<Arc<crate::registry::Snapshot>, ApiError> {
    let snapshot = state.registry.snapshot();
    if snapshot.function(account, function).is_none() {
        return Err(no_function(function));
    }
    Ok(snapshot)
}

/// The whole body, at most `limit` bytes, arriving at `min_rate` at least.
pub(super) async fn read_body(req: Request<Incoming>, limit: usize, min_rate: MinRate) -> Result<Bytes, ApiError> {
    let too_slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = RateBody::new(req.into_body(), min_rate, too_slow.clone());
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit: limit as u64 })
        }
        Err(_) if too_slow.load(std::sync::atomic::Ordering::Acquire) => Err(min_rate.error()),
        Err(err) => Err(ApiError::BadRequest(format!("could not read the request body: {err}"))),
    }
}

/// The body parsed as JSON, at most 1 MiB.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    config: &crate::config::ServeConfig,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let bytes = read_body(req, JSON_LIMIT, config.min_body_rate).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
