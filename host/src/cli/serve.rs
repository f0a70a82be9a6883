//! `stratus serve`: the only command that opens the database.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::server;

/// Run the host.
#[derive(Debug, Clone, clap::Args)]
pub struct Serve {
    /// Address for calls (and the admin API unless --admin-listen).
    #[arg(long, env = "STRATUS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve the admin API and /metrics only here.
    #[arg(long, env = "STRATUS_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Data directory: database and code cache.
    #[arg(long, env = "STRATUS_DATA", default_value = ".stratus")]
    data: PathBuf,
    /// Give each function the host `{name}--{account}.BASE`.
    #[arg(long, env = "STRATUS_BASE_DOMAIN")]
    base_domain: Option<String>,
    /// Compiled-component cache (default: DATA/code-cache). Several hosts
    /// with the same engine settings may share one.
    #[arg(long, env = "STRATUS_CODE_CACHE")]
    code_cache: Option<PathBuf>,
    /// Environments that may be alive at once.
    #[arg(long, env = "STRATUS_POOL_SLOTS", default_value_t = 256)]
    pool_slots: u32,
    /// The largest memory a function may use, MiB.
    #[arg(long, env = "STRATUS_MAX_MEMORY_MB", default_value_t = 256)]
    max_memory_mb: u32,
    /// Largest request body a function receives, bytes.
    #[arg(long, env = "STRATUS_MAX_REQUEST_BODY", default_value_t = 6 * 1024 * 1024)]
    max_request_body: u64,
    /// Zero guest stacks between uses (true unless measured otherwise).
    #[arg(long, env = "STRATUS_ASYNC_STACK_ZEROING", default_value_t = true, action = clap::ArgAction::Set)]
    async_stack_zeroing: bool,
    /// How long an idle warm environment is kept, e.g. `60s`.
    #[arg(long, env = "STRATUS_WARM_IDLE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    warm_idle_ttl: std::time::Duration,
    /// Idle warm environments kept per partition.
    #[arg(long, env = "STRATUS_WARM_MAX_IDLE_PER_PARTITION", default_value_t = 4)]
    warm_max_idle_per_partition: usize,
    /// Idle warm environments kept host-wide (least recently used go first).
    #[arg(long, env = "STRATUS_WARM_MAX_IDLE", default_value_t = 128)]
    warm_max_idle: usize,
    /// Concurrent calls per caller account.
    #[arg(long, env = "STRATUS_MAX_CONCURRENCY_PER_ACCOUNT", default_value_t = 128)]
    max_concurrency_per_account: u32,
    /// Concurrent calls per sub-tenant (functions may set their own).
    #[arg(long, env = "STRATUS_MAX_CONCURRENCY_PER_SUB_TENANT", default_value_t = 32)]
    max_concurrency_per_sub_tenant: u32,
    /// How long a call waits at a cap or for a free environment, e.g. `2s`.
    #[arg(long, env = "STRATUS_QUEUE_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    queue_wait: std::time::Duration,
    /// How often running guests are interrupted to check their deadline and
    /// yield the core to other calls, e.g. `1ms`.
    #[arg(long, env = "STRATUS_EPOCH_TICK", default_value = "1ms", value_parser = humantime::parse_duration)]
    epoch_tick: std::time::Duration,
    /// A loopback or private address functions may reach anyway, when their
    /// --allow-outbound also lists it. Off by default: guests cannot reach
    /// the host's network neighbours or cloud metadata. Repeatable.
    #[arg(
        long = "allow-private-outbound",
        value_name = "IP",
        env = "STRATUS_ALLOW_PRIVATE_OUTBOUND",
        value_delimiter = ','
    )]
    allow_private_outbound: Vec<std::net::IpAddr>,
    /// New environments per second host-wide (0: no limit). Calls past it
    /// wait within the queue wait; reservations' `min` are not held to it.
    #[arg(long, env = "STRATUS_MAX_INSTANTIATIONS_PER_SECOND", default_value_t = 10_000.0)]
    max_instantiations_per_second: f64,
    /// How long a client may take to send its request headers, e.g. `10s`.
    #[arg(long, env = "STRATUS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: std::time::Duration,
    /// How long calls in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "STRATUS_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: std::time::Duration,
    /// Bytes of guest output kept per function for `stratus logs` (oldest
    /// lines go first).
    #[arg(long, env = "STRATUS_FUNCTION_LOG_BYTES", default_value_t = 1024 * 1024)]
    function_log_bytes: usize,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

impl Serve {
    /// Builds the configuration from the flags.
    pub fn config(&self) -> ServeConfig {
        let mut config = ServeConfig::new(self.listen, self.data.clone());
        config.admin_listen = self.admin_listen;
        config.base_domain = self.base_domain.clone();
        if let Some(dir) = &self.code_cache {
            config.runtime.code_cache_dir = dir.clone();
        }
        config.runtime.pool_slots = self.pool_slots;
        config.runtime.epoch_tick = self.epoch_tick;
        config.runtime.queue_wait = self.queue_wait;
        config.quotas.queue_wait = self.queue_wait;
        config.quotas.per_account = self.max_concurrency_per_account;
        config.quotas.per_sub_tenant = self.max_concurrency_per_sub_tenant;
        config.runtime.warm.idle_ttl = self.warm_idle_ttl;
        config.runtime.warm.max_idle_per_partition = self.warm_max_idle_per_partition;
        config.runtime.warm.max_idle_total = self.warm_max_idle;
        config.runtime.max_memory_mb = self.max_memory_mb;
        // A small pool slot lowers the default with it.
        config.limits.memory_mb = config.limits.memory_mb.min(self.max_memory_mb);
        config.runtime.async_stack_zeroing = self.async_stack_zeroing;
        config.runtime.private_exempt = self.allow_private_outbound.clone();
        config.runtime.instantiation_rate = self.max_instantiations_per_second;
        config.header_read_timeout = self.header_read_timeout;
        config.shutdown_grace = self.shutdown_grace;
        config.function_log_bytes = self.function_log_bytes;
        config.limits.request_body_bytes = self.max_request_body;
        config.operator_key = std::env::var("STRATUS_OPERATOR_KEY").ok();
        config
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn execute(self) -> anyhow::Result<()> {
        init_tracing(&self.log_format);
        let (state, listener, admin) = start(self.config()).await?;
        server::run(state, listener, admin, shutdown_signal()).await
    }
}

/// Sets up host logs; `RUST_LOG` overrides the default level.
pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Validates, opens, binds and announces; the caller then runs the server.
pub async fn start(
    config: ServeConfig,
) -> anyhow::Result<(std::sync::Arc<server::AppState>, TcpListener, Option<TcpListener>)> {
    let (state, generated_key) = server::prepare(config.clone()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    if let Some(key) = generated_key {
        println!("operator key (shown once, keep it): {key}");
    }
    let listening = listener.local_addr()?;
    let _ = state.listening.set(listening);
    println!("stratus listening on http://{listening}");
    if let Some(admin) = &admin {
        println!("stratus admin listening on http://{}", admin.local_addr()?);
    }
    server::warm_up(&state);
    Ok((state, listener, admin))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
