//! The admin API under `/admin/v1`.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::request::{no_function, read_json, snapshot_with};
use super::respond::{self, Body};
use super::state::AppState;
use crate::credentials::tokens::MAX_SUB_TENANT_TTL_S;
use crate::error::ApiError;
use crate::names::{AccountName, FunctionName, SubTenantId};
use crate::registry::FunctionEntry;
use crate::registry::records::{KeyRecord, VersionRecord, VersionState};
use crate::tenancy::{self, Principal};
use stratus_wire::admin::{CreateAccount, IssueSubTenantToken};

/// Serves one admin request.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let sent_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    match route(&state, req).await {
        Ok(mut res) => {
            // A write is acknowledged at a revision the snapshot has reached:
            // a client (or frontend) can ask another node to wait for it.
            if writes
                && res.status().is_success()
                && let Ok(value) = http::HeaderValue::from_str(&state.registry.snapshot().revision().to_string())
            {
                res.headers_mut().insert("x-stratus-revision", value);
            }
            res
        }
        Err(err) => {
            let mut res = respond::error(&err);
            // Most errors are found before the body is read (a bad name, a
            // wrong key, a blob too large). The server then closes the
            // connection rather than read an unwanted upload; saying so
            // keeps the client from sending its next request down it.
            if sent_body {
                res.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            res
        }
    }
}

async fn route(state: &Arc<AppState>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req
        .uri()
        .path()
        .trim_start_matches("/admin/v1")
        .trim_end_matches('/')
        .to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if req.method() == Method::GET && segments == ["openapi.json"] {
        return Ok(respond::json(StatusCode::OK, &super::openapi::DOCUMENT));
    }
    let principal = tenancy::authenticate_admin(req.headers(), &state.registry.snapshot(), &state.operator)?;
    let method = req.method().clone();
    // Only what the route table (and so the OpenAPI document) lists is served.
    if super::routes::find(&method, &segments).is_none() {
        return Err(ApiError::NotFound(format!("no admin route {method} /admin/v1{path}")));
    }
    let query = req.uri().query().unwrap_or_default().to_string();

    match (&method, segments.as_slice()) {
        (&Method::GET, ["whoami"]) => Ok(respond::json(
            StatusCode::OK,
            &match &principal {
                Principal::Operator => json!({ "operator": true }),
                Principal::Account { account, .. } => json!({ "operator": false, "account": account }),
            },
        )),
        (&Method::GET, ["cluster"]) => {
            principal.operator_only()?;
            Ok(respond::json(StatusCode::OK, &super::cluster::status(state).await?))
        }
        (&Method::POST, ["signing-keys", "rotate"]) => {
            principal.operator_only()?;
            let kid = state.tokens.rotate().await?;
            tracing::info!(kid, "signing key rotated");
            Ok(respond::json(
                StatusCode::OK,
                &json!({ "kid": kid, "jwks": state.tokens.jwks() }),
            ))
        }
        (&Method::POST, ["accounts"]) => {
            principal.operator_only()?;
            let body: CreateAccount = read_json(&state.config, req).await?;
            let name = AccountName::parse(&body.name)?;
            if name.as_str() == tenancy::ANONYMOUS {
                return Err(ApiError::Conflict("the name `anonymous` is reserved".into()));
            }
            if !crate::names::fits_host_label(name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "account names may not contain `--`, which separates function and account in host names ({name})"
                )));
            }
            let (account, key) = state.registry.create_account(&name).await?;
            Ok(respond::json(
                StatusCode::CREATED,
                &json!({ "name": account.name, "key": key.secret.expose(), "key_id": key.id, "created_at": account.created_at }),
            ))
        }
        (&Method::GET, ["accounts"]) => {
            principal.operator_only()?;
            let accounts: Vec<_> = state
                .registry
                .list_accounts()
                .into_iter()
                .map(|a| json!({ "name": a.name, "created_at": a.created_at }))
                .collect();
            Ok(respond::json(StatusCode::OK, &json!({ "accounts": accounts })))
        }
        (&Method::DELETE, ["accounts", account]) => {
            principal.operator_only()?;
            let account = AccountName::parse(account)?;
            super::deploy::delete_account(state, &account).await?;
            Ok(respond::no_content())
        }
        (_, ["accounts", account, rest @ ..]) => {
            let account = AccountName::parse(account)?;
            principal.may_act_on(&account)?;
            if state.registry.snapshot().account(&account).is_none() {
                return Err(ApiError::NotFound(format!("no account {account}")));
            }
            account_route(state, req, &method, &principal, &account, rest, &query).await
        }
        _ => Err(ApiError::NotFound(format!("no admin route {method} {path}"))),
    }
}

/// The value of query parameter `name`, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn query_flag(query: &str, name: &str) -> bool {
    query_param(query, name).is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

fn query_is_false(query: &str, name: &str) -> bool {
    query_param(query, name).is_some_and(|v| v == "false" || v == "0")
}

async fn account_route(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    method: &Method,
    principal: &Principal,
    account: &AccountName,
    rest: &[&str],
    query: &str,
) -> Result<Response<Body>, ApiError> {
    let force = query_flag(query, "force");
    let wait = !query_is_false(query, "wait");
    match (method, rest) {
        (&Method::POST, ["keys"]) => {
            let (record, key) = state.registry.create_key(account).await?;
            Ok(respond::json(
                StatusCode::CREATED,
                &json!({ "id": record.id, "key": key.secret.expose(), "created_at": record.created_at }),
            ))
        }
        (&Method::GET, ["keys"]) => {
            let keys: Vec<_> = state.registry.list_keys(account).iter().map(key_json).collect();
            Ok(respond::json(StatusCode::OK, &json!({ "keys": keys })))
        }
        (&Method::DELETE, ["keys", id]) => {
            state.registry.revoke_key(account, id).await?;
            Ok(respond::no_content())
        }
        (&Method::PUT, ["blobs", sha]) => super::deploy::upload(state, req, account, sha).await,
        (&Method::POST, ["sub-tenant-tokens"]) => issue_sub_tenant_token(state, req, principal, account).await,
        (&Method::GET, ["functions"]) => {
            let snapshot = state.registry.snapshot();
            let functions: Vec<_> = snapshot.functions_of(account).map(function_summary).collect();
            Ok(respond::json(StatusCode::OK, &json!({ "functions": functions })))
        }
        (&Method::GET, ["functions", function]) => {
            let function = FunctionName::parse(function)?;
            let snapshot = state.registry.snapshot();
            let entry = snapshot
                .function(account, &function)
                .ok_or_else(|| no_function(&function))?;
            let mut summary = function_summary(entry);
            summary["versions"] = json!(entry.versions.values().map(|v| version_json(v)).collect::<Vec<_>>());
            summary["aliases"] = json!(
                entry
                    .aliases
                    .values()
                    .map(|a| super::aliases::alias_json(&a.record))
                    .collect::<Vec<_>>()
            );
            Ok(respond::json(StatusCode::OK, &summary))
        }
        (&Method::GET, ["functions", function, "versions"]) => {
            let function = FunctionName::parse(function)?;
            let snapshot = state.registry.snapshot();
            let entry = snapshot
                .function(account, &function)
                .ok_or_else(|| no_function(&function))?;
            let versions: Vec<_> = entry.versions.values().map(|v| version_json(v)).collect();
            Ok(respond::json(StatusCode::OK, &json!({ "versions": versions })))
        }
        (_, ["functions", function, "grants", grantee @ ..]) => {
            super::aliases::grants(state, req, method, account, &FunctionName::parse(function)?, grantee).await
        }
        (&Method::GET, ["grants"]) => super::aliases::all_grants(state, account),
        (&Method::GET, ["functions", function, "logs"]) => {
            let function = FunctionName::parse(function)?;
            snapshot_with(state, account, &function)?;
            let since_ms = match query_param(query, "since") {
                Some(since) => {
                    let ago = humantime::parse_duration(&since).map_err(|e| {
                        ApiError::BadRequest(format!("since={since:?} is not a duration like 10m: {e}"))
                    })?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    now.saturating_sub(ago.as_millis() as u64)
                }
                None => 0,
            };
            let sub_tenant = query_param(query, "sub_tenant")
                .map(|s| SubTenantId::parse(&s).map(|s| s.to_string()))
                .transpose()?;
            let invocation = query_param(query, "invocation").filter(|id| !id.is_empty());
            let filter = super::logs::Filter {
                since_ms,
                sub_tenant,
                invocation,
            };
            let owner_id = state.account_id(account);
            let follow = query_flag(query, "follow");
            let local = state
                .logs
                .response(&owner_id, account.as_str(), &function, filter, follow)?;
            if state.cluster.is_none() || req.headers().contains_key(super::cluster::LOGS_LOCAL) {
                return Ok(local);
            }
            // The caller's own key, which every node checks again.
            let bearer = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|v| v.trim().to_string());
            // Through any node, every live node's lines.
            let path = format!("/accounts/{account}/functions/{function}/logs?{query}");
            Ok(super::cluster::merged_logs(state, local, &path, bearer, follow).await)
        }
        (&Method::GET, ["reservations"]) => super::aliases::all_reservations(state, account),
        (_, ["functions", function, "reservations", qualifier @ ..]) => {
            super::aliases::reservations(state, req, method, account, &FunctionName::parse(function)?, qualifier).await
        }
        (_, ["cross-aliases", name @ ..]) => super::aliases::cross_aliases(state, req, method, account, name).await,
        (_, ["functions", function, "aliases", alias @ ..]) => {
            super::aliases::route(state, req, method, account, &FunctionName::parse(function)?, alias).await
        }
        (&Method::POST, ["functions", function, "versions"]) => {
            let function = FunctionName::parse(function)?;
            super::deploy::deploy(state, req, account, &function, wait).await
        }
        (&Method::DELETE, ["functions", function]) => {
            let function = FunctionName::parse(function)?;
            super::deploy::delete_function(state, account, &function, force).await?;
            Ok(respond::no_content())
        }
        (&Method::DELETE, ["functions", function, "versions", number]) => {
            let number = number
                .parse::<u32>()
                .map_err(|_| ApiError::BadRequest(format!("{number:?} is not a version number")))?;
            let function = FunctionName::parse(function)?;
            super::deploy::delete_version(state, account, &function, number).await?;
            Ok(respond::no_content())
        }
        _ => Err(ApiError::NotFound(format!(
            "no admin route {method} /accounts/{account}/{}",
            rest.join("/")
        ))),
    }
}

async fn issue_sub_tenant_token(
    state: &AppState,
    req: Request<Incoming>,
    principal: &Principal,
    account: &AccountName,
) -> Result<Response<Body>, ApiError> {
    let body: IssueSubTenantToken = read_json(&state.config, req).await?;
    let sub_tenant = SubTenantId::parse(&body.sub_tenant).map_err(|e| ApiError::InvalidSubTenant(e.to_string()))?;
    let ttl = body.ttl_s.unwrap_or(3600);
    if ttl == 0 || ttl > MAX_SUB_TENANT_TTL_S {
        return Err(ApiError::BadRequest(format!(
            "ttl_s must be between 1 and {MAX_SUB_TENANT_TTL_S}"
        )));
    }
    let key_id = match principal {
        Principal::Operator => tenancy::OPERATOR_ISSUER,
        Principal::Account { key_id, .. } => key_id.as_str(),
    };
    let account_id = state.account_id(account);
    let (token, expires_at) = state
        .tokens
        .issue_sub_tenant(account, &account_id, &sub_tenant, key_id, ttl)
        .await?;
    Ok(respond::json(
        StatusCode::CREATED,
        &json!({ "token": token, "expires_at": expires_at, "sub_tenant": sub_tenant, "account": account }),
    ))
}

fn key_json(key: &KeyRecord) -> serde_json::Value {
    json!({ "id": key.id, "created_at": key.created_at })
}

fn function_summary(entry: &FunctionEntry) -> serde_json::Value {
    let latest = entry.latest.and_then(|n| entry.versions.get(&n));
    json!({
        "name": entry.record.name,
        "created_at": entry.record.created_at,
        "latest": entry.latest,
        "public": latest.is_some_and(|v| v.config.public),
        "version_count": entry.versions.len(),
    })
}

fn version_json(v: &VersionRecord) -> serde_json::Value {
    let (state, error) = match &v.state {
        VersionState::Compiling => ("compiling", None),
        VersionState::Ready => ("ready", None),
        VersionState::Failed { message } => ("failed", Some(message.clone())),
    };
    json!({
        "version": v.number,
        "sha256": v.sha256,
        "size": v.size,
        "state": state,
        "error": error,
        "created_at": v.created_at,
        "compile_ms": v.compile_ms,
        "config": v.config,
    })
}
