//! The runtime: one wasmtime engine, compiled components cached on disk, and a
//! fresh store + instance for every invocation.

pub mod body;
pub mod kv;
pub mod state;
pub mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body::Body;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, oneshot};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::error::ApiError;
use crate::names::SubTenantId;
use crate::registry::kv::{Kv, Namespace};
use crate::registry::records::VersionRecord;
pub use state::HostState;

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
}

/// Counters the host exposes as metrics.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Compiled components loaded from the disk cache.
    pub cache_hits: Counter,
    /// Components compiled because the cache did not have them.
    pub compiles: Counter,
    /// Environments currently alive.
    pub live_instances: Gauge,
}

/// The engine with its linker and compiled versions.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    /// Hex of the engine's compatibility hash: a cached artifact is only
    /// reused by an engine that would have produced the same code.
    compat: String,
    loaded: RwLock<HashMap<String, ProxyPre<HostState>>>,
    /// One compile at a time, off the async workers, so deploys never take
    /// the cores serving calls.
    compile_slot: Semaphore,
    /// Functions' key/value data.
    kv: Arc<Kv>,
    /// Metrics.
    pub stats: RuntimeStats,
}

/// What a compile produced.
pub struct Compiled {
    /// Ready to instantiate.
    pub pre: ProxyPre<HostState>,
    /// Time spent compiling or loading, in ms.
    pub compile_ms: u64,
    /// Whether it came from the disk cache.
    pub cache_hit: bool,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: &RuntimeConfig, kv: Arc<Kv>) -> anyhow::Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = config.pool_slots.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_memory_size(config.max_memory_mb as usize * 1024 * 1024)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16);

        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .async_stack_zeroing(config.async_stack_zeroing)
            .parallel_compilation(false)
            .wasm_component_model(true);
        let engine = Engine::new(&wasm)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        kv::add_to_linker(&mut linker)?;

        let compat = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        std::fs::create_dir_all(&config.code_cache_dir)?;

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

        Ok(Arc::new(Self {
            engine,
            linker,
            cache_dir: config.code_cache_dir.clone(),
            compat,
            loaded: RwLock::new(HashMap::new()),
            compile_slot: Semaphore::new(1),
            kv,
            stats: RuntimeStats::default(),
        }))
    }

    fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    /// The pre-instantiated component for `sha256`, if already loaded.
    pub fn loaded(&self, sha256: &str) -> Option<ProxyPre<HostState>> {
        let map = match self.loaded.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(sha256).cloned()
    }

    /// Loads `sha256` from the disk cache, or compiles `bytes` and caches it.
    pub async fn prepare(self: &Arc<Self>, sha256: &str, bytes: Vec<u8>) -> Result<Compiled, ApiError> {
        if let Some(pre) = self.loaded(sha256) {
            return Ok(Compiled {
                pre,
                compile_ms: 0,
                cache_hit: true,
            });
        }
        let _slot = self.compile_slot.acquire().await.map_err(ApiError::internal)?;
        if let Some(pre) = self.loaded(sha256) {
            return Ok(Compiled {
                pre,
                compile_ms: 0,
                cache_hit: true,
            });
        }
        let this = self.clone();
        let sha = sha256.to_string();
        let compiled = tokio::task::spawn_blocking(move || this.compile_blocking(&sha, &bytes))
            .await
            .map_err(ApiError::internal)??;
        let mut map = match self.loaded.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.insert(sha256.to_string(), compiled.pre.clone());
        Ok(compiled)
    }

    fn compile_blocking(&self, sha256: &str, bytes: &[u8]) -> Result<Compiled, ApiError> {
        let started = Instant::now();
        let path = self.cache_path(sha256);
        let (component, cache_hit) = match load_cached(&self.engine, &path) {
            Some(component) => {
                self.stats.cache_hits.inc();
                (component, true)
            }
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| ApiError::InvalidComponent(format!("the component does not compile: {e}")))?;
                self.stats.compiles.inc();
                if let Err(err) = store_cached(&component, &path) {
                    tracing::warn!(%err, path = %path.display(), "could not cache a compiled component");
                }
                (component, false)
            }
        };
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
        Ok(Compiled {
            pre,
            compile_ms,
            cache_hit,
        })
    }

    /// Runs one invocation in a fresh environment and returns the guest's
    /// response; its body keeps streaming from the guest until it finishes or
    /// the deadline passes.
    pub async fn invoke<B>(
        self: &Arc<Self>,
        pre: ProxyPre<HostState>,
        version: &VersionRecord,
        call: CallContext<'_>,
        request: http::Request<B>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Invoked, ApiError>
    where
        B: Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let config = &version.config;
        let timeout = Duration::from_millis(config.timeout_ms);
        let deadline = Instant::now() + timeout;
        let kv = kv::KvAccess {
            store: self.kv.clone(),
            namespace: Namespace::new(&version.account, call.caller, call.sub_tenant),
        };
        let state = HostState::new(&config.env, config.memory_mb, &config.allow_outbound, kv);
        let output = state.output.clone();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Each epoch tick: past the deadline, trap; otherwise yield so other
        // calls share the cores with a guest that spins.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);

        let (sender, receiver) = oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| ApiError::Internal(e.into()))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| ApiError::Internal(e.into()))?;

        let this = self.clone();
        let tokio_deadline = tokio::time::Instant::from_std(deadline);
        this.stats.live_instances.inc();
        let task = tokio::spawn(async move {
            // The admission permit lives exactly as long as the environment.
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            // The epoch callback stops guest code; this also stops a guest
            // parked in a host call (e.g. waiting on a slow client).
            let result = match tokio::time::timeout_at(tokio_deadline, run).await {
                Ok(result) => result.map_err(Failure::from_trap),
                Err(_) => Err(Failure::Timeout),
            };
            drop(store);
            this.stats.live_instances.dec();
            result
        });

        let timeout_ms = config.timeout_ms;
        match tokio::time::timeout_at(tokio_deadline, receiver).await {
            Ok(Ok(Ok(response))) => Ok(Invoked {
                response,
                output: Output(output),
                task,
            }),
            Ok(Ok(Err(code))) => Err(ApiError::GuestError(format!(
                "the function answered with an error: {code:?}"
            ))),
            Ok(Err(_)) => match task.await {
                Ok(Ok(())) => Err(ApiError::GuestError("the function returned without a response".into())),
                Ok(Err(Failure::Timeout)) => Err(ApiError::Timeout { timeout_ms }),
                Ok(Err(Failure::Trap(message))) => Err(ApiError::GuestError(message)),
                Ok(Err(Failure::Saturated)) => Err(ApiError::Unavailable {
                    message: "the host has no free environment".into(),
                    retry_after: 1,
                }),
                Err(join) => Err(ApiError::internal(join)),
            },
            Err(_) => Err(ApiError::Timeout { timeout_ms }),
        }
    }
}

/// Who a call runs for, as established by the trigger from authenticated data.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// The calling account's name, or `anonymous`.
    pub caller: &'a str,
    /// The sub-tenant, if the credential named one.
    pub sub_tenant: Option<&'a SubTenantId>,
}

/// How an invocation failed inside its task.
#[derive(Debug)]
enum Failure {
    Timeout,
    Saturated,
    Trap(String),
}

impl Failure {
    fn from_trap(err: wasmtime::Error) -> Self {
        if err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return Failure::Saturated;
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Failure::Timeout,
            Some(trap) => Failure::Trap(format!("the function trapped: {trap}")),
            None => Failure::Trap(format!("the function failed: {}", err.root_cause())),
        }
    }
}

/// The guest's captured stdout and stderr.
pub struct Output(wasmtime_wasi::p2::pipe::MemoryOutputPipe);

impl Output {
    /// What the guest printed so far.
    pub fn contents(&self) -> bytes::Bytes {
        self.0.contents()
    }
}

/// A response from the guest, with the task still writing its body.
pub struct Invoked {
    /// Status and headers from the guest; the body streams.
    pub response: http::Response<HyperOutgoingBody>,
    /// What the guest prints.
    pub output: Output,
    /// The running invocation.
    task: tokio::task::JoinHandle<Result<(), Failure>>,
}

impl Invoked {
    /// Splits into the response and a future that ends with the invocation
    /// (true when it ended cleanly).
    pub fn split(self) -> (http::Response<HyperOutgoingBody>, Output, impl Future<Output = bool>) {
        let task = self.task;
        (
            self.response,
            self.output,
            async move { matches!(task.await, Ok(Ok(()))) },
        )
    }
}

#[allow(unsafe_code)]
fn load_cached(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: the file was written by `store_cached` into the host's own data
    // directory, and its name carries this engine's compatibility hash;
    // wasmtime re-checks the compatibility header on load as well.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(%err, path = %path.display(), "ignoring an unusable cached component");
            None
        }
    }
}

fn store_cached(component: &Component, path: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    // A unique temporary name: hosts sharing a cache may write the same
    // artifact at once, and the rename makes whichever finishes last win whole.
    let tmp = path.with_extension(format!("{}.{}.tmp", std::process::id(), rand::random::<u32>()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
