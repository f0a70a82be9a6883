//! The HTTP trigger: `/fn/{account}/{name}[:{qualifier}]/{rest}` and
//! `{name}--{account}.{base}`.
//!
//! A call goes through the steps of SPEC §5 in order, one line each in
//! [`call`]: parse → authenticate → resolve → authorize → run (the runtime
//! admits the call into a pool slot or a warm environment of its partition).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, Uri};
use rand::RngCore;

use super::logs::LogEntry;
use super::respond::{self, Body};
use super::state::AppState;
use crate::error::ApiError;
use crate::names::{AccountName, AliasName, FunctionName, Qualifier, SubTenantId};
use crate::registry::records::{Tenancy, VersionRecord};
use crate::runtime::CallContext;
use crate::runtime::body::{LimitedBody, RateBody};
use crate::tenancy::quota::Admission;
use crate::tenancy::visibility::{Address, Route};
use crate::tenancy::{self, Caller, Presented};

/// Request headers reserved for the host; never shown to a guest.
const RESERVED_PREFIX: &str = "x-stratus-";

/// What a call addresses.
#[derive(Debug)]
struct Target {
    account: AccountName,
    name: FunctionName,
    qualifier: Qualifier,
    /// Path and query the guest sees.
    guest_uri: Uri,
}

/// Whether this request is for the trigger.
pub fn is_trigger<B>(state: &AppState, req: &Request<B>) -> bool {
    req.uri().path().starts_with("/fn/") || host_target(state, req).is_some()
}

fn host_target<'a, B>(state: &AppState, req: &'a Request<B>) -> Option<(&'a str, &'a str)> {
    let base = state.config.base_domain.as_deref()?;
    let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
    stratus_wire::address::host_labels(host, base)
}

fn parse<B>(state: &AppState, req: &Request<B>) -> Result<Target, ApiError> {
    use stratus_wire::address::{self, AddressError};
    let query = req.uri().query();
    let with_query = |path: &str| -> Result<Uri, ApiError> {
        let text = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        text.parse().map_err(|e| ApiError::BadRequest(format!("bad path: {e}")))
    };
    let path = req.uri().path();
    let by_host = state.config.base_domain.as_deref().and_then(|base| {
        let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
        address::parse_host(host, base, path)
    });
    let parsed = by_host
        .or_else(|| address::parse_path(path))
        .unwrap_or(Err(AddressError::Shape))
        .map_err(|e| match e {
            AddressError::Shape => ApiError::BadRequest(e.to_string()),
            AddressError::Name(name) => name.into(),
            AddressError::Ambiguous(_) => ApiError::NotFound(e.to_string()),
        })?;
    Ok(Target {
        guest_uri: with_query(&parsed.guest_path)?,
        account: parsed.account,
        name: parsed.name,
        qualifier: parsed.qualifier,
    })
}

fn new_invocation_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Serves one trigger call, always answering (errors as JSON). The body is
/// a client's, or a guest's for a nested call.
/// How long a cluster node waits for its snapshot to catch up with the
/// store before it answers that a name or key does not exist.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn handle<B>(state: Arc<AppState>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let invocation_id = new_invocation_id();
    // Set once the call resolved to a function, so metrics can name it.
    let mut resolved = None;
    let (mut res, code) = match call(&state, req, &invocation_id, &mut resolved).await {
        Ok(res) => (res, None),
        Err(err) => (respond::error(&err), Some(err.code())),
    };
    if let Ok(value) = HeaderValue::from_str(&invocation_id) {
        res.headers_mut().insert("x-stratus-invocation-id", value);
    }
    state
        .metrics
        .observe(resolved.as_ref(), res.status(), code, started.elapsed());
    tracing::debug!(
        invocation_id,
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "call"
    );
    res
}

async fn call<B>(
    state: &Arc<AppState>,
    req: Request<B>,
    invocation_id: &str,
    resolved: &mut Option<(String, String)>,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let target = parse(state, &req)?;
    // Only the headers are held across the wait below (the body need not
    // be shareable between threads).
    let headers = req.headers();
    let resolve = |snapshot: &crate::registry::Snapshot| -> Result<_, ApiError> {
        let presented = tenancy::authenticate(headers, snapshot, &state.operator, &state.tokens, |id| {
            state.runtime.lineage(id)
        })?;
        let (caller, sub_tenant) = caller_of(&presented, headers)?;
        let route = tenancy::visibility::route(
            snapshot,
            &presented,
            &caller,
            sub_tenant.as_ref(),
            &Address {
                account: &target.account,
                name: &target.name,
                qualifier: &target.qualifier,
            },
        )?;
        Ok((presented, caller, sub_tenant, route))
    };
    let resolved_now = match resolve(&state.registry.snapshot()) {
        // A name or key this node does not know yet may have been written
        // through another node a moment ago: catch up once, then answer.
        Err(ApiError::NotFound(_) | ApiError::Unauthorized(_))
            if state.cluster.is_some() && state.registry.catch_up(CATCH_UP).await =>
        {
            resolve(&state.registry.snapshot())
        }
        other => other,
    };
    let (presented, caller, sub_tenant, Route { version, alias, via }) = resolved_now?;
    *resolved = Some((version.account.to_string(), version.function.to_string()));
    authorize(&version, sub_tenant.as_ref())?;
    let admission = admit(state, &version, &caller, sub_tenant.as_ref()).await?;
    let call = Call {
        invocation_id,
        caller: &caller,
        sub_tenant,
        alias,
        via,
        presented: &presented,
    };
    run(state, req, target, &version, call, admission).await
}

fn caller_of(presented: &Presented, headers: &http::HeaderMap) -> Result<(Caller, Option<SubTenantId>), ApiError> {
    match presented {
        Presented::Nested { caller, sub_tenant, .. } => {
            // A nested call keeps its chain's sub-tenant: the owner's code
            // cannot switch to another of the caller's customers.
            match tenancy::sub_tenant_from_header(headers)? {
                Some(named) if Some(&named) != sub_tenant.as_ref() => Err(ApiError::Forbidden(format!(
                    "a nested call acts for the sub-tenant of its invocation ({}), not {named}",
                    sub_tenant.as_ref().map_or("none", SubTenantId::as_str)
                ))),
                _ => Ok((caller.clone(), sub_tenant.clone())),
            }
        }
        Presented::Stratus {
            caller,
            sub_tenant: Some(bound),
        } => {
            // A sub-tenant token acts for its sub-tenant only.
            match tenancy::sub_tenant_from_header(headers)? {
                Some(named) if &named != bound => Err(ApiError::Forbidden(format!(
                    "this token acts for sub-tenant {bound}, not {named}"
                ))),
                _ => Ok((caller.clone(), Some(bound.clone()))),
            }
        }
        Presented::Stratus {
            caller,
            sub_tenant: None,
        } => Ok((caller.clone(), tenancy::sub_tenant_from_header(headers)?)),
        // A sub-tenant must come from an authenticated source: without a
        // credential the header means nothing.
        _ => Ok((Caller::Anonymous, None)),
    }
}

async fn admit(
    state: &AppState,
    version: &VersionRecord,
    caller: &Caller,
    sub_tenant: Option<&SubTenantId>,
) -> Result<Admission, ApiError> {
    let function_cap = version
        .config
        .max_concurrency_per_sub_tenant
        .map(|cap| (format!("{}/{}", version.account_id, version.function), cap));
    // Anonymous callers are counted per owner: one owner's public functions
    // under a flood cannot take the anonymous capacity of another's.
    let (bucket, name) = match caller {
        Caller::Anonymous => (
            format!("{}@{}", tenancy::ANONYMOUS, version.account_id),
            format!("anonymous callers of {}", version.account),
        ),
        Caller::Account { account, id, .. } => (id.clone(), format!("account {account}")),
    };
    state.quotas.admit(&bucket, &name, sub_tenant, function_cap).await
}

fn authorize(version: &VersionRecord, sub_tenant: Option<&SubTenantId>) -> Result<(), ApiError> {
    if version.config.tenancy == Tenancy::Multi && sub_tenant.is_none() {
        return Err(ApiError::SubTenantRequired);
    }
    Ok(())
}

/// Who a resolved call runs for, and how it was addressed.
struct Call<'a> {
    invocation_id: &'a str,
    caller: &'a Caller,
    sub_tenant: Option<SubTenantId>,
    alias: Option<AliasName>,
    via: Option<String>,
    presented: &'a Presented,
}

async fn run<B>(
    state: &Arc<AppState>,
    req: Request<B>,
    target: Target,
    version: &Arc<VersionRecord>,
    call: Call<'_>,
    admission: Admission,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let limit = state.config.limits.request_body_bytes;
    if let Some(length) = req.headers().get(http::header::CONTENT_LENGTH) {
        let length = length.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        if length.is_none_or(|length| length > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    let pre = state.prepare_version(version).await?;

    let (mut parts, body) = req.into_parts();
    // The guest never sees host-reserved headers, nor a Stratus credential;
    // a public function's own auth scheme passes through.
    let Call {
        invocation_id,
        caller,
        sub_tenant,
        alias,
        via,
        presented,
    } = call;
    let strip_auth = !version.config.public || presented.is_stratus();
    if strip_auth {
        parts.headers.remove(http::header::AUTHORIZATION);
    }
    let reserved: Vec<_> = parts
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with(RESERVED_PREFIX))
        .cloned()
        .collect();
    for name in reserved {
        parts.headers.remove(name);
    }
    parts.uri = target.guest_uri;
    let exceeded = Arc::new(AtomicBool::new(false));
    let too_slow = Arc::new(AtomicBool::new(false));
    let min_rate = state.config.min_body_rate;
    let stalled = Arc::new(AtomicBool::new(false));
    let body = RateBody::new(body, min_rate, too_slow.clone()).with_stall(stalled.clone());
    let request = Request::from_parts(parts, LimitedBody::new(body, limit, exceeded.clone()));

    let started = Instant::now();
    let call = CallContext {
        invocation_id,
        caller: caller.name(),
        caller_id: caller.id(),
        key_id: caller.key_id(),
        sub_tenant: sub_tenant.as_ref(),
        alias: alias.as_ref(),
        via: via.as_deref(),
        parent: match presented {
            Presented::Nested { parent, .. } => Some(parent),
            _ => None,
        },
    };
    let invoked = state.runtime.invoke(pre, version, call, request).await;
    let invoked = match invoked {
        Ok(invoked) => invoked,
        Err(failed) => {
            let err = if exceeded.load(Ordering::Acquire) {
                ApiError::PayloadTooLarge { limit }
            } else if too_slow.load(Ordering::Acquire) {
                min_rate.error()
            } else if matches!(failed.error, ApiError::Timeout { .. }) && stalled.load(Ordering::Acquire) {
                // The deadline passed while the function waited for the
                // rest of a body the client never sent.
                min_rate.error()
            } else {
                failed.error
            };
            let status = err.status().as_u16();
            // A failed call's output, and the host's line on why it failed,
            // are what its author most needs to see.
            if !failed.printed.is_empty() {
                let entry = log_entry(invocation_id, version, caller, sub_tenant.as_ref(), status, started);
                state.logs.record(&entry, &failed.printed);
            }
            log_call(
                invocation_id,
                version,
                caller,
                sub_tenant.as_ref(),
                status,
                started.elapsed(),
            );
            return Err(err);
        }
    };
    let (mut response, finished) = invoked.split();
    if exceeded.load(Ordering::Acquire) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if too_slow.load(Ordering::Acquire) {
        return Err(min_rate.error());
    }
    let status = response.status().as_u16();
    let headers = response.headers_mut();
    headers.insert("x-stratus-version", HeaderValue::from(version.number));

    let id = invocation_id.to_string();
    let version = version.clone();
    let caller = caller.clone();
    let logs = state.clone();
    tokio::spawn(async move {
        let printed = finished.await;
        // The caps count the call until its guest is done, body included.
        drop(admission);
        if !printed.is_empty() {
            let entry = log_entry(&id, &version, &caller, sub_tenant.as_ref(), status, started);
            logs.logs.record(&entry, &printed);
        }
        log_call(&id, &version, &caller, sub_tenant.as_ref(), status, started.elapsed());
    });
    Ok(response)
}

/// The tags of one call's log lines.
fn log_entry(
    invocation_id: &str,
    version: &VersionRecord,
    caller: &Caller,
    sub_tenant: Option<&SubTenantId>,
    status: u16,
    started: Instant,
) -> LogEntry {
    LogEntry {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        invocation_id: invocation_id.to_string(),
        owner: version.account.to_string(),
        owner_id: version.account_id.clone(),
        caller: caller.name().to_string(),
        function: version.function.to_string(),
        version: version.number,
        sub_tenant: sub_tenant.map(|s| s.to_string()),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        stream: crate::runtime::output::Stream::Stratus,
        line: String::new(),
        started,
    }
}

fn log_call(
    invocation_id: &str,
    version: &VersionRecord,
    caller: &Caller,
    sub_tenant: Option<&SubTenantId>,
    status: u16,
    elapsed: Duration,
) {
    // A line per call costs a warm call about a fifth of its throughput
    // (formatting and a write to stderr), so answered calls are logged at
    // debug (`RUST_LOG=info,stratus::server::trigger=debug` turns the
    // access log on); the metrics and the functions' own logs cover them.
    // A call the host failed is always worth a line.
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                invocation_id,
                owner = %version.account,
                caller = caller.name(),
                function = %version.function,
                version = version.number,
                sub_tenant = sub_tenant.map(SubTenantId::as_str),
                status,
                duration_ms = elapsed.as_millis() as u64,
                "invocation"
            )
        };
    }
    if status >= 500 {
        line!(info);
    } else {
        line!(debug);
    }
}
