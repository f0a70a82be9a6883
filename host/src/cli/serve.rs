//! `stratus serve`: the only command that opens the database.

use std::ffi::OsString;
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
    #[arg(long, env = "STRATUS_POOL_SLOTS", default_value_t = defaults().runtime.pool_slots)]
    pool_slots: u32,
    /// The largest memory a function may use, MiB.
    #[arg(long, env = "STRATUS_MAX_MEMORY_MB", default_value_t = defaults().runtime.max_memory_mb)]
    max_memory_mb: u32,
    /// Largest request body a function receives, bytes.
    #[arg(long, env = "STRATUS_MAX_REQUEST_BODY", default_value_t = defaults().limits.request_body_bytes)]
    max_request_body: u64,
    /// Zero guest stacks between uses (true unless measured otherwise).
    #[arg(long, env = "STRATUS_ASYNC_STACK_ZEROING", default_value_t = defaults().runtime.async_stack_zeroing, action = clap::ArgAction::Set)]
    async_stack_zeroing: bool,
    /// How long an idle warm environment is kept, e.g. `60s`.
    #[arg(long, env = "STRATUS_WARM_IDLE_TTL", default_value = duration_text(defaults().runtime.warm.idle_ttl), value_parser = humantime::parse_duration)]
    warm_idle_ttl: std::time::Duration,
    /// Idle warm environments kept per partition.
    #[arg(long, env = "STRATUS_WARM_MAX_IDLE_PER_PARTITION", default_value_t = defaults().runtime.warm.max_idle_per_partition)]
    warm_max_idle_per_partition: usize,
    /// Idle warm environments kept host-wide (least recently used go first).
    #[arg(long, env = "STRATUS_WARM_MAX_IDLE", default_value_t = defaults().runtime.warm.max_idle_total)]
    warm_max_idle: usize,
    /// Concurrent calls per caller account.
    #[arg(long, env = "STRATUS_MAX_CONCURRENCY_PER_ACCOUNT", default_value_t = defaults().quotas.per_account)]
    max_concurrency_per_account: u32,
    /// Concurrent calls per sub-tenant (functions may set their own).
    #[arg(long, env = "STRATUS_MAX_CONCURRENCY_PER_SUB_TENANT", default_value_t = defaults().quotas.per_sub_tenant)]
    max_concurrency_per_sub_tenant: u32,
    /// Environments one account's reservations may keep, all together.
    #[arg(long, env = "STRATUS_MAX_RESERVED_PER_ACCOUNT", default_value_t = defaults().accounts.max_reserved)]
    max_reserved_per_account: u32,
    /// Environments all reservations together may keep (default: half of
    /// --pool-slots); the rest of the pool stays for calls without one.
    #[arg(long, env = "STRATUS_MAX_RESERVED_SLOTS")]
    max_reserved_slots: Option<u32>,
    /// Component uploads one account may have in progress at once (each
    /// is held in memory while it is checked).
    #[arg(long, env = "STRATUS_MAX_UPLOADS_PER_ACCOUNT", default_value_t = defaults().accounts.max_uploads)]
    max_uploads_per_account: u32,
    /// Component uploads received at once over all accounts; the others
    /// wait their turn (up to --header-read-timeout, then 503).
    #[arg(long, env = "STRATUS_MAX_UPLOADS", default_value_t = defaults().accounts.max_uploads_total)]
    max_uploads: u32,
    /// Clients that may follow one account's function logs at once.
    #[arg(long, env = "STRATUS_MAX_LOG_FOLLOWERS_PER_ACCOUNT", default_value_t = defaults().accounts.max_log_followers)]
    max_log_followers_per_account: u32,
    /// How long one compile may run before it is stopped and the deploy
    /// refused, e.g. `60s`.
    #[arg(long, env = "STRATUS_COMPILE_TIMEOUT", default_value = duration_text(defaults().runtime.compile_timeout), value_parser = humantime::parse_duration)]
    compile_timeout: std::time::Duration,
    /// Compiles one account may have queued or running at once; past it a
    /// deploy answers 409.
    #[arg(long, env = "STRATUS_MAX_QUEUED_COMPILES_PER_ACCOUNT", default_value_t = defaults().runtime.max_queued_compiles)]
    max_queued_compiles_per_account: u32,
    /// Account keys one account may have.
    #[arg(long, env = "STRATUS_MAX_KEYS_PER_ACCOUNT", default_value_t = defaults().storage.max_keys)]
    max_keys_per_account: usize,
    /// Functions one account may have.
    #[arg(long, env = "STRATUS_MAX_FUNCTIONS_PER_ACCOUNT", default_value_t = defaults().storage.max_functions)]
    max_functions_per_account: usize,
    /// Versions one account may keep, over all its functions.
    #[arg(long, env = "STRATUS_MAX_VERSIONS_PER_ACCOUNT", default_value_t = defaults().storage.max_versions)]
    max_versions_per_account: usize,
    /// Aliases and cross-account aliases one account may have.
    #[arg(long, env = "STRATUS_MAX_ALIASES_PER_ACCOUNT", default_value_t = defaults().storage.max_aliases)]
    max_aliases_per_account: usize,
    /// Bytes of environment variables (names and values) a version or an
    /// alias may set.
    #[arg(long, env = "STRATUS_MAX_ENV_BYTES", default_value_t = defaults().storage.max_env_bytes)]
    max_env_bytes: usize,
    /// Bytes of components one account may store.
    #[arg(long, env = "STRATUS_MAX_BLOB_BYTES_PER_ACCOUNT", default_value_t = defaults().storage.max_blob_bytes)]
    max_blob_bytes_per_account: u64,
    /// Bytes of KV data all of one account's functions may hold, over all
    /// callers and sub-tenants (each sub-tenant also has 10 MiB of its own).
    #[arg(long, env = "STRATUS_KV_QUOTA_PER_ACCOUNT", default_value_t = defaults().storage.kv.account_quota_bytes)]
    kv_quota_per_account: u64,
    /// Bytes of KV keys and values one namespace (owner, caller, sub-tenant)
    /// may hold.
    #[arg(long, env = "STRATUS_KV_QUOTA_PER_NAMESPACE", default_value_t = defaults().storage.kv.quota_bytes)]
    kv_quota_per_namespace: u64,
    /// Longest KV key, in bytes.
    #[arg(long, env = "STRATUS_KV_MAX_KEY_BYTES", default_value_t = defaults().storage.kv.max_key_bytes)]
    kv_max_key_bytes: usize,
    /// Largest KV value, in bytes.
    #[arg(long, env = "STRATUS_KV_MAX_VALUE_BYTES", default_value_t = defaults().storage.kv.max_value_bytes)]
    kv_max_value_bytes: usize,
    /// How long a call waits at a cap or for a free environment, e.g. `2s`.
    #[arg(long, env = "STRATUS_QUEUE_WAIT", default_value = duration_text(defaults().runtime.queue_wait), value_parser = humantime::parse_duration)]
    queue_wait: std::time::Duration,
    /// How often running guests are interrupted to check their deadline and
    /// yield the core to other calls, e.g. `1ms`.
    #[arg(long, env = "STRATUS_EPOCH_TICK", default_value = duration_text(defaults().runtime.epoch_tick), value_parser = humantime::parse_duration)]
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
    #[arg(long, env = "STRATUS_MAX_INSTANTIATIONS_PER_SECOND", default_value_t = defaults().runtime.instantiation_rate)]
    max_instantiations_per_second: f64,
    /// How long a client may take to send its request headers, e.g. `10s`.
    #[arg(long, env = "STRATUS_HEADER_READ_TIMEOUT", default_value = duration_text(defaults().header_read_timeout), value_parser = humantime::parse_duration)]
    header_read_timeout: std::time::Duration,
    /// The slowest a request body may arrive, bytes per second on average
    /// once the header read timeout has passed (0: no minimum). Slower
    /// bodies are cut off with 408.
    #[arg(long, env = "STRATUS_MIN_BODY_RATE", default_value_t = defaults().min_body_rate.rate)]
    min_body_rate: u64,
    /// How long calls in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "STRATUS_SHUTDOWN_GRACE", default_value = duration_text(defaults().shutdown_grace), value_parser = humantime::parse_duration)]
    shutdown_grace: std::time::Duration,
    /// Bytes of guest output kept per function for `stratus logs` (oldest
    /// lines go first).
    #[arg(long, env = "STRATUS_FUNCTION_LOG_BYTES", default_value_t = defaults().function_log_bytes)]
    function_log_bytes: usize,
    /// The `iss` of every token the host signs, e.g. its public URL.
    #[arg(long, env = "STRATUS_ISSUER", default_value = defaults().issuer.as_str())]
    issuer: String,
    /// The cluster's etcd, if this is one of its nodes.
    #[command(flatten)]
    etcd: super::cluster::EtcdArgs,
    /// This node's id, unique among the cluster's live nodes (e.g. the pod name).
    #[arg(long, env = "STRATUS_NODE_ID", requires = "cluster")]
    node_id: Option<String>,
    /// The URL other nodes reach this node at (default: http:// and the
    /// listening address).
    #[arg(long, env = "STRATUS_ADVERTISE", requires = "cluster")]
    advertise: Option<String>,
    /// etcd's backend quota (its `--quota-backend-bytes`, 2 GiB unless set):
    /// no account's storage limits may come near it.
    #[arg(long, env = "STRATUS_CLUSTER_STORE_BYTES", default_value_t = 2 << 30)]
    cluster_store_bytes: u64,
    /// Distinct nodes in an arc (cluster; every node must share it): a
    /// reservation's environments are split across this many nodes (fewer
    /// when its target is smaller), and the frontends spread a group's calls
    /// (one function's, or one sub-tenant's of it) over as many.
    #[arg(long, env = "STRATUS_ARC_SIZE", default_value_t = crate::cluster::DEFAULT_ARC_SIZE)]
    arc_size: usize,
    /// How far apart the nodes' clocks may be: tokens' `nbf` and `iat` are
    /// allowed this much (never `exp`), e.g. `1s`.
    #[arg(long, env = "STRATUS_CLOCK_SKEW", default_value = "1s", value_parser = humantime::parse_duration)]
    clock_skew: std::time::Duration,
    /// Log format.
    #[arg(long, env = "STRATUS_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// A TOML file of settings: each key is one of these flags' long name
    /// (`pool-slots = 512`). Flags and environment variables win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective settings as TOML, and exit.
    #[arg(long)]
    print_config: bool,
}

/// Settings that are not themselves settable from a file.
const NOT_IN_FILE: &[&str] = &["config", "print-config", "help"];

/// `argv` with the settings of `serve --config FILE` put in front of the
/// command line's own, so flags and environment variables win and clap
/// parses and checks every value the same way wherever it came from.
pub fn args_with_config_file(argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(at) = argv.iter().position(|a| a == "serve") else {
        return Ok(argv);
    };
    let given: Vec<String> = argv[at + 1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let path = given.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=")
            .map(str::to_string)
            .or_else(|| (a == "--config").then(|| given.get(i + 1).cloned()).flatten())
    });
    let Some(path) = path else { return Ok(argv) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the config file {path}"))?;
    let table: toml::Table = text.parse().with_context(|| format!("{path} is not valid TOML"))?;
    let command = <Serve as clap::Args>::augment_args(clap::Command::new("serve"));
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !NOT_IN_FILE.contains(&key.as_str()))
        else {
            anyhow::bail!(
                "{path}: unknown key `{key}`; the keys are the long flags of `stratus serve`, e.g. `pool-slots`"
            );
        };
        let on_command_line = given
            .iter()
            .any(|a| a == &format!("--{key}") || a.starts_with(&format!("--{key}=")));
        let in_environment = arg.get_env().is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => anyhow::bail!(
                    "{path}: `{key}` must be a string, number or boolean, not {}",
                    other.type_str()
                ),
            };
            from_file.push(OsString::from(format!("--{key}={text}")));
        }
    }
    let mut out = argv[..=at].to_vec();
    out.extend(from_file);
    out.extend_from_slice(&argv[at + 1..]);
    Ok(out)
}

/// The effective settings as TOML: every setting, wherever its value came from.
pub fn effective_config(matches: &clap::ArgMatches) -> String {
    let command = <Serve as clap::Args>::augment_args(clap::Command::new("serve"));
    let mut out = String::new();
    for arg in command.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if NOT_IN_FILE.contains(&long) {
            continue;
        }
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let quote = |v: &String| {
            if v.parse::<f64>().is_ok() || v == "true" || v == "false" {
                v.clone()
            } else {
                toml::Value::String(v.clone()).to_string()
            }
        };
        let line = match values.as_slice() {
            [] if arg.get_num_args().is_some_and(|n| n.max_values() > 1) => format!("{long} = []"),
            [] => format!("# {long} is not set"),
            [one] if !arg.get_action().takes_values() || arg.get_num_args().is_none_or(|n| n.max_values() <= 1) => {
                format!("{long} = {}", quote(one))
            }
            many => format!("{long} = [{}]", many.iter().map(quote).collect::<Vec<_>>().join(", ")),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The settings a flag left out takes: `ServeConfig`'s, defined once there
/// and used by `serve`, its config file and `stratus up` alike.
fn defaults() -> &'static ServeConfig {
    static DEFAULTS: std::sync::OnceLock<ServeConfig> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| ServeConfig::new(([127, 0, 0, 1], 8080).into(), ".stratus".into()))
}

/// A duration as the flags take it, e.g. `1m`. Built once per flag when the
/// command line is parsed, and kept for the process (clap wants `'static`).
fn duration_text(duration: std::time::Duration) -> &'static str {
    Box::leak(humantime::format_duration(duration).to_string().into_boxed_str())
}

impl Serve {
    /// Builds the configuration from the flags.
    pub fn config(&self) -> ServeConfig {
        let mut config = ServeConfig::new(self.listen, self.data.clone());
        config.admin_listen = self.admin_listen;
        config.base_domain = self.base_domain.clone();
        if let Some(dir) = &self.code_cache {
            config.runtime.code_cache_dir = dir.clone();
            config.runtime.own_code_cache = false;
        }
        config.runtime.pool_slots = self.pool_slots;
        config.runtime.epoch_tick = self.epoch_tick;
        config.runtime.queue_wait = self.queue_wait;
        config.quotas.queue_wait = self.queue_wait;
        config.quotas.per_account = self.max_concurrency_per_account;
        config.quotas.per_sub_tenant = self.max_concurrency_per_sub_tenant;
        config.accounts.max_reserved = self.max_reserved_per_account;
        config.accounts.max_reserved_slots = self.max_reserved_slots;
        config.accounts.max_uploads = self.max_uploads_per_account;
        config.accounts.max_uploads_total = self.max_uploads;
        config.storage.max_keys = self.max_keys_per_account;
        config.storage.max_functions = self.max_functions_per_account;
        config.storage.max_versions = self.max_versions_per_account;
        config.storage.max_aliases = self.max_aliases_per_account;
        config.storage.max_env_bytes = self.max_env_bytes;
        config.storage.max_blob_bytes = self.max_blob_bytes_per_account;
        config.storage.kv.account_quota_bytes = self.kv_quota_per_account;
        config.storage.kv.quota_bytes = self.kv_quota_per_namespace;
        config.storage.kv.max_key_bytes = self.kv_max_key_bytes;
        config.storage.kv.max_value_bytes = self.kv_max_value_bytes;
        config.runtime.compile_timeout = self.compile_timeout;
        config.runtime.max_queued_compiles = self.max_queued_compiles_per_account;
        config.accounts.max_log_followers = self.max_log_followers_per_account;
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
        config.min_body_rate = crate::runtime::body::MinRate {
            rate: self.min_body_rate,
            grace: self.header_read_timeout,
        };
        config.shutdown_grace = self.shutdown_grace;
        config.function_log_bytes = self.function_log_bytes;
        config.issuer = self.issuer.clone();
        config.limits.request_body_bytes = self.max_request_body;
        config.operator_key = std::env::var("STRATUS_OPERATOR_KEY").ok();
        config.clock_skew = self.clock_skew;
        config
    }

    /// The cluster settings from the flags, if `--cluster` was given.
    fn cluster(&self) -> anyhow::Result<Option<crate::cluster::ClusterConfig>> {
        if self.etcd.cluster.is_none() {
            return Ok(None);
        }
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => hostname(),
        };
        anyhow::ensure!(
            !node_id.is_empty()
                && node_id.len() <= 63
                && node_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
            "--node-id {node_id:?} must be 1–63 letters, digits, '-', '_' or '.'"
        );
        let advertise = match &self.advertise {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                anyhow::ensure!(
                    !self.listen.ip().is_unspecified(),
                    "--advertise is needed when --listen is {}: other nodes cannot reach an unspecified address",
                    self.listen
                );
                // The port may still be 0 here: filled in once bound.
                format!("http://{}", self.listen)
            }
        };
        anyhow::ensure!(self.arc_size >= 1, "--arc-size must be at least 1");
        let mut cluster = self.etcd.config(node_id, advertise)?;
        cluster.arc_size = self.arc_size;
        Ok(Some(cluster))
    }

    /// Runs until SIGTERM or Ctrl-C; with `--print-config`, prints the
    /// settings instead.
    pub async fn execute(self, matches: Option<&clap::ArgMatches>) -> anyhow::Result<()> {
        let mut config = self.config();
        config.cluster = self.cluster()?;
        if config.cluster.is_some() {
            // Limits sized for etcd, where the flags left the single node's.
            let defaulted =
                |id: &str| matches.is_none_or(|m| m.value_source(id) == Some(clap::parser::ValueSource::DefaultValue));
            if defaulted("max_blob_bytes_per_account") {
                config.storage.max_blob_bytes = crate::cluster::DEFAULT_BLOB_BYTES_PER_ACCOUNT;
            }
            if defaulted("kv_quota_per_account") {
                config.storage.kv.account_quota_bytes = crate::cluster::DEFAULT_KV_BYTES_PER_ACCOUNT;
            }
            crate::cluster::check_account_bounds(
                config.storage.max_blob_bytes,
                config.storage.kv.account_quota_bytes,
                self.cluster_store_bytes,
            )?;
        }
        // Checked before anything binds or opens, with the flag's name.
        config.validate()?;
        if self.print_config {
            if let Some(matches) = matches {
                print!("{}", effective_config(matches));
            }
            return Ok(());
        }
        init_tracing(&self.log_format);
        crate::server::private::restrict_new_files();
        let (state, listener, admin) = start(config).await?;
        server::run(state, listener, admin, shutdown_signal()).await
    }
}

/// The machine's host name, the default node id (a pod's name on Kubernetes).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
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
    if let Some(node) = &state.cluster {
        // Announced once it listens, at the port it got.
        let mut cluster = node.config.clone();
        if cluster.advertise == format!("http://{}", config.listen) {
            cluster.advertise = format!("http://{listening}");
        }
        // The admin API on a listener of its own: other nodes ask it for
        // logs there, at the advertised host.
        if let Some(admin) = &admin {
            let port = admin.local_addr()?.port();
            let host = cluster
                .advertise
                .parse::<http::Uri>()
                .ok()
                .and_then(|uri| Some(format!("{}://{}", uri.scheme_str()?, uri.host()?)))
                .unwrap_or_else(|| format!("http://{}", listening.ip()));
            cluster.admin = Some(format!("{host}:{port}"));
        }
        let membership = crate::cluster::members::join(&node.client, &cluster).await?;
        let _ = node.advertise.set(cluster.advertise.clone());
        let _ = node.membership.set(membership);
        crate::cluster::placement::Leader {
            client: node.client.clone(),
            cluster: cluster.clone(),
            registry: state.registry.clone(),
            peers: node.peers.clone(),
            view: node.placement.clone(),
            arc_size: cluster.arc_size,
            keep: config.runtime.warm.idle_ttl,
        }
        .spawn(std::sync::Arc::downgrade(&state), {
            let state = std::sync::Arc::downgrade(&state);
            move || {
                let state = state.upgrade()?;
                Some(state.cluster.as_ref()?.membership.get()?.lease())
            }
        });
        println!(
            "stratus node {} joined the cluster at {}",
            cluster.node_id,
            cluster.endpoints.join(",")
        );
    }
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
