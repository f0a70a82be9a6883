//! Settings of `stratus serve`, validated before the listener binds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::RuntimeConfig;

/// Defaults applied to a deploy that does not set a limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Invocation deadline.
    pub timeout_ms: u64,
    /// The largest timeout a deploy may ask for.
    pub max_timeout_ms: u64,
    /// Guest memory.
    pub memory_mb: u32,
    /// Request body bytes a guest may receive.
    pub request_body_bytes: u64,
    /// Component upload size.
    pub component_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_timeout_ms: 15 * 60 * 1000,
            memory_mb: 128,
            request_body_bytes: 6 * 1024 * 1024,
            component_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What one account may hold of the host's shared resources, so that no
/// account can take what the others need.
#[derive(Debug, Clone)]
pub struct AccountLimits {
    /// Environments one account's reservations may keep (their `target`s
    /// added up).
    pub max_reserved: u32,
    /// Environments all reservations together may keep; `None` is half the
    /// pool. Always below the pool's size, so unreserved calls keep room.
    pub max_reserved_slots: Option<u32>,
    /// Component uploads one account may have in progress at once.
    pub max_uploads: u32,
    /// Component uploads whose bodies the host receives at once, over all
    /// accounts (the others wait their turn, then 503).
    pub max_uploads_total: u32,
    /// Clients following one account's function logs at once.
    pub max_log_followers: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            max_reserved: 32,
            max_reserved_slots: None,
            max_uploads: 2,
            max_uploads_total: 8,
            max_log_followers: 8,
        }
    }
}

impl AccountLimits {
    /// The host-wide ceiling on reserved environments for a pool of `slots`.
    pub fn reserved_ceiling(&self, slots: u32) -> u32 {
        self.max_reserved_slots.unwrap_or(slots / 2)
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The trigger (and admin, unless `admin_listen`) address.
    pub listen: SocketAddr,
    /// A private address for the admin API and metrics.
    pub admin_listen: Option<SocketAddr>,
    /// The data directory (sled database and code cache).
    pub data_dir: PathBuf,
    /// Enables `{name}--{account}.{base}` addressing.
    pub base_domain: Option<String>,
    /// Engine settings.
    pub runtime: RuntimeConfig,
    /// Default and maximum limits.
    pub limits: Limits,
    /// Concurrency caps per account and sub-tenant.
    pub quotas: crate::tenancy::quota::QuotaLimits,
    /// Per-account bounds on shared resources.
    pub accounts: AccountLimits,
    /// What each account may store.
    pub storage: crate::registry::StorageLimits,
    /// The `iss` of every token this host signs.
    pub issuer: String,
    /// The operator key, if given rather than generated.
    pub operator_key: Option<String>,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The slowest a request body (a call's or an upload's) may come in.
    pub min_body_rate: crate::runtime::body::MinRate,
    /// How long calls in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Bytes of guest output kept per function for `stratus logs`.
    pub function_log_bytes: usize,
    /// How far apart the clocks of the nodes minting and checking tokens may
    /// be (`nbf` and `iat` only).
    pub clock_skew: Duration,
    /// The cluster this node is one of; `None` for one node on sled.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl ServeConfig {
    /// Defaults for a data directory.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let runtime = RuntimeConfig {
            pool_slots: 256,
            max_memory_mb: 256,
            async_stack_zeroing: true,
            epoch_tick: Duration::from_millis(1),
            code_cache_dir: data_dir.join("code-cache"),
            queue_wait: Duration::from_secs(2),
            warm: crate::runtime::warm::WarmLimits {
                idle_ttl: Duration::from_secs(60),
                // As many as a sub-tenant may run at once (its default cap),
                // so a burst's environments all come back rather than being
                // dropped and re-instantiated; the host-wide cap bounds memory.
                max_idle_per_partition: 32,
                max_idle_total: 128,
            },
            private_exempt: Vec::new(),
            instantiation_rate: 10_000.0,
            compile_timeout: Duration::from_secs(60),
            own_code_cache: true,
            max_queued_compiles: 4,
            compiler: None,
        };
        Self {
            listen,
            admin_listen: None,
            data_dir,
            base_domain: None,
            runtime,
            limits: Limits::default(),
            quotas: Default::default(),
            accounts: AccountLimits::default(),
            storage: Default::default(),
            issuer: "stratus".to_string(),
            operator_key: None,
            header_read_timeout: Duration::from_secs(10),
            min_body_rate: crate::runtime::body::MinRate {
                rate: 1024,
                grace: Duration::from_secs(10),
            },
            shutdown_grace: Duration::from_secs(30),
            function_log_bytes: 1024 * 1024,
            clock_skew: Duration::from_secs(1),
            cluster: None,
        }
    }

    /// Checks the settings; the message names the bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(key) = &self.operator_key {
            if key.len() < 16 {
                anyhow::bail!("STRATUS_OPERATOR_KEY must be at least 16 characters");
            }
            // Bearer text is read trimmed: such a key could never be sent.
            if key.trim() != key {
                anyhow::bail!("STRATUS_OPERATOR_KEY must not begin or end with white space");
            }
        }
        if self.accounts.max_uploads == 0 || self.accounts.max_uploads_total == 0 {
            anyhow::bail!("--max-uploads-per-account and --max-uploads must be at least 1");
        }
        if self.runtime.max_queued_compiles == 0 {
            anyhow::bail!("--max-queued-compiles-per-account must be at least 1");
        }
        if let Some(base) = &self.base_domain
            && (base.is_empty() || base.starts_with('.') || base.contains('/'))
        {
            anyhow::bail!("--base-domain {base:?} is not a domain name");
        }
        if self.issuer.is_empty() {
            anyhow::bail!("--issuer must not be empty");
        }
        if self.limits.memory_mb > self.runtime.max_memory_mb {
            anyhow::bail!("the default memory limit exceeds the pool's slot size");
        }
        if self.runtime.epoch_tick.is_zero() || self.runtime.epoch_tick > Duration::from_secs(1) {
            anyhow::bail!("--epoch-tick must be between 1ns and 1s");
        }
        if !(self.runtime.instantiation_rate >= 0.0 && self.runtime.instantiation_rate.is_finite()) {
            anyhow::bail!("--max-instantiations-per-second must be 0 (no limit) or more");
        }
        if self.runtime.compile_timeout.is_zero() {
            anyhow::bail!("--compile-timeout must be more than 0");
        }
        if self.runtime.pool_slots == 0 {
            anyhow::bail!("--pool-slots must be at least 1");
        }
        if self
            .accounts
            .max_reserved_slots
            .is_some_and(|ceiling| ceiling >= self.runtime.pool_slots)
        {
            anyhow::bail!(
                "--max-reserved-slots must be below --pool-slots ({}), so that calls without a reservation keep room",
                self.runtime.pool_slots
            );
        }
        Ok(())
    }
}
