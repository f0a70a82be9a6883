//! The life of a version, in the order it happens: its component is
//! uploaded (hashed, validated, stored once per account), deployed (its
//! configuration checked by the registry, recorded as compiling), compiled
//! off the request path (one at a time, fairly between accounts), marked
//! ready or failed, and in the end deleted, with the environments and code
//! that ran it.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::request::{read_body, read_json};
use super::respond::{self, Body};
use super::state::AppState;
use crate::error::ApiError;
use crate::names::{AccountName, FunctionName};
use crate::registry::functions::VersionBounds;
use crate::registry::records::{VersionConfig, VersionRecord, VersionState};
use crate::registry::{FunctionEntry, sha256_hex};
use crate::runtime::body::RateBody;
use crate::runtime::validate::check_component;
use stratus_wire::admin::Deploy;

/// `PUT /accounts/{account}/blobs/{sha256}`: stores a component.
pub async fn upload(
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

/// `POST /accounts/{account}/functions/{function}/versions`: deploys an
/// uploaded component as the next version; with `wait`, answers once it
/// compiled.
pub async fn deploy(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    account: &AccountName,
    function: &FunctionName,
    wait: bool,
) -> Result<Response<Body>, ApiError> {
    let body: Deploy = read_json(&state.config, req).await?;
    let limits = &state.config.limits;
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
        timeout_ms: body.timeout_ms.unwrap_or(limits.timeout_ms),
        memory_mb: body.memory_mb.unwrap_or(limits.memory_mb),
        env: body.env,
        allow_outbound: body.allow_outbound,
        max_concurrency_per_sub_tenant: body.max_concurrency_per_sub_tenant,
    };
    let bounds = VersionBounds {
        max_timeout_ms: limits.max_timeout_ms,
        max_memory_mb: state.config.runtime.max_memory_mb,
    };
    // Refused before a compile is queued when the configuration is wrong.
    bounds.check(&config)?;
    // Counted before the version exists: a deploy past the account's bound
    // of queued compiles leaves nothing behind.
    let account_id = state.account_id(account);
    let queued = state.runtime.enqueue_compile(&account_id, account.as_str())?;
    let version = state
        .registry
        .create_version(account, function, &body.blob, size, config, bounds)
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
        .prepare(
            &body.blob,
            &version.account_id,
            Some(queued),
            state.component(&body.blob),
        )
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
        .prepare(
            &version.sha256,
            &version.account_id,
            queued,
            state.component(&version.sha256),
        )
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

/// Deletes an account. What ran for it, as owner or as caller, goes now,
/// not at the end of an idle TTL that traffic keeps renewing.
pub async fn delete_account(state: &AppState, account: &AccountName) -> Result<(), ApiError> {
    let snapshot = state.registry.snapshot();
    let id = snapshot.account_id(account).unwrap_or_default().to_string();
    let versions = snapshot
        .functions_of(account)
        .flat_map(|f| f.versions.values().map(|v| v.id.clone()))
        .collect();
    let shas = shas_of(snapshot.functions_of(account));
    state.registry.delete_account(account).await?;
    state.runtime.stop_account(&id);
    state.runtime.retire(&versions, Some(&id));
    evict_unused(state, &shas);
    state.logs.forget(&id, None);
    Ok(())
}

/// Deletes a function with its versions, their environments and code.
pub async fn delete_function(
    state: &AppState,
    account: &AccountName,
    function: &FunctionName,
    force: bool,
) -> Result<(), ApiError> {
    let snapshot = state.registry.snapshot();
    let versions = snapshot
        .function(account, function)
        .map(|f| f.versions.values().map(|v| v.id.clone()).collect())
        .unwrap_or_default();
    state.registry.delete_function(account, function, force).await?;
    state.runtime.retire(&versions, None);
    evict_unused(state, &shas_of(snapshot.function(account, function).into_iter()));
    state
        .logs
        .forget(snapshot.account_id(account).unwrap_or_default(), Some(function));
    Ok(())
}

/// Deletes one version, its environments and, unless others use it, its code.
pub async fn delete_version(
    state: &AppState,
    account: &AccountName,
    function: &FunctionName,
    number: u32,
) -> Result<(), ApiError> {
    let deleted = state
        .registry
        .snapshot()
        .function(account, function)
        .and_then(|f| f.versions.get(&number).cloned());
    state.registry.delete_version(account, function, number).await?;
    if let Some(deleted) = deleted {
        state.runtime.retire(&[deleted.id.clone()].into(), None);
        evict_unused(state, std::slice::from_ref(&deleted.sha256));
    }
    Ok(())
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
