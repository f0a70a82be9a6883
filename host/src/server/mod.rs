//! The server: listeners, connection handling and request dispatch.
//!
//! `/fn/…` (and `{name}--{account}.{base}` hosts) go to the trigger; the admin
//! API, `/metrics` and `/healthz` go to their handlers.

pub mod admin;
pub mod aliases;
pub mod cluster;
pub mod deploy;
pub mod introspect;
pub mod logs;
pub mod loopback;
pub mod metrics;
mod openapi;
pub mod private;
mod request;
pub mod reserve;
pub mod respond;
pub mod routes;
mod state;
pub mod trigger;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::credentials::keys;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::records::VersionState;
use crate::runtime::Runtime;
use crate::tenancy::{self, Principal};
use respond::Body;

pub use state::{AppState, Role};

/// Opens the database, sets up the engine and the operator key. Fails before
/// any listener binds if anything is wrong.
pub async fn prepare(config: ServeConfig) -> anyhow::Result<(Arc<AppState>, Option<String>)> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", config.data_dir.display()))?;
    let (registry, cluster, operator_key) = match &config.cluster {
        None => {
            let registry = Arc::new(Registry::open_with(&config.data_dir, config.storage.clone()).await?);
            (registry, None, None)
        }
        Some(cluster) => {
            let client = cluster.connect().await?;
            let joined = crate::cluster::settings::join(
                &client,
                cluster,
                &shared_settings(&config),
                config.operator_key.as_deref(),
            )
            .await
            .map_err(|err| {
                // etcd's own errors say little to an operator.
                if err.downcast_ref::<etcd_client::Error>().is_some() {
                    anyhow::anyhow!(
                        "cannot reach etcd at {} (is it running, and is --cluster right?): {err}",
                        cluster.endpoints.join(",")
                    )
                } else {
                    err
                }
            })?;
            let registry = Arc::new(Registry::on_etcd(client.clone(), &cluster.key(""), config.storage.clone()).await?);
            let node = state::ClusterNode {
                config: cluster.clone(),
                peers: crate::cluster::members::Directory::follow(client.clone(), cluster.clone()),
                placement: crate::cluster::placement::View::follow(client.clone(), cluster.clone()),
                client,
                advertise: std::sync::OnceLock::new(),
                membership: std::sync::OnceLock::new(),
            };
            (registry, Some(node), Some(joined))
        }
    };
    // After opening, so the files sled made are covered too; a shared code
    // cache given elsewhere is left to its owner's settings.
    // Through a symlink too: what the link points at is what holds the data.
    let real = config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| config.data_dir.clone());
    private::restrict_tree(&real).map_err(|e| {
        anyhow::anyhow!(
            "cannot make the data directory {} private: {e}",
            config.data_dir.display()
        )
    })?;
    private::check_code_cache(&config.runtime.code_cache_dir)?;
    let tokens = Arc::new(
        crate::credentials::tokens::Tokens::load_or_create(&registry, &config.issuer)
            .await?
            .with_clock_skew(config.clock_skew)
            .with_node(cluster.as_ref().map(|node| node.config.node_id.clone())),
    );
    let runtime = Runtime::new(&config.runtime, registry.kv(), tokens.clone())?;
    if let Some(node) = &cluster {
        runtime.set_shared_code(Arc::new(crate::cluster::code::EtcdCode::new(
            node.client.clone(),
            &node.config,
            &runtime.engine_compat(),
            config.runtime.compile_timeout,
        )));
    }

    let (operator, generated) = match (operator_key, &config.operator_key) {
        (Some(joined), _) => (joined.operator_hash, joined.generated),
        (None, Some(key)) => (keys::hash(key), None),
        (None, None) => match registry.meta("operator_key_hash") {
            Some(stored) => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&stored, &mut hash)?;
                (hash, None)
            }
            None => {
                let key = keys::generate_operator();
                registry
                    .set_meta("operator_key_hash", hex::encode(key.hash()).as_bytes())
                    .await?;
                (key.hash(), Some(key.expose().to_string()))
            }
        },
    };
    let quotas = crate::tenancy::quota::Quotas::new(config.quotas.clone());
    let config_log_bytes = config.function_log_bytes;
    let uploads_per_account = config.accounts.max_uploads;
    let uploads_total = config.accounts.max_uploads_total as usize;
    let max_followers = config.accounts.max_log_followers;
    let mut metrics = metrics::Metrics::new(&runtime, &quotas);
    let logs = logs::Logs::new(config_log_bytes, max_followers);
    metrics.register_gauge(
        "log_followers",
        "Clients following function logs now.",
        logs.following.clone(),
    );
    let state = Arc::new(AppState {
        registry,
        runtime,
        operator,
        config,
        tokens,
        quotas,
        metrics,
        listening: std::sync::OnceLock::new(),
        logs,
        upload_slots: tokio::sync::Semaphore::new(uploads_total),
        upload_checks: tokio::sync::Semaphore::new(1),
        uploads: crate::tenancy::inflight::InFlight::new(
            uploads_per_account,
            "uploads in progress",
            "--max-uploads-per-account",
        ),
        cluster,
    });
    let loopback: std::sync::Weak<dyn crate::runtime::Loopback> = Arc::downgrade(&state) as _;
    state.runtime.set_loopback(loopback);
    Ok((state, generated))
}

/// The settings every node of a cluster must share, by flag name.
fn shared_settings(config: &ServeConfig) -> crate::cluster::settings::Settings {
    let storage = &config.storage;
    let arc_size = config
        .cluster
        .as_ref()
        .map_or(crate::cluster::DEFAULT_ARC_SIZE, |c| c.arc_size);
    let pairs: [(&str, String); 15] = [
        ("issuer", config.issuer.clone()),
        ("base-domain", config.base_domain.clone().unwrap_or_default()),
        ("clock-skew", humantime::format_duration(config.clock_skew).to_string()),
        ("max-keys-per-account", storage.max_keys.to_string()),
        ("max-functions-per-account", storage.max_functions.to_string()),
        ("max-versions-per-account", storage.max_versions.to_string()),
        ("max-aliases-per-account", storage.max_aliases.to_string()),
        ("max-env-bytes", storage.max_env_bytes.to_string()),
        ("max-blob-bytes-per-account", storage.max_blob_bytes.to_string()),
        ("kv-quota-per-account", storage.kv.account_quota_bytes.to_string()),
        ("kv-quota-per-namespace", storage.kv.quota_bytes.to_string()),
        ("kv-max-key-bytes", storage.kv.max_key_bytes.to_string()),
        ("kv-max-value-bytes", storage.kv.max_value_bytes.to_string()),
        ("max-reserved-per-account", config.accounts.max_reserved.to_string()),
        ("arc-size", arc_size.to_string()),
    ];
    crate::cluster::settings::Settings(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// How long a cluster node that leaves keeps taking calls: the frontends
/// read the membership every second.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(1500);

/// Compiles versions left half-done by a crash and loads the ready ones from
/// the code cache, in the background; starts keeping reservations filled.
pub fn warm_up(state: &Arc<AppState>) {
    reserve::spawn(state);
    let state = state.clone();
    tokio::spawn(async move {
        let snapshot = state.registry.snapshot();
        for entry in snapshot.all_functions() {
            for version in entry.versions.values() {
                match &version.state {
                    VersionState::Ready => {
                        if let Err(err) = state.prepare_version(version).await {
                            tracing::warn!(error = %err, function = %version.function, "could not load a version");
                        }
                    }
                    VersionState::Compiling => {
                        deploy::compile_version(state.clone(), version.as_ref().clone(), None).await
                    }
                    VersionState::Failed { .. } => {}
                }
            }
        }
    });
}

/// Serves until `shutdown` resolves, then lets the calls in flight finish
/// (for up to the shutdown grace) and flushes the database.
pub async fn run(
    state: Arc<AppState>,
    main: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let connections = Arc::new(GracefulShutdown::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_loop(state.clone(), main, Role::Main, connections.clone()));
    if let Some(admin) = admin {
        tasks.spawn(accept_loop(state.clone(), admin, Role::Admin, connections.clone()));
    }
    shutdown.await;
    if let Some(node) = &state.cluster
        && let Some(membership) = node.membership.get()
    {
        // Out of the membership first, still serving, until the frontends
        // have stopped choosing this node: a call they send meanwhile is
        // answered rather than meeting a closed connection.
        tracing::info!("leaving the cluster: draining for {} ms", DRAIN.as_millis());
        membership.leave(&node.client).await;
        tokio::time::sleep(DRAIN).await;
    }
    let grace = state.config.shutdown_grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: finishing the calls in flight"
    );
    // The listeners close with their loops, so new connections are refused;
    // open ones finish the request they are serving and close.
    tasks.shutdown().await;
    if let Ok(connections) = Arc::try_unwrap(connections) {
        let mut finished = std::pin::pin!(connections.shutdown());
        match tokio::time::timeout(grace, &mut finished).await {
            Ok(()) => tracing::info!("every call in flight finished"),
            Err(_) => {
                tracing::warn!("the grace period is over: cutting off the calls still running");
                // Calls still waiting for their guest answer 504; a second
                // lets those answers out. A body already streaming is cut.
                state.runtime.cut_off(grace.as_millis() as u64);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), &mut finished).await;
            }
        }
    }
    state.registry.flush().await?;
    Ok(())
}

async fn accept_loop(state: Arc<AppState>, listener: TcpListener, role: Role, connections: Arc<GracefulShutdown>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Guests often write bodies in several chunks; without this each
        // response can stall on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        // A client trickling its headers (slowloris) is cut off here.
        let header_read_timeout = state.config.header_read_timeout;
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(dispatch(state, req, role, peer).await) }
        });
        let connection = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
        });
    }
}

async fn dispatch(state: Arc<AppState>, req: Request<Incoming>, role: Role, _peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    let admin_here = role == Role::Admin || state.config.admin_listen.is_none();
    if role == Role::Main && trigger::is_trigger(&state, &req) {
        return trigger::handle(state, req).await;
    }
    if path == "/v1/introspect" {
        return introspect::handle(&state, req).await;
    }
    if path == "/.well-known/jwks.json" {
        return respond::json(http::StatusCode::OK, &state.tokens.jwks());
    }
    if path == "/healthz" {
        return respond::text(http::StatusCode::OK, "ok\n", "text/plain");
    }
    if path == "/readyz" {
        return readyz(&state);
    }
    if path == "/metrics" && admin_here {
        return metrics_page(&state, &req, role);
    }
    if admin_here && (path == "/admin/v1" || path.starts_with("/admin/v1/")) {
        return admin::handle(state, req).await;
    }
    respond::error(&ApiError::NotFound(format!("no route {path}")))
}

/// Whether this node serves: its registry snapshot has caught up (it has,
/// once the listener is up: the registry is read before), and how far
/// behind the store it may be now. A node cut off from etcd stays ready and
/// keeps serving from its snapshot, so an orchestrator does not take every
/// node out at once.
fn readyz(state: &AppState) -> Response<Body> {
    let lag = state.registry.lag();
    respond::json(
        http::StatusCode::OK,
        &serde_json::json!({
            "ready": true,
            "node": state.cluster.as_ref().map(|c| c.config.node_id.clone()),
            "revision": state.registry.snapshot().revision(),
            "lag_seconds": lag.as_secs_f64(),
        }),
    )
}

/// Serves the metrics; on the main listener they name accounts, so only the
/// operator may read them there.
fn metrics_page(state: &AppState, req: &Request<hyper::body::Incoming>, role: Role) -> Response<Body> {
    if role == Role::Main {
        match tenancy::authenticate_admin(req.headers(), &state.registry.snapshot(), &state.operator) {
            Ok(Principal::Operator) => {}
            Ok(Principal::Account { .. }) => {
                return respond::error(&ApiError::Forbidden("metrics need the operator key".into()));
            }
            Err(err) => return respond::error(&err),
        }
    }
    state
        .metrics
        .registry_revision
        .set(state.registry.snapshot().revision() as i64);
    state.metrics.registry_lag.set(state.registry.lag().as_secs_f64());
    let text = match state.metrics.encode() {
        Ok(text) => text,
        Err(err) => return respond::error(&ApiError::internal(err)),
    };
    respond::text(
        http::StatusCode::OK,
        text,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}
