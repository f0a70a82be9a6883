//! The admin API under `/admin/v1`.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::AppState;
use super::request::{no_function, read_body, read_json, snapshot_with};
use super::respond::{self, Body};
use crate::credentials::tokens::MAX_SUB_TENANT_TTL_S;
use crate::error::ApiError;
use crate::names::{AccountName, FunctionName, SubTenantId};
use crate::registry::records::{KeyRecord, VersionConfig, VersionRecord, VersionState};
use crate::registry::{FunctionEntry, sha256_hex};
use crate::runtime::body::RateBody;
use crate::runtime::validate::check_component;
use crate::tenancy::{self, Principal};
use stratus_wire::admin::{CreateAccount, Deploy, IssueSubTenantToken};

/// Serves one admin request.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let sent_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    match route(&state, req).await {
        Ok(res) => res,
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
            let snapshot = state.registry.snapshot();
            let id = snapshot.account_id(&account).unwrap_or_default().to_string();
            let versions = snapshot
                .functions_of(&account)
                .flat_map(|f| f.versions.values().map(|v| v.id.clone()))
                .collect();
            let shas = shas_of(snapshot.functions_of(&account));
            state.registry.delete_account(&account).await?;
            // What ran for it, as owner or as caller, goes now, not at the
            // end of an idle TTL that traffic keeps renewing.
            state.runtime.stop_account(&id);
            state.runtime.retire(&versions, Some(&id));
            evict_unused(state, &shas);
            state.logs.forget(&id, None);
            Ok(respond::no_content())
        }
        (_, ["accounts", account, rest @ ..]) => {
            let account = AccountName::parse(account)?;
            principal.may_act_on(&account)?;
            if !state.registry.snapshot().accounts.contains_key(&account) {
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
        (&Method::PUT, ["blobs", sha]) => put_blob(state, req, account, sha).await,
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
            state.logs.response(
                &owner_id,
                account.as_str(),
                &function,
                filter,
                query_flag(query, "follow"),
            )
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
            deploy(state, req, account, &function, wait).await
        }
        (&Method::DELETE, ["functions", function]) => {
            let function = FunctionName::parse(function)?;
            let snapshot = state.registry.snapshot();
            let versions = snapshot
                .function(account, &function)
                .map(|f| f.versions.values().map(|v| v.id.clone()).collect())
                .unwrap_or_default();
            state.registry.delete_function(account, &function, force).await?;
            state.runtime.retire(&versions, None);
            evict_unused(state, &shas_of(snapshot.function(account, &function).into_iter()));
            state
                .logs
                .forget(snapshot.account_id(account).unwrap_or_default(), Some(&function));
            Ok(respond::no_content())
        }
        (&Method::DELETE, ["functions", function, "versions", number]) => {
            let number = number
                .parse::<u32>()
                .map_err(|_| ApiError::BadRequest(format!("{number:?} is not a version number")))?;
            let function = FunctionName::parse(function)?;
            let deleted = state
                .registry
                .snapshot()
                .function(account, &function)
                .and_then(|f| f.versions.get(&number).cloned());
            state.registry.delete_version(account, &function, number).await?;
            if let Some(deleted) = deleted {
                state.runtime.retire(&[deleted.id.clone()].into(), None);
                evict_unused(state, std::slice::from_ref(&deleted.sha256));
            }
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

/// The component hashes of `functions`' versions.
fn shas_of<'a>(functions: impl Iterator<Item = &'a FunctionEntry>) -> Vec<String> {
    functions
        .flat_map(|f| f.versions.values().map(|v| v.sha256.clone()))
        .collect()
}

/// Unloads the code of `shas` that no version of any account uses now.
fn evict_unused(state: &AppState, shas: &[String]) {
    let snapshot = state.registry.snapshot();
    let in_use: std::collections::HashSet<&str> = snapshot
        .all_functions()
        .flat_map(|f| f.versions.values().map(|v| v.sha256.as_str()))
        .collect();
    state.runtime.evict_code(shas, |sha| in_use.contains(sha));
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

async fn put_blob(
    state: &AppState,
    req: Request<Incoming>,
    account: &AccountName,
    sha: &str,
) -> Result<Response<Body>, ApiError> {
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(ApiError::BadRequest(
            "a blob is addressed by the lower-case hex SHA-256 of its bytes".into(),
        ));
    }
    // Counted from the first byte: an account's uploads in progress, each
    // up to the component limit in memory, are bounded.
    let account_id = state.account_id(account);
    let _upload = match state.uploads.enter(&account_id, account.as_str()) {
        Ok(ticket) => ticket,
        Err(refused) => {
            // Read and drop the body (never held), so the client, still
            // sending, gets the answer rather than a reset connection.
            let body = RateBody::new(req.into_body(), state.config.min_body_rate, Default::default());
            let mut body = Limited::new(body, state.config.limits.component_bytes as usize);
            while let Some(Ok(_)) = body.frame().await {}
            return Err(refused);
        }
    };
    // Host-wide, uploads wait their turn before their bodies are read, so
    // many accounts uploading at once hold a bounded amount of memory.
    let wait = state.config.header_read_timeout;
    let _slot = match tokio::time::timeout(wait, state.upload_slots.acquire()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            return Err(ApiError::Unavailable {
                message: format!(
                    "the host is receiving {} uploads already (--max-uploads); retry",
                    state.config.accounts.max_uploads_total
                ),
                retry_after: 5,
            });
        }
    };
    let bytes = read_body(
        req,
        state.config.limits.component_bytes as usize,
        state.config.min_body_rate,
    )
    .await?;
    // Hashing and validating tens of MiB takes a core for a while: on the
    // blocking pool, so the async workers keep serving calls.
    let expected = sha.to_string();
    // One check at a time: on a small host the other cores keep serving.
    let _checking = state.upload_checks.acquire().await.map_err(ApiError::internal)?;
    let bytes = tokio::task::spawn_blocking(move || {
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(ApiError::BadRequest(format!(
                "the body's SHA-256 is {actual}, not {expected}"
            )));
        }
        // Validate before storing: a refused upload leaves nothing behind.
        check_component(&bytes)?;
        Ok(bytes)
    })
    .await
    .map_err(ApiError::internal)??;
    let created = state.registry.put_blob(account, sha, &bytes).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(respond::json(
        status,
        &json!({ "sha256": sha, "size": bytes.len(), "created": created }),
    ))
}

async fn deploy(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    account: &AccountName,
    function: &FunctionName,
    wait: bool,
) -> Result<Response<Body>, ApiError> {
    let body: Deploy = read_json(&state.config, req).await?;
    let limits = &state.config.limits;
    let timeout_ms = body.timeout_ms.unwrap_or(limits.timeout_ms);
    if timeout_ms == 0 || timeout_ms > limits.max_timeout_ms {
        return Err(ApiError::BadRequest(format!(
            "timeout_ms must be between 1 and {}",
            limits.max_timeout_ms
        )));
    }
    let memory_mb = body.memory_mb.unwrap_or(limits.memory_mb);
    let max_memory = state.config.runtime.max_memory_mb;
    if memory_mb == 0 || memory_mb > max_memory {
        return Err(ApiError::BadRequest(format!(
            "memory_mb must be between 1 and {max_memory} (the host's environment slot size)"
        )));
    }
    if let Some(key) = stratus_wire::config::bad_env_name(&body.env) {
        return Err(ApiError::BadRequest(format!(
            "{key:?} is not an environment variable name"
        )));
    }
    for entry in &body.allow_outbound {
        let host = entry.rsplit_once(':').map_or(entry.as_str(), |(h, _)| h);
        if host.is_empty() || entry.contains('/') || entry.contains(' ') {
            return Err(ApiError::BadRequest(format!("{entry:?} is not HOST[:PORT]")));
        }
    }
    if body.max_concurrency_per_sub_tenant == Some(0) {
        return Err(ApiError::BadRequest(
            "max_concurrency_per_sub_tenant must be at least 1".into(),
        ));
    }
    let Some(size) = state.registry.blob_size_for(account, &body.blob) else {
        return Err(ApiError::NotFound(format!(
            "account {account} has no blob {}: upload it with PUT /admin/v1/accounts/{account}/blobs/{{sha256}} first",
            body.blob
        )));
    };
    let config = VersionConfig {
        public: body.public,
        tenancy: body.tenancy,
        reuse: body.reuse,
        timeout_ms,
        memory_mb,
        env: body.env,
        allow_outbound: body.allow_outbound,
        max_concurrency_per_sub_tenant: body.max_concurrency_per_sub_tenant,
    };
    // Counted before the version exists: a deploy past the account's bound
    // of queued compiles leaves nothing behind.
    let account_id = state.account_id(account);
    let queued = state.runtime.enqueue_compile(&account_id, account.as_str())?;
    let version = state
        .registry
        .create_version(account, function, &body.blob, size, config)
        .await?;
    let number = version.number;
    if !wait {
        tokio::spawn(compile_version(state.clone(), version, Some(queued)));
        return Ok(respond::json(
            StatusCode::ACCEPTED,
            &json!({ "version": number, "sha256": body.blob, "state": "compiling" }),
        ));
    }
    let started = std::time::Instant::now();
    match state
        .runtime
        .prepare(&body.blob, &version.account_id, Some(queued), || {
            state.component(&body.blob)
        })
        .await
    {
        Ok(_) => {
            let compile_ms = started.elapsed().as_millis() as u64;
            state
                .registry
                .finish_version(account, function, number, VersionState::Ready, Some(compile_ms))
                .await?;
            Ok(respond::json(
                StatusCode::CREATED,
                &json!({ "version": number, "sha256": body.blob, "compile_ms": compile_ms }),
            ))
        }
        Err(err) => {
            let message = err.to_string();
            state
                .registry
                .finish_version(account, function, number, VersionState::Failed { message }, None)
                .await?;
            Err(err)
        }
    }
}

/// Compiles a version in the background and records the outcome.
pub async fn compile_version(
    state: Arc<AppState>,
    version: VersionRecord,
    queued: Option<crate::runtime::compile::Ticket>,
) {
    let started = std::time::Instant::now();
    let outcome = state
        .runtime
        .prepare(&version.sha256, &version.account_id, queued, || {
            state.component(&version.sha256)
        })
        .await
        .map(|_| ());
    let (new_state, compile_ms) = match outcome {
        Ok(()) => (VersionState::Ready, Some(started.elapsed().as_millis() as u64)),
        Err(err) => (
            VersionState::Failed {
                message: err.to_string(),
            },
            None,
        ),
    };
    if let Err(err) = state
        .registry
        .finish_version(
            &version.account,
            &version.function,
            version.number,
            new_state,
            compile_ms,
        )
        .await
    {
        tracing::error!(error = %err, "could not record a compile result");
    }
}
