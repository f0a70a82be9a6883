//! Admin routes of aliases (`…/functions/{f}/aliases[/{alias}]`), grants
//! (`…/functions/{f}/grants[/{grantee}]`) and cross-account aliases
//! (`/accounts/{a}/cross-aliases[/{name}]`).
//!
//! `PUT` creates or re-points; `If-None-Match: *` makes it create-only (409
//! if the alias exists) and `If-Match: *` update-only (404 if it does not),
//! which is how `stratus alias create` and `alias update` tell them apart.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::request::{no_function, read_json, snapshot_with};
use super::respond::{self, Body};
use super::state::AppState;
use crate::error::ApiError;
use crate::names::{AccountName, AliasName, FunctionName};
use crate::registry::records::{AliasRecord, CrossAliasRecord, GrantRecord, LowerLimits};
use crate::registry::{AliasSpec, CrossTarget, PutMode, Snapshot};
use stratus_wire::admin::{PutAlias, PutGrant, PutReservation};

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

/// A grant as the API shows it.
fn grant_json(record: &GrantRecord) -> serde_json::Value {
    json!({
        "function": record.function,
        "grantee": record.grantee,
        "alias": record.alias,
        "created_at": record.created_at,
    })
}

/// A cross-account alias as the API shows its holder: where it points and
/// whether the grant still stands, nothing of the owner's code or config.
fn cross_json(snapshot: &Snapshot, record: &CrossAliasRecord) -> serde_json::Value {
    let state = match snapshot.resolve_cross(record, None) {
        Ok(_) => "active",
        Err(crate::registry::CrossError::Revoked) => "revoked",
        Err(crate::registry::CrossError::NoQualifier) => "unresolved",
    };
    json!({
        "name": record.name,
        "target": record.target(),
        "limits": record.limits,
        "state": state,
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
            let body: PutAlias = read_json(&state.config, req).await?;
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

/// Every grant `account` gave, for all its functions.
pub fn all_grants(state: &AppState, account: &AccountName) -> Result<Response<Body>, ApiError> {
    let snapshot = state.registry.snapshot();
    let mut grants: Vec<&GrantRecord> = snapshot.grants_given(account).map(Arc::as_ref).collect();
    grants.sort_by(|a, b| (&a.function, &a.grantee).cmp(&(&b.function, &b.grantee)));
    let grants: Vec<_> = grants.into_iter().map(grant_json).collect();
    Ok(respond::json(StatusCode::OK, &json!({ "grants": grants })))
}

/// Serves `…/functions/{function}/grants` + `rest`.
pub async fn grants(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    method: &Method,
    account: &AccountName,
    function: &FunctionName,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let snapshot = snapshot_with(state, account, function)?;
    match (method, rest) {
        (&Method::GET, []) => {
            let grants: Vec<_> = snapshot.grants_of(account, function).map(|g| grant_json(g)).collect();
            Ok(respond::json(StatusCode::OK, &json!({ "grants": grants })))
        }
        (&Method::PUT, [grantee]) => {
            let grantee = AccountName::parse(grantee)?;
            let body: PutGrant = read_json(&state.config, req).await?;
            let (record, created) = state
                .registry
                .put_grant(account, function, &grantee, body.alias)
                .await?;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond::json(status, &grant_json(&record)))
        }
        (&Method::DELETE, [grantee]) => {
            state
                .registry
                .delete_grant(account, function, &AccountName::parse(grantee)?)
                .await?;
            Ok(respond::no_content())
        }
        _ => Err(ApiError::NotFound(format!(
            "no admin route {method} …/functions/{function}/grants/{}",
            rest.join("/")
        ))),
    }
}

/// Serves `/accounts/{account}/cross-aliases` + `rest`.
pub async fn cross_aliases(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    method: &Method,
    account: &AccountName,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let snapshot = state.registry.snapshot();
    match (method, rest) {
        (&Method::GET, []) => {
            let aliases: Vec<_> = snapshot
                .cross_aliases_of(account)
                .map(|c| cross_json(&snapshot, c))
                .collect();
            Ok(respond::json(StatusCode::OK, &json!({ "aliases": aliases })))
        }
        (&Method::GET, [name]) => {
            let name = FunctionName::parse(name)?;
            let record = snapshot
                .cross_alias(account, &name)
                .ok_or_else(|| ApiError::NotFound(format!("no cross-account alias {name}")))?;
            Ok(respond::json(StatusCode::OK, &cross_json(&snapshot, record)))
        }
        (&Method::PUT, [name]) => {
            let name = FunctionName::parse(name)?;
            let mode = put_mode(&req);
            let body: serde_json::Map<String, serde_json::Value> = read_json(&state.config, req).await?;
            // Named refusals rather than a generic unknown-field error: this
            // is the line between the caller's settings and the owner's code.
            if let Some(field) = body.keys().find(|k| *k != "target" && *k != "limits") {
                return Err(ApiError::BadRequest(format!(
                    "a cross-account alias may only lower limits (timeout_ms, memory_mb); `{field}` would \
                     change another account's code or config"
                )));
            }
            let target = body.get("target").and_then(|t| t.as_str()).ok_or_else(|| {
                ApiError::BadRequest("a cross-account alias needs `target`: OWNER/FN[:QUALIFIER]".into())
            })?;
            let target = CrossTarget::parse(target)?;
            let limits: LowerLimits = match body.get("limits") {
                Some(value) => serde_json::from_value(value.clone())
                    .map_err(|e| ApiError::BadRequest(format!("limits may set only timeout_ms and memory_mb: {e}")))?,
                None => LowerLimits::default(),
            };
            let (record, created) = state
                .registry
                .put_cross_alias(account, &name, target, limits, mode)
                .await?;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond::json(status, &cross_json(&state.registry.snapshot(), &record)))
        }
        (&Method::DELETE, [name]) => {
            state
                .registry
                .delete_cross_alias(account, &FunctionName::parse(name)?)
                .await?;
            Ok(respond::no_content())
        }
        _ => Err(ApiError::NotFound(format!(
            "no admin route {method} /accounts/{account}/cross-aliases/{}",
            rest.join("/")
        ))),
    }
}

/// A reservation as the API shows it.
fn reservation_json(record: &crate::registry::records::ReservationRecord) -> serde_json::Value {
    json!({
        "function": record.function,
        "qualifier": record.qualifier.clone().unwrap_or_else(|| "latest".into()),
        "sub_tenant": record.sub_tenant,
        "min": record.min,
        "target": record.target,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })
}

/// Every reservation of `account`'s functions.
pub fn all_reservations(state: &AppState, account: &AccountName) -> Result<Response<Body>, ApiError> {
    let snapshot = state.registry.snapshot();
    let mut reservations: Vec<_> = snapshot.reservations_of(account).collect();
    reservations.sort_by_key(|(key, _)| *key);
    let reservations: Vec<_> = reservations.into_iter().map(|(_, r)| reservation_json(r)).collect();
    Ok(respond::json(StatusCode::OK, &json!({ "reservations": reservations })))
}

/// How much of the pool reservations may keep, from the settings: in a
/// cluster, every live node's share of its pool (this node's ceiling on
/// each, as the nodes are alike), since a reservation is split over its arc.
fn reservation_bounds(state: &AppState) -> crate::registry::reservations::ReservationBounds {
    let config = &state.config;
    let slots = config.runtime.pool_slots;
    let nodes = state
        .cluster
        .as_ref()
        .map_or(1, |node| node.peers.members().len().max(1)) as u32;
    crate::registry::reservations::ReservationBounds {
        slots,
        per_account: config.accounts.max_reserved,
        host: config.accounts.reserved_ceiling(slots).saturating_mul(nodes),
        nodes,
    }
}

/// Serves `…/functions/{function}/reservations` + `rest`.
pub async fn reservations(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    method: &Method,
    account: &AccountName,
    function: &FunctionName,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let snapshot = snapshot_with(state, account, function)?;
    match (method, rest) {
        (&Method::GET, []) => {
            let mut reservations: Vec<_> = snapshot
                .reservations_of(account)
                .filter(|((_, name, _), _)| name == function)
                .collect();
            reservations.sort_by_key(|(key, _)| *key);
            let reservations: Vec<_> = reservations.into_iter().map(|(_, r)| reservation_json(r)).collect();
            Ok(respond::json(StatusCode::OK, &json!({ "reservations": reservations })))
        }
        (&Method::PUT, [qualifier]) => {
            let qualifier = crate::names::Qualifier::parse(qualifier)?;
            let body: PutReservation = read_json(&state.config, req).await?;
            let spec = crate::registry::ReservationSpec {
                sub_tenant: body.sub_tenant,
                min: body.min,
                target: body.target,
            };
            let (record, created) = state
                .registry
                .put_reservation(account, function, &qualifier, spec, reservation_bounds(state))
                .await?;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond::json(status, &reservation_json(&record)))
        }
        (&Method::DELETE, [qualifier]) => {
            let qualifier = crate::names::Qualifier::parse(qualifier)?;
            state.registry.delete_reservation(account, function, &qualifier).await?;
            Ok(respond::no_content())
        }
        _ => Err(ApiError::NotFound(format!(
            "no admin route {method} …/functions/{function}/reservations/{}",
            rest.join("/")
        ))),
    }
}
