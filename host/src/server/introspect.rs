//! `POST /v1/introspect` (RFC 7662): is a token alive, and what does it say?
//!
//! Authenticated with a key of the token's owner or caller account; any other
//! account learns only `{"active": false}`, as for a dead or forged token.

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::respond::{self, Body};
use super::state::AppState;
use crate::credentials::tokens::{InvocationClaims, TokenKind, Tokens};
use crate::error::ApiError;
use crate::runtime::body::RateBody;
use crate::tenancy::{self, Principal};

/// Answers an introspection request.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    match introspect(state, req).await {
        Ok(body) => respond::json(StatusCode::OK, &body),
        Err(err) => respond::error(&err),
    }
}

async fn introspect<B>(state: &AppState, req: Request<B>) -> Result<serde_json::Value, ApiError>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    if req.method() != http::Method::POST {
        return Err(ApiError::BadRequest(
            "introspection takes POST with a form body `token=…`".into(),
        ));
    }
    let snapshot = state.registry.snapshot();
    let principal = tenancy::authenticate_admin(req.headers(), &snapshot, &state.operator)?;
    // Held to the same minimum rate as every other body.
    let too_slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let min_rate = state.config.min_body_rate;
    let body = RateBody::new(req.into_body(), min_rate, too_slow.clone());
    let body = match Limited::new(body, 64 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) if too_slow.load(std::sync::atomic::Ordering::Acquire) => return Err(min_rate.error()),
        Err(e) => return Err(ApiError::BadRequest(format!("could not read the form: {e}"))),
    };
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::BadRequest("the form needs `token`".into()))?;
    let inactive = json!({ "active": false });
    let may_see = |accounts: &[&str]| match &principal {
        Principal::Operator => true,
        Principal::Account { account, .. } => accounts.contains(&account.as_str()),
    };

    match Tokens::kind_of(&token) {
        Some(TokenKind::Invocation) => {
            let Ok(claims) = state
                .tokens
                .verify_any_audience::<InvocationClaims>(&token, TokenKind::Invocation)
            else {
                return Ok(inactive);
            };
            let stands = state
                .runtime
                .lineage(&claims.registered.jti)
                .is_some_and(|lineage| tenancy::invocation_stands(&snapshot, &claims.owner, &claims.caller, &lineage));
            if !may_see(&[&claims.owner, &claims.caller]) || !stands {
                return Ok(inactive);
            }
            let mut answer = serde_json::to_value(&claims).map_err(ApiError::internal)?;
            answer["active"] = json!(true);
            answer["token_type"] = json!(TokenKind::Invocation.typ());
            Ok(answer)
        }
        Some(TokenKind::SubTenant) => {
            let Ok(claims) = state.tokens.verify_sub_tenant(&token) else {
                return Ok(inactive);
            };
            if !tenancy::issuer_live(&snapshot, &claims) || !may_see(&[claims.account.as_str()]) {
                return Ok(inactive);
            }
            let mut answer = serde_json::to_value(&claims).map_err(ApiError::internal)?;
            answer["active"] = json!(true);
            answer["token_type"] = json!(TokenKind::SubTenant.typ());
            Ok(answer)
        }
        None => Ok(inactive),
    }
}
