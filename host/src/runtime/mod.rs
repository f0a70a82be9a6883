//! The runtime: one wasmtime engine, compiled components cached on disk, and a
//! fresh store + instance for every invocation.

pub mod bindings;
pub mod body;
mod code_cache;
pub mod compile;
pub mod credentials;
pub mod egress;
pub mod kv;
pub mod loopback;
pub mod output;
pub mod reserve;
pub mod state;
pub mod validate;
pub mod warm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body::Body;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, oneshot};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::error::ApiError;
use crate::names::SubTenantId;
use crate::registry::kv::{KvBackend, Namespace};
use crate::registry::records::{Reuse, VersionRecord};
pub use state::HostState;

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

pub use crate::tenancy::lineage::{Lineage, MAX_NESTING_DEPTH};

pub use loopback::Loopback;

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
    /// Invocation tokens minted at a guest's request.
    pub tokens_minted: Counter,
}

/// The engine with its linker and compiled versions.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    /// Compiled artifacts, by component and engine.
    code_cache: Box<dyn code_cache::CodeCache>,
    loaded: RwLock<HashMap<String, ProxyPre<HostState>>>,
    /// One compile at a time, in a child process, fairly by account, so
    /// deploys never take the cores serving calls for long.
    compiler: compile::Compiler,
    /// Functions' key/value data.
    kv: Arc<dyn KvBackend>,
    /// One permit per pool slot: the budget of live environments, idle
    /// ones included.
    slots: Arc<Semaphore>,
    queue_wait: Duration,
    /// Idle warm environments by partition.
    warm: warm::WarmPool,
    /// Signs invocation tokens.
    minter: Arc<dyn credentials::Minter>,
    /// Invocations running now, by id: a token is only alive while its
    /// invocation is in here.
    live: std::sync::Mutex<HashMap<String, Running>>,
    /// Serves guest requests addressed to the host itself; set once the
    /// server exists (weak: the server owns the runtime).
    loopback: std::sync::OnceLock<std::sync::Weak<dyn Loopback>>,
    /// How guests' requests leave: the private-address guard, pinned
    /// connections, TLS roots.
    egress: Arc<egress::Egress>,
    /// Unbound environments kept for reservations.
    pub reserved: reserve::Reserved,
    /// The host-wide instantiation rate.
    rate: reserve::InstantiationRate,
    /// Metrics.
    pub stats: RuntimeStats,
    /// Set (to the grace period, in ms) when a shutdown's grace runs out:
    /// calls still waiting for their answer then end with a 504.
    cut_off: tokio::sync::watch::Sender<Option<u64>>,
}

/// What a compile produced.
pub struct Compiled {
    /// Ready to instantiate.
    pub pre: ProxyPre<HostState>,
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

        let ticker = engine.weak();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("stratus-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(tick);
                }
            })?;

        let stats = RuntimeStats::default();
        let warm = warm::WarmPool::new(config.warm.clone(), stats.idle_instances.clone());
        let runtime = Arc::new(Self {
            engine,
            linker,
            code_cache: Box::new(code_cache),
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

    /// Takes a pool slot for a new environment: at once if one is free, else
    /// by evicting an idle warm environment, else after a bounded wait.
    async fn acquire_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return Ok(permit);
            }
            if !self.warm.evict_oldest() && !self.reserved.shed_optional() {
                break;
            }
        }
        match tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::Unavailable {
                message: "the host is shutting down".into(),
                retry_after: 1,
            }),
            Err(_) => Err(ApiError::Unavailable {
                message: format!("no free environment within {} ms", self.queue_wait.as_millis()),
                retry_after: 1,
            }),
        }
    }

    /// A new store for a version, for the call context given.
    fn new_store(
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
        // other calls share the cores with a guest that spins.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// The pre-instantiated component for `sha256`, if already loaded.
    pub fn loaded(&self, sha256: &str) -> Option<ProxyPre<HostState>> {
        let map = match self.loaded.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(sha256).cloned()
    }

    /// Loads `sha256` from the disk cache, or compiles it and caches it.
    /// The compile is `account`'s (its id): it waits in that account's line
    /// for the one compile slot, and only then are its bytes read, with
    /// `bytes`. A deploy passes its place in the account's bound of queued
    /// compiles ([`Runtime::enqueue_compile`]).
    pub async fn prepare<B>(
        self: &Arc<Self>,
        sha256: &str,
        account: &str,
        queued: Option<compile::Ticket>,
        bytes: impl FnOnce() -> Result<B, ApiError>,
    ) -> Result<Compiled, ApiError>
    where
        B: AsRef<[u8]>,
    {
        if let Some(pre) = self.loaded(sha256) {
            return Ok(Compiled { pre });
        }
        let started = Instant::now();
        let path = self.code_cache.artifact_path(sha256);
        let mut bytes = Some(bytes);
        let mut queued = queued;
        // A second round only when a cached artifact turned out unusable.
        for _ in 0..2 {
            let mut compiled_now = false;
            if !self.code_cache.contains(sha256) {
                let _turn = self.compiler.turn(account, queued.take()).await?;
                // Another compile of the same bytes may have finished meanwhile.
                if !self.code_cache.contains(sha256) {
                    let fetch = bytes.take().ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("a fresh artifact of {sha256} is unusable"))
                    })?;
                    // Reading (and hashing) tens of MiB from the blob store
                    // must not stall an async worker that serves calls.
                    let bytes = tokio::task::block_in_place(fetch)?;
                    self.compiler.compile(bytes.as_ref(), &path).await?;
                    self.stats.compiles.inc();
                    compiled_now = true;
                }
            }
            let this = self.clone();
            let sha = sha256.to_string();
            let loaded = tokio::task::spawn_blocking(move || this.load_blocking(&sha, started, !compiled_now))
                .await
                .map_err(ApiError::internal)??;
            let Some(compiled) = loaded else {
                // Unusable (truncated, or from another build): compile again.
                self.code_cache.discard(sha256);
                continue;
            };
            let mut map = match self.loaded.write() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.insert(sha256.to_string(), compiled.pre.clone());
            return Ok(compiled);
        }
        Err(ApiError::internal(anyhow::anyhow!(
            "the compiled component {} could not be loaded",
            path.display()
        )))
    }

    /// Loads a compiled artifact from the cache and pre-instantiates it.
    /// `None` when the artifact is unusable.
    fn load_blocking(&self, sha256: &str, started: Instant, cache_hit: bool) -> Result<Option<Compiled>, ApiError> {
        let Some(component) = self.code_cache.load(&self.engine, sha256) else {
            return Ok(None);
        };
        if cache_hit {
            self.stats.cache_hits.inc();
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ApiError::InvalidComponent(format!("the component cannot be linked: {e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| {
            ApiError::InvalidComponent(format!(
                "the component does not export wasi:http/incoming-handler: {e:#}"
            ))
        })?;
        let compile_ms = started.elapsed().as_millis() as u64;
        tracing::info!(sha256, compile_ms, cache_hit, "component ready");
        Ok(Some(Compiled { pre }))
    }

    /// Runs one invocation and returns the guest's response; its body keeps
    /// streaming from the guest until it finishes or the deadline passes.
    ///
    /// A warm version's call first looks for an idle environment of its own
    /// partition; otherwise (and always for single-use versions) it takes a
    /// pool slot and instantiates a fresh one.
    pub async fn invoke<B>(
        self: &Arc<Self>,
        pre: ProxyPre<HostState>,
        version: &VersionRecord,
        call: CallContext<'_>,
        request: http::Request<B>,
    ) -> Result<Invoked, Failed>
    where
        B: Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let config = &version.config;
        let warm = config.reuse == Reuse::Warm;
        let partition = warm::Partition {
            version: version.id.clone(),
            config: warm::fingerprint(config),
            caller: call.caller_id.to_string(),
            sub_tenant: call.sub_tenant.cloned(),
            alias: call.alias.map(|a| a.to_string()),
            via: call.via.map(str::to_string),
        };
        let started = Instant::now();
        let mut deadline = started + Duration::from_millis(config.timeout_ms);
        if let Some(parent) = &call.parent {
            deadline = deadline.min(parent.deadline);
        }
        let timeout = deadline.saturating_duration_since(started);
        let lineage = Lineage {
            depth: call.parent.as_ref().map_or(0, |parent| parent.depth + 1),
            deadline,
            caller_id: call.caller_id.into(),
            key_id: call.key_id.into(),
            owner_id: version.account_id.as_str().into(),
        };
        let invocation = credentials::Invocation {
            id: call.invocation_id.to_string(),
            owner: version.account.to_string(),
            caller: call.caller.to_string(),
            sub_tenant: call.sub_tenant.map(|s| s.to_string()),
            function: version.function.to_string(),
            version: version.number,
            alias: call.alias.map(|a| a.to_string()),
            scopes: vec!["invoke".into(), "kv:rw".into()],
            // The deadline in whole seconds, rounded down: a token never
            // claims to live past its call.
            expires_at: (std::time::SystemTime::now() + timeout)
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        };
        let reused = if warm { self.warm.take(&partition) } else { None };
        let source = match reused {
            Some(env) => {
                self.stats.warm_hits.inc();
                Source::Warm(env)
            }
            None => match self.take_reserved(version, call) {
                Some(env) => Source::Warm(env),
                None => {
                    if !self.rate.take(self.queue_wait).await {
                        return Err(ApiError::Unavailable {
                            message: "the host is starting environments as fast as it allows".into(),
                            retry_after: 1,
                        }
                        .into());
                    }
                    Source::Fresh(
                        self.acquire_slot().await?,
                        self.new_store(version, call, invocation.clone()),
                    )
                }
            },
        };
        let live = LiveGuard::enter(self.clone(), invocation.id.clone(), lineage);
        let tokio_deadline = tokio::time::Instant::from_std(deadline);
        let (sender, receiver) = oneshot::channel();
        let this = self.clone();
        let captured: Arc<std::sync::OnceLock<output::CallOutput>> = Arc::default();
        let output = captured.clone();
        let output_so_far = captured.clone();
        let task = tokio::spawn(async move {
            // The invocation's tokens are alive exactly while this task runs.
            let _live = live;
            let run = async {
                let mut env = match source {
                    Source::Warm(env) => env,
                    Source::Fresh(permit, mut store) => {
                        store.data_mut().set_deadline(deadline);
                        let proxy = pre.instantiate_async(&mut store).await.map_err(Failure::from_trap)?;
                        warm::Env::new(store, proxy, permit, this.stats.live_instances.clone())
                    }
                };
                env.store.data_mut().set_deadline(deadline);
                env.store.data_mut().credentials.invocation = invocation;
                let _ = captured.set(env.store.data().output.clone());
                let http = |store: &mut Store<HostState>| {
                    let req = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
                    let out = store.data_mut().http().new_response_outparam(sender)?;
                    Ok::<_, wasmtime::Error>((req, out))
                };
                let (req, out) = http(&mut env.store).map_err(|e| Failure::Trap(format!("{e:#}")))?;
                let handled = env
                    .proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut env.store, req, out)
                    .await;
                if let Err(err) = handled {
                    return Err(Failure::of_call(err, env.store.data().limits.memory_refused()));
                }
                // Taken before the environment can serve anyone else.
                let printed = env.store.data().output.take();
                if warm {
                    this.warm.put(partition, env);
                }
                Ok(printed)
            };
            // The epoch callback stops guest code; this also stops a guest
            // parked in a host call (e.g. waiting on a slow client). Either
            // way a failed environment is dropped, never reused.
            match tokio::time::timeout_at(tokio_deadline, run).await {
                Ok(Ok(printed)) => (Ok(()), printed),
                // A failed environment is never reused: what is in its
                // buffer is this call's (and stays there for the error path
                // below to read as well).
                Ok(Err(failure)) => (
                    Err(failure),
                    output.get().map(output::CallOutput::contents).unwrap_or_default(),
                ),
                Err(_) => (
                    Err(Failure::Timeout),
                    output.get().map(output::CallOutput::contents).unwrap_or_default(),
                ),
            }
        });

        let timeout_ms = timeout.as_millis() as u64;
        // Until the guest answers, the call is this future: if it is dropped
        // (the client went away), the invocation stops at its next yield and
        // its environment is freed, rather than running to its deadline.
        self.attach(call.invocation_id, task.abort_handle());
        let cancel = AbortOnDrop(Some(task.abort_handle()));
        // What a failed call printed up to its failure, for its logs.
        let printed_so_far = || {
            output_so_far
                .get()
                .map(output::CallOutput::contents)
                .unwrap_or_default()
        };
        let mut cut_off = self.cut_off.subscribe();
        let answered = tokio::select! {
            answered = tokio::time::timeout_at(tokio_deadline, receiver) => answered,
            grace_ms = cut_off_signal(&mut cut_off) => {
                let error = ApiError::CutOff { grace_ms };
                return Err(Failed {
                    printed: printed_so_far().with_note(&error.to_string()),
                    error,
                });
            }
        };
        // The host's line in the function's log: the cause, where the
        // caller's message leaves it out.
        let mut cause = None;
        let timed_out = |ms: u64| format!("the function did not answer within {ms} ms, its deadline, and was stopped");
        let logs_hint = || {
            format!(
                ": its owner can read what it printed with `stratus logs {}/{} --invocation {}`",
                version.account, version.function, call.invocation_id
            )
        };
        let error = match answered {
            Ok(Ok(Ok(response))) => {
                cancel.disarm();
                return Ok(Invoked { response, task });
            }
            Ok(Ok(Err(code))) => ApiError::GuestError(format!("the function answered with an error: {code:?}")),
            Ok(Err(_)) => match task.await.inspect(|(result, _)| {
                if let Err(failure) = result {
                    cause = Some(failure.cause());
                }
            }) {
                Ok((Ok(()), _)) => ApiError::GuestError("the function returned without a response".into()),
                Ok((Err(Failure::Timeout), _)) => {
                    cause = Some(timed_out(timeout_ms));
                    ApiError::Timeout {
                        timeout_ms,
                        logs: logs_hint(),
                    }
                }
                Ok((
                    Err(failure @ (Failure::Panic | Failure::Exit(_) | Failure::Trap(_) | Failure::OutOfMemory { .. })),
                    _,
                )) => {
                    // How a function fails, and its limits, are its owner's
                    // to know: other callers learn only where to point them.
                    let what = if call.caller_id == version.account_id {
                        failure.summary()
                    } else {
                        "the function failed".into()
                    };
                    ApiError::GuestError(format!(
                        "{what}: its owner can read why with `stratus logs {}/{} --invocation {}`",
                        version.account, version.function, call.invocation_id
                    ))
                }
                Ok((Err(Failure::Saturated), _)) => ApiError::Unavailable {
                    message: "the host has no free environment".into(),
                    retry_after: 1,
                },
                Err(join) if join.is_cancelled() => {
                    ApiError::NotFound("the function's account was deleted while this call ran".into())
                }
                Err(join) => ApiError::internal(join),
            },
            Err(_) => {
                cause = Some(timed_out(timeout_ms));
                ApiError::Timeout {
                    timeout_ms,
                    logs: logs_hint(),
                }
            }
        };
        let note = cause.unwrap_or_else(|| error.to_string());
        Err(Failed {
            printed: printed_so_far().with_note(&note),
            error,
        })
    }

    /// Ends every call still waiting for its guest's answer with a 504
    /// (the shutdown grace of `grace_ms` is over); their guests stop.
    pub fn cut_off(&self, grace_ms: u64) {
        self.cut_off.send_replace(Some(grace_ms));
    }

    /// A reserved environment for this call, bound to its partition.
    fn take_reserved(&self, version: &VersionRecord, call: CallContext<'_>) -> Option<warm::Env> {
        // A cross-account alias may lower limits: its calls never take an
        // environment made for the function's own settings.
        if call.via.is_some() || !self.reserved.any() {
            return None;
        }
        let key = reserve::ReservedKey::of(version, call.alias.map(|a| a.as_str()));
        let mut env = self.reserved.take(&key, call.sub_tenant)?;
        env.store.data_mut().kv.namespace = Namespace::new(&version.account_id, call.caller_id, call.sub_tenant);
        Some(env)
    }

    /// Instantiates environments a reservation lacks: those below `min` at
    /// once (waiting for a slot like a call would, but not for the rate
    /// limit), the rest only while a slot is free and the rate allows.
    pub async fn top_up(
        self: &Arc<Self>,
        key: &reserve::ReservedKey,
        pre: &ProxyPre<HostState>,
        version: &VersionRecord,
        shortfall: reserve::Shortfall,
    ) {
        let mut permits = Vec::new();
        for _ in 0..shortfall.urgent {
            match self.acquire_slot().await {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        for _ in 0..shortfall.optional {
            if !self.rate.try_take() {
                break;
            }
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        self.reserved.begin(key, permits.len() as u32);
        for permit in permits {
            let env = self.instantiate_unbound(pre, version, permit).await;
            if let Err(err) = &env {
                tracing::warn!(error = %err, function = %version.function, "could not fill a reservation");
            }
            self.reserved.finish(key, env.ok());
        }
    }

    /// An environment of `version` bound to no one yet.
    async fn instantiate_unbound(
        &self,
        pre: &ProxyPre<HostState>,
        version: &VersionRecord,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<warm::Env, ApiError> {
        let call = CallContext {
            invocation_id: "",
            caller: "",
            caller_id: "",
            key_id: "",
            sub_tenant: None,
            parent: None,
            alias: None,
            via: None,
        };
        let invocation = credentials::Invocation {
            id: String::new(),
            owner: version.account.to_string(),
            caller: String::new(),
            sub_tenant: None,
            function: version.function.to_string(),
            version: version.number,
            alias: None,
            scopes: Vec::new(),
            expires_at: 0,
        };
        let mut store = self.new_store(version, call, invocation);
        store.data_mut().set_deadline(Instant::now() + Duration::from_secs(10));
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| ApiError::GuestError(format!("instantiation failed: {e:#}")))?;
        Ok(warm::Env::new(store, proxy, permit, self.stats.live_instances.clone()))
    }

    /// Records the task of the running invocation `id`.
    fn attach(&self, id: &str, task: tokio::task::AbortHandle) {
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(running) = live.get_mut(id) {
            running.task = Some(task);
        }
    }

    /// Stops every running invocation of the account with id `account`, as
    /// the function's owner or as its caller: a deleted account's code
    /// does not go on acting, nor anything for it.
    pub fn stop_account(&self, account: &str) {
        let live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for running in live.values() {
            let lineage = &running.lineage;
            if (&*lineage.owner_id == account || &*lineage.caller_id == account)
                && let Some(task) = &running.task
            {
                task.abort();
            }
        }
    }

    /// Where the running invocation `id` sits in its chain; `None` once it
    /// has ended.
    pub fn lineage(&self, id: &str) -> Option<Lineage> {
        let live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.get(id).map(|running| running.lineage.clone())
    }

    /// Lets guests reach the host's own origin in-process.
    pub fn set_loopback(&self, loopback: std::sync::Weak<dyn Loopback>) {
        let _ = self.loopback.set(loopback);
    }

    /// Unloads the compiled code of `shas` that `in_use` says no version
    /// uses any more, and removes its cached artifact: code of deleted
    /// versions does not stay in memory or on disk.
    pub fn evict_code(&self, shas: &[String], in_use: impl Fn(&str) -> bool) {
        let unused: Vec<&String> = shas.iter().filter(|sha| !in_use(sha)).collect();
        if unused.is_empty() {
            return;
        }
        {
            let mut map = match self.loaded.write() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            for sha in &unused {
                map.remove(sha.as_str());
            }
        }
        for sha in unused {
            self.code_cache.forget(sha);
        }
    }

    /// A deploy's place in `account`'s bound of queued compiles (id, and
    /// name for the refusal): 409 when the account is at it.
    pub fn enqueue_compile(&self, account: &str, name: &str) -> Result<compile::Ticket, ApiError> {
        self.compiler.enqueue(account, name)
    }

    /// Drops at once the idle and reserved environments of deleted versions
    /// (by id) and, with `caller`, those a deleted account called in.
    pub fn retire(&self, versions: &std::collections::HashSet<String>, caller: Option<&str>) {
        self.warm
            .retire(|p| versions.contains(&p.version) || caller == Some(p.caller.as_str()));
        self.reserved.retire(|k| versions.contains(&k.version));
    }
}

/// Aborts a task when dropped, unless disarmed.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// A running invocation: where it sits in its chain, and its task, so that
/// deleting its account can stop it.
struct Running {
    lineage: Lineage,
    task: Option<tokio::task::AbortHandle>,
}

/// Marks an invocation live until dropped.
struct LiveGuard {
    runtime: Arc<Runtime>,
    id: String,
}

impl LiveGuard {
    fn enter(runtime: Arc<Runtime>, id: String, lineage: Lineage) -> Self {
        let mut live = runtime.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.insert(id.clone(), Running { lineage, task: None });
        drop(live);
        Self { runtime, id }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = self
            .runtime
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.remove(&self.id);
    }
}

/// Where a call's environment comes from.
enum Source {
    /// An idle environment of the call's partition.
    Warm(warm::Env),
    /// A new one: its slot and its store, to instantiate in the call's task.
    Fresh(tokio::sync::OwnedSemaphorePermit, Store<HostState>),
}

/// Who a call runs for, as established by the trigger from authenticated data.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// The invocation's id.
    pub invocation_id: &'a str,
    /// The calling account's name, or `anonymous`.
    pub caller: &'a str,
    /// The calling account's id, or `anonymous`: partitions and KV
    /// namespaces are keyed by it.
    pub caller_id: &'a str,
    /// The caller's key (or token issuer), for nested calls to check.
    pub key_id: &'a str,
    /// The sub-tenant, if the credential named one.
    pub sub_tenant: Option<&'a SubTenantId>,
    /// The invocation this one was called from, for a nested call.
    pub parent: Option<&'a Lineage>,
    /// The alias the call came through.
    pub alias: Option<&'a crate::names::AliasName>,
    /// The cross-account alias the call came through (`account/name`): its
    /// lower limits make its environments differ.
    pub via: Option<&'a str>,
}

/// How an invocation failed inside its task.
#[derive(Debug)]
enum Failure {
    Timeout,
    Saturated,
    /// `unreachable`: what a Rust panic, `unwrap` or `abort` ends in.
    Panic,
    /// Memory growth the limit refused, then a trap.
    OutOfMemory {
        limit_mb: u64,
    },
    /// `wasi:cli/exit` before answering.
    Exit(i32),
    Trap(String),
}

impl Failure {
    fn from_trap(err: wasmtime::Error) -> Self {
        Self::of_call(err, None)
    }

    /// What `err` from guest code means; `memory_refused` is the limit
    /// (in bytes) a memory growth ran into during the call, if one did.
    fn of_call(err: wasmtime::Error, memory_refused: Option<usize>) -> Self {
        if err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return Failure::Saturated;
        }
        if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return Failure::Exit(exit.0);
        }
        let trap = err.downcast_ref::<Trap>();
        if let Some(Trap::Interrupt) = trap {
            return Failure::Timeout;
        }
        // An allocator that cannot grow memory aborts, whatever trap that
        // takes: the refused growth is the cause.
        if let (Some(limit), Some(_)) = (memory_refused, trap) {
            return Failure::OutOfMemory {
                limit_mb: (limit / (1024 * 1024)) as u64,
            };
        }
        match trap {
            Some(Trap::UnreachableCodeReached) => Failure::Panic,
            Some(trap) => Failure::Trap(format!("the function trapped: {trap}")),
            None => Failure::Trap(format!("the function failed: {}", err.root_cause())),
        }
    }

    /// What the caller is told (no guest output in it).
    fn summary(&self) -> String {
        match self {
            Failure::Panic => "the function panicked".into(),
            Failure::Exit(code) => format!("the function exited with status {code} before answering"),
            Failure::OutOfMemory { limit_mb } => {
                format!("the function ran out of memory: its limit is {limit_mb} MiB")
            }
            other => other.cause(),
        }
    }

    /// The cause, for the function's log.
    fn cause(&self) -> String {
        match self {
            Failure::Timeout => "the function ran past its deadline and was stopped".into(),
            Failure::Saturated => "the host had no free environment".into(),
            Failure::Panic => {
                "the function panicked (wasm `unreachable`); its message, if it printed one, is on stderr".into()
            }
            Failure::OutOfMemory { limit_mb } => format!(
                "the function ran out of memory: its limit is {limit_mb} MiB (`--memory-mb` on deploy, up to the host's `--max-memory-mb`)"
            ),
            Failure::Exit(code) => format!(
                "the function exited with status {code} before answering (Rust's `std::process::exit` on wasm32-wasip2 calls WASI's `exit`, which carries only success or failure, so any failure arrives as 1; `exit-with-code` keeps the code)"
            ),
            Failure::Trap(message) => message.clone(),
        }
    }
}

/// A call that failed before the guest answered.
#[derive(Debug)]
pub struct Failed {
    /// What the caller is told.
    pub error: ApiError,
    /// What the guest printed before it failed (empty if it never ran),
    /// and the host's line on why it failed.
    pub printed: output::Printed,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            printed: output::Printed::default(),
        }
    }
}

/// A response from the guest, with the task still writing its body.
pub struct Invoked {
    /// Status and headers from the guest; the body streams.
    pub response: http::Response<HyperOutgoingBody>,
    /// The running invocation, ending with its outcome and what it printed.
    task: tokio::task::JoinHandle<(Result<(), Failure>, output::Printed)>,
}

impl Invoked {
    /// Splits into the response and a future that ends with the invocation:
    /// what the guest printed during it, with a line from the host if it
    /// failed after answering.
    pub fn split(self) -> (http::Response<HyperOutgoingBody>, impl Future<Output = output::Printed>) {
        let task = self.task;
        (self.response, async move {
            match task.await {
                Ok((Ok(()), printed)) => printed,
                Ok((Err(failure), printed)) => printed.with_note(&format!("after answering, {}", failure.cause())),
                Err(_) => output::Printed::default().with_note("the invocation was stopped after answering"),
            }
        })
    }
}

/// Resolves with the grace period once the runtime is cut off.
async fn cut_off_signal(signal: &mut tokio::sync::watch::Receiver<Option<u64>>) -> u64 {
    // The borrow guard is not `Send`: copy the value out before any await.
    let grace_ms = signal
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|grace_ms| *grace_ms);
    match grace_ms {
        Some(grace_ms) => grace_ms,
        // The runtime (and its sender) is gone: never.
        None => std::future::pending().await,
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
