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

/// Marks an introspection one node asks of another, which answers for its
/// own invocations only.
const FORWARDED: &str = "x-stratus-introspection-forwarded";

/// The answer of the node that minted an invocation token; `None` when it
/// is gone or does not answer (the token is then inactive).
async fn ask_minting_node(
    state: &AppState,
    node: &str,
    authorization: Option<http::HeaderValue>,
    token: &str,
) -> Option<serde_json::Value> {
    let member = state.cluster.as_ref()?.peers.get(node)?;
    let authorization = authorization?.to_str().ok()?.to_string();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let client = crate::client::Client::new(&member.advertise, None);
    let headers = [
        ("authorization", authorization),
        ("content-type", "application/x-www-form-urlencoded".to_string()),
        (FORWARDED, "1".to_string()),
    ];
    let ask = client.send(http::Method::POST, "/v1/introspect", &headers, bytes::Bytes::from(form));
    let reply = tokio::time::timeout(std::time::Duration::from_secs(2), ask)
        .await
        .ok()?
        .ok()?;
    (reply.status == StatusCode::OK)
        .then(|| serde_json::from_slice(&reply.body).ok())
        .flatten()
}

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
    let authorization = req.headers().get(http::header::AUTHORIZATION).cloned();
    let forwarded = req.headers().contains_key(FORWARDED);
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
            // Minted on another node: only that one knows whether its
            // invocation still runs. Asked once, with the caller's own
            // credentials, which it checks again.
            if let Some(minted_by) = claims.node.as_deref()
                && state.tokens.node() != Some(minted_by)
            {
                if forwarded {
                    return Ok(inactive);
                }
                return Ok(ask_minting_node(state, minted_by, authorization, &token)
                    .await
                    .unwrap_or(inactive));
            }
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
