//! Admin routes of aliases: `…/functions/{f}/aliases[/{alias}]`.
//!
//! `PUT` creates or re-points; `If-None-Match: *` makes it create-only (409
//! if the alias exists) and `If-Match: *` update-only (404 if it does not),
//! which is how `stratus alias create` and `alias update` tell them apart.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::admin::{no_function, read_json};
use super::respond::{self, Body};
use crate::error::ApiError;
use crate::names::{AccountName, AliasName, FunctionName};
use crate::registry::records::{AliasRecord, Overrides, Weight};
use crate::registry::{AliasSpec, PutMode};

/// The body of `PUT …/aliases/{alias}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutAlias {
    version: u32,
    weight: Option<Weight>,
    #[serde(default)]
    overrides: Overrides,
}

/// An alias as the API shows it.
pub fn alias_json(record: &AliasRecord) -> serde_json::Value {
    json!({
        "name": record.name,
        "function": record.function,
        "version": record.version,
        "weight": record.weight,
        "overrides": record.overrides,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })
}

fn put_mode(req: &Request<Incoming>) -> PutMode {
    let star = |name| req.headers().get(name).is_some_and(|v| v.as_bytes() == b"*");
    if star(http::header::IF_NONE_MATCH) {
        PutMode::Create
    } else if star(http::header::IF_MATCH) {
        PutMode::Update
    } else {
        PutMode::Upsert
    }
}

/// Serves `…/functions/{function}/aliases` + `rest`.
pub async fn route(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    method: &Method,
    account: &AccountName,
    function: &FunctionName,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let snapshot = state.registry.snapshot();
    let entry = snapshot
        .function(account, function)
        .ok_or_else(|| no_function(function))?;
    match (method, rest) {
        (&Method::GET, []) => {
            let aliases: Vec<_> = entry.aliases.values().map(|a| alias_json(&a.record)).collect();
            Ok(respond::json(StatusCode::OK, &json!({ "aliases": aliases })))
        }
        (&Method::GET, [alias]) => {
            let alias = AliasName::parse(alias)?;
            let entry = entry
                .aliases
                .get(&alias)
                .ok_or_else(|| ApiError::NotFound(format!("{function} has no alias {alias}")))?;
            Ok(respond::json(StatusCode::OK, &alias_json(&entry.record)))
        }
        (&Method::PUT, [alias]) => {
            let alias = AliasName::parse(alias)?;
            let mode = put_mode(&req);
            let body: PutAlias = read_json(req).await?;
            let spec = AliasSpec {
                version: body.version,
                weight: body.weight,
                overrides: body.overrides,
            };
            let (record, created) = state.registry.put_alias(account, function, &alias, spec, mode).await?;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond::json(status, &alias_json(&record)))
        }
        (&Method::DELETE, [alias]) => {
            state
                .registry
                .delete_alias(account, function, &AliasName::parse(alias)?)
                .await?;
            Ok(respond::no_content())
        }
        _ => Err(ApiError::NotFound(format!(
            "no admin route {method} …/functions/{function}/aliases/{}",
            rest.join("/")
        ))),
    }
}
