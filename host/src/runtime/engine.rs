//! The engine and its pool: settings fixed at start, the linker with the
//! host's interfaces, the epoch ticker and the warm TTL sweeper, and a new
//! store for each environment. What runs on it is in the files beside:
//! `code.rs` (compiled components), `admission.rs` (which environment a call
//! gets), `invoke.rs` (a call), `live.rs` (calls running now).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::call::CallContext;
use super::loopback::Loopback;
use super::state::{self, HostState};
use super::{code_cache, compile, cores, credentials, egress, kv, live, reserve, warm};
use crate::registry::kv::{KvBackend, Namespace};
use crate::registry::records::VersionRecord;
use crate::tenancy::lineage::Lineage;

/// Bytes one host call may take from the guest (strings, lists).
const HOSTCALL_FUEL: usize = 16 << 20;

/// Engine and pool settings, fixed at start.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Environments that may exist at once (the pool's slots).
    pub pool_slots: u32,
    /// The largest memory a version may ask for, in MiB (the pool's slot size).
    pub max_memory_mb: u32,
    /// Zero each async stack before reuse, so one guest's stack never shows
    /// through to the next.
    pub async_stack_zeroing: bool,
    /// How often running guests are interrupted to check deadlines and yield.
    pub epoch_tick: Duration,
    /// Where compiled components are cached.
    pub code_cache_dir: PathBuf,
    /// How long a call waits for a free slot before 503.
    pub queue_wait: Duration,
    /// Limits of the warm pool.
    pub warm: warm::WarmLimits,
    /// Loopback or private addresses guests may reach anyway (when a
    /// function's `allow_outbound` also lists them). Empty by default.
    pub private_exempt: Vec<std::net::IpAddr>,
    /// New environments per second, host-wide (0: no limit). Reservations'
    /// `min` are not held to it.
    pub instantiation_rate: f64,
    /// How long one compile may run before it is stopped.
    pub compile_timeout: Duration,
    /// Whether the code cache is this host's own, so that artifacts no
    /// version uses may be deleted (a shared cache is left alone).
    pub own_code_cache: bool,
    /// Compiles one account may have queued or running.
    pub max_queued_compiles: u32,
    /// The program compiles run in (`stratus compile-component`); `None`
    /// is this process's own binary.
    pub compiler: Option<PathBuf>,
}

/// Counters the host exposes as metrics.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Compiled components loaded from the disk cache.
    pub cache_hits: Counter,
    /// Components compiled because the cache did not have them.
    pub compiles: Counter,
    /// Environments currently alive (running or idle).
    pub live_instances: Gauge,
    /// Warm environments idle now.
    pub idle_instances: Gauge,
    /// Calls served by a warm environment that had served before.
    pub warm_hits: Counter,
    /// Calls that found no warm or reserved environment of their partition.
    pub cold_starts: Counter,
    /// Invocation tokens minted at a guest's request.
    pub tokens_minted: Counter,
    /// Times a call running past a tick waited for a core.
    pub core_waits: Counter,
}

/// The engine with its linker and compiled versions.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    /// Compiled artifacts, by component and engine.
    pub(super) code_cache: Box<dyn code_cache::CodeCache>,
    /// The cluster's compiled components, on a cluster node.
    pub(super) shared_code: std::sync::OnceLock<Arc<dyn code_cache::SharedCode>>,
    pub(super) loaded: RwLock<HashMap<String, ProxyPre<HostState>>>,
    /// One compile at a time, in a child process, fairly by account, so
    /// deploys never take the cores serving calls for long.
    pub(super) compiler: compile::Compiler,
    /// Functions' key/value data.
    pub(super) kv: Arc<dyn KvBackend>,
    /// One permit per pool slot: the budget of live environments, idle
    /// ones included.
    pub(super) slots: Arc<Semaphore>,
    pub(super) queue_wait: Duration,
    /// Idle warm environments by partition.
    pub(super) warm: warm::WarmPool,
    /// Signs invocation tokens.
    pub(super) minter: Arc<dyn credentials::Minter>,
    /// Invocations running now, by id: a token is only alive while its
    /// invocation is in here.
    pub(super) live: Arc<live::LiveSet>,
    /// Serves guest requests addressed to the host itself; set once the
    /// server exists (weak: the server owns the runtime).
    pub(super) loopback: std::sync::OnceLock<std::sync::Weak<dyn Loopback>>,
    /// How guests' requests leave: the private-address guard, pinned
    /// connections, TLS roots.
    pub(super) egress: Arc<egress::Egress>,
    /// Unbound environments kept for reservations.
    pub reserved: reserve::Reserved,
    /// The cores, shared fairly among calls longer than a tick.
    pub(super) cores: Arc<cores::Cores>,
    /// The host-wide instantiation rate.
    pub(super) rate: reserve::InstantiationRate,
    /// Metrics.
    pub stats: RuntimeStats,
    /// Set (to the grace period, in ms) when a shutdown's grace runs out:
    /// calls still waiting for their answer then end with a 504.
    pub(super) cut_off: tokio::sync::watch::Sender<Option<u64>>,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(
        config: &RuntimeConfig,
        kv: Arc<dyn KvBackend>,
        minter: Arc<dyn credentials::Minter>,
    ) -> anyhow::Result<Arc<Self>> {
        let settings = compile::EngineSettings {
            pool_slots: config.pool_slots.max(1),
            max_memory_mb: config.max_memory_mb,
            async_stack_zeroing: config.async_stack_zeroing,
        };
        let slots = settings.pool_slots;
        let wasm = compile::engine_config(&settings);
        if compile::is_large_pool(&settings) {
            tracing::info!(
                slots,
                max_memory_mb = config.max_memory_mb,
                "large pool: bounds-checked memories"
            );
        }
        let engine = Engine::new(&wasm)?;
        warn_if_mappings_short(slots);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        state::add_kv_to_linker(&mut linker)?;
        state::add_credentials_to_linker(&mut linker)?;

        let code_cache = code_cache::DirCodeCache::open(&config.code_cache_dir, &engine, config.own_code_cache)?;

        // As many guests run at once as the runtime has worker threads
        // (tokio's default: one per core).
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = cores::Cores::new(workers, config.epoch_tick);
        let ticker = engine.weak();
        let tick = config.epoch_tick;
        let sweeper = cores.clone();
        std::thread::Builder::new()
            .name("stratus-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    sweeper.sweep();
                    std::thread::sleep(if sweeper.contended() {
                        tick / cores::CONTENDED_SPLIT
                    } else {
                        tick
                    });
                }
            })?;

        let stats = RuntimeStats {
            core_waits: cores.waits.clone(),
            ..RuntimeStats::default()
        };
        let warm = warm::WarmPool::new(config.warm.clone(), stats.idle_instances.clone());
        let runtime = Arc::new(Self {
            engine,
            linker,
            code_cache: Box::new(code_cache),
            shared_code: std::sync::OnceLock::new(),
            loaded: RwLock::new(HashMap::new()),
            compiler: compile::Compiler::new(
                match &config.compiler {
                    Some(program) => program.clone(),
                    None => std::env::current_exe()?,
                },
                settings,
                config.compile_timeout,
                config.max_queued_compiles,
            ),
            kv,
            slots: Arc::new(Semaphore::new(slots as usize)),
            queue_wait: config.queue_wait,
            warm,
            minter,
            live: Default::default(),
            loopback: std::sync::OnceLock::new(),
            egress: Arc::new(egress::Egress::new(config.private_exempt.clone().into())),
            reserved: reserve::Reserved::new(),
            cores,
            rate: reserve::InstantiationRate::new(config.instantiation_rate),
            stats,
            cut_off: tokio::sync::watch::Sender::new(None),
        });
        // Idle environments past their TTL give their slots back.
        let weak = Arc::downgrade(&runtime);
        std::thread::Builder::new()
            .name("stratus-warm-ttl".into())
            .spawn(move || {
                while let Some(runtime) = weak.upgrade() {
                    runtime.warm.expire();
                    drop(runtime);
                    std::thread::sleep(Duration::from_millis(500));
                }
            })?;
        Ok(runtime)
    }

    /// A new store for a version, for the call context given.
    pub(super) fn new_store(
        &self,
        version: &VersionRecord,
        call: CallContext<'_>,
        invocation: credentials::Invocation,
    ) -> Store<HostState> {
        let config = &version.config;
        let kv = kv::KvAccess {
            store: self.kv.clone(),
            namespace: Namespace::new(&version.account_id, call.caller_id, call.sub_tenant),
        };
        let credentials = credentials::CredentialsAccess {
            invocation,
            minter: self.minter.clone(),
            minted: self.stats.tokens_minted.clone(),
        };
        let outbound = state::Outbound {
            allow: config.allow_outbound.clone(),
            egress: self.egress.clone(),
            loopback: self.loopback.get().cloned(),
            deadline: Instant::now(),
            output: None,
        };
        let state = HostState::new(&config.env, config.memory_mb, outbound, kv, credentials);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // What one host call may make the host allocate for the guest's
        // strings and lists: above the largest KV value (1 MiB), far below
        // the 128 MiB default.
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        // Each epoch tick: past the call's deadline, trap; otherwise yield so
        // other calls share the cores with a guest that spins, waiting for a
        // core if the call's account or sub-tenant has had more than its
        // share (`cores.rs`).
        store.epoch_deadline_callback(|ctx| {
            let now = Instant::now();
            if now >= ctx.data().deadline {
                return Err(Trap::Interrupt.into());
            }
            Ok(match ctx.data().seat.as_ref().and_then(|seat| seat.tick(now)) {
                Some(wait) => UpdateDeadline::YieldCustom(1, wait),
                None => UpdateDeadline::Yield(1),
            })
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Lets guests reach the host's own origin in-process.
    pub fn set_loopback(&self, loopback: std::sync::Weak<dyn Loopback>) {
        let _ = self.loopback.set(loopback);
    }

    /// Shares compiled components with the other nodes of a cluster.
    pub fn set_shared_code(&self, shared: Arc<dyn code_cache::SharedCode>) {
        let _ = self.shared_code.set(shared);
    }

    /// Hex of the engine's compatibility hash.
    pub fn engine_compat(&self) -> String {
        code_cache::compat_of(&self.engine)
    }

    /// Ends every call still waiting for its guest's answer with a 504
    /// (the shutdown grace of `grace_ms` is over); their guests stop.
    pub fn cut_off(&self, grace_ms: u64) {
        self.cut_off.send_replace(Some(grace_ms));
    }

    /// Stops every running invocation of the account with id `account`, as
    /// the function's owner or as its caller: a deleted account's code
    /// does not go on acting, nor anything for it.
    pub fn stop_account(&self, account: &str) {
        self.live.stop_account(account);
    }

    /// Where the running invocation `id` sits in its chain; `None` once it
    /// has ended.
    pub fn lineage(&self, id: &str) -> Option<Lineage> {
        self.live.lineage(id)
    }

    /// Drops at once the idle and reserved environments of deleted versions
    /// (by id) and, with `caller`, those a deleted account called in.
    pub fn retire(&self, versions: &std::collections::HashSet<String>, caller: Option<&str>) {
        self.warm
            .retire(|p| versions.contains(&p.version) || caller == Some(p.caller.as_str()));
        self.reserved.retire(|k| versions.contains(&k.version));
    }
}

/// Memory mappings one live environment may add: its memory slot is split
/// around the accessible pages and the copy-on-write data image (4 for
/// `hello`; up to 10 measured with bounds-checked large pools).
const MAPPINGS_PER_SLOT: u64 = 10;

/// Linux refuses new mappings past `vm.max_map_count` (65,530 by default),
/// and an instantiation that needs one fails with `ENOMEM`: say so at start
/// rather than at the six-thousandth environment.
fn warn_if_mappings_short(slots: u32) {
    let Some(cap) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    else {
        return;
    };
    let wanted = u64::from(slots) * MAPPINGS_PER_SLOT + 4096;
    if wanted > cap {
        tracing::warn!(
            slots,
            max_map_count = cap,
            wanted,
            "vm.max_map_count may cap live environments below --pool-slots; raise it (sysctl -w vm.max_map_count={wanted})"
        );
    }
}
