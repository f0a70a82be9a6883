//! Compiling components: in a child process, under a time limit, one at a
//! time, fairly between accounts.
//!
//! Cranelift cannot be interrupted inside a process, and an abandoned
//! compile thread would keep its core until it finished, which for a
//! hostile component may be hours. So each compile runs as
//! `stratus compile-component` in a child process that writes the artifact
//! into the code cache; past `--compile-timeout` the child is killed and
//! its core is free at once. The parent then loads the artifact like any
//! cached one.
//!
//! One compile runs at a time. Each account has a line of its own in front
//! of that slot, and only the head of each line waits for the slot: an
//! account's compile waits behind at most one compile of each other
//! account, however many that account queued. How many an account may have
//! queued is bounded too (409 past it), and a blob is read only once its
//! compile holds the slot, so queued deploys hold no copies of their blobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::ApiError;
use crate::tenancy::inflight::InFlight;
pub use crate::tenancy::inflight::Ticket;

/// Address space a pool's memories may reserve before they are shrunk to
/// their real maximum: half of x86-64's 128 TiB user space.
const LARGE_POOL_RESERVATION: u64 = 64 << 40;

/// Slots decommitted together, one TLB flush for the batch.
const DECOMMIT_BATCH: usize = 16;

/// What the engine is built from. The compile child gets the same values,
/// so its artifacts carry the engine's compatibility hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Environments that may exist at once.
    pub pool_slots: u32,
    /// The pool's slot size, MiB.
    pub max_memory_mb: u32,
    /// Zero async stacks between uses.
    pub async_stack_zeroing: bool,
}

impl EngineSettings {
    /// The command-line flags that give a compile child these settings.
    fn args(&self) -> [String; 6] {
        [
            "--pool-slots".into(),
            self.pool_slots.to_string(),
            "--max-memory-mb".into(),
            self.max_memory_mb.to_string(),
            "--async-stack-zeroing".into(),
            self.async_stack_zeroing.to_string(),
        ]
    }
}

/// The wasmtime configuration of the host's one engine.
pub fn engine_config(settings: &EngineSettings) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let slots = settings.pool_slots.max(1);
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memory_size(settings.max_memory_mb as usize * 1024 * 1024)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        // Resetting a slot with `madvise` makes the kernel flush the TLB
        // of every core the process runs on (the top of the profile under
        // load): decommits go in batches, one flush each. Keeping 1 MiB
        // resident and resetting it with `memset` instead measured slower
        // for `hello` (bench/RESULTS.md, tuning).
        .decommit_batch_size(DECOMMIT_BATCH);

    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .async_stack_zeroing(settings.async_stack_zeroing)
        .parallel_compilation(false)
        .wasm_component_model(true);
    // Each pooled memory reserves 4 GiB of address space by default, so
    // that compiled code needs no bounds checks. Past ~16,000 memories
    // that no longer fits in the 128 TiB a process has; a large pool
    // reserves only the largest memory it allows (and pays for explicit
    // bounds checks) rather than fail to start.
    let reservation = u64::from(slots) * 2 * (4 << 30);
    if reservation > LARGE_POOL_RESERVATION {
        let max = u64::from(settings.max_memory_mb) << 20;
        wasm.memory_reservation(max).memory_guard_size(64 << 10);
    }
    wasm
}

/// Whether `settings` make a large, bounds-checked pool.
pub fn is_large_pool(settings: &EngineSettings) -> bool {
    u64::from(settings.pool_slots.max(1)) * 2 * (4 << 30) > LARGE_POOL_RESERVATION
}

/// The compile child's work: `bytes` compiled with `settings`, serialized to
/// `out` (whole or not at all).
pub fn compile_to_file(settings: &EngineSettings, bytes: &[u8], out: &Path) -> anyhow::Result<()> {
    let engine = wasmtime::Engine::new(&engine_config(settings))?;
    let component = wasmtime::component::Component::new(&engine, bytes)?;
    let serialized = component.serialize()?;
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// Runs compiles in child processes, one at a time, fairly by account.
pub struct Compiler {
    /// The `stratus` binary to run as `stratus compile-component`.
    program: PathBuf,
    settings: EngineSettings,
    timeout: Duration,
    /// The one compile slot.
    slot: Arc<Semaphore>,
    /// Each account's line in front of the slot.
    lines: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Compiles queued or running, per account.
    queued: Arc<InFlight>,
}

/// A compile's place: the slot, held until dropped.
pub struct Turn {
    _slot: OwnedSemaphorePermit,
    _line: OwnedSemaphorePermit,
    _queued: Option<Ticket>,
}

impl Compiler {
    /// Compiles with `program`, stopping each compile after `timeout`; an
    /// account may have `max_queued` compiles queued or running.
    pub fn new(program: PathBuf, settings: EngineSettings, timeout: Duration, max_queued: u32) -> Self {
        Self {
            program,
            settings,
            timeout,
            slot: Arc::new(Semaphore::new(1)),
            lines: Mutex::new(HashMap::new()),
            queued: InFlight::new(max_queued, "compiles queued", "--max-queued-compiles-per-account"),
        }
    }

    /// Counts a deploy's compile against its account's bound of queued
    /// compiles (id `account`, `name` for a refusal): 409 past it. Taken
    /// before the version is recorded, so a refused deploy leaves nothing.
    pub fn enqueue(&self, account: &str, name: &str) -> Result<Ticket, ApiError> {
        self.queued.enter(account, name)
    }

    /// Waits for the compile slot for `account` (its id): first at the head
    /// of the account's own line, then in the one queue of line heads.
    /// `queued` is the deploy's place in its account's bound, if any.
    pub async fn turn(&self, account: &str, queued: Option<Ticket>) -> Result<Turn, ApiError> {
        let line = {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            // Lines nobody stands in are forgotten.
            lines.retain(|_, line| Arc::strong_count(line) > 1);
            lines
                .entry(account.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone()
        };
        let closed = |_| ApiError::Unavailable {
            message: "the host is shutting down".into(),
            retry_after: 1,
        };
        let line = line.acquire_owned().await.map_err(closed)?;
        let slot = self.slot.clone().acquire_owned().await.map_err(closed)?;
        Ok(Turn {
            _slot: slot,
            _line: line,
            _queued: queued,
        })
    }

    /// Compiles `bytes` into `out` in a child process, killed past the
    /// time limit. Call with a [`Turn`] held.
    pub async fn compile(&self, bytes: &[u8], out: &Path) -> Result<(), ApiError> {
        let mut child = tokio::process::Command::new(&self.program)
            .arg("compile-component")
            .arg("--out")
            .arg(out)
            .args(self.settings.args())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // Dropped on a timeout (or with the call): the child dies, and
            // its core is free.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ApiError::internal(anyhow::anyhow!("cannot start the compiler process: {e}")))?;
        let mut stdin = child.stdin.take();
        let run = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A child that fails early stops reading; its stderr says why.
                let _ = stdin.write_all(bytes).await;
            }
            drop(stdin);
            child.wait_with_output().await
        };
        let limit = self.timeout;
        match tokio::time::timeout(limit, run).await {
            Err(_) => Err(ApiError::InvalidComponent(format!(
                "compiling the component took longer than the host's limit of {} (--compile-timeout); it was stopped",
                humantime::format_duration(limit)
            ))),
            Ok(Err(err)) => Err(ApiError::internal(anyhow::anyhow!(
                "the compiler process failed: {err}"
            ))),
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => {
                let said = String::from_utf8_lossy(&output.stderr);
                let said = said.trim();
                Err(ApiError::InvalidComponent(if said.is_empty() {
                    format!("the compiler process ended with {}", output.status)
                } else {
                    format!("the component does not compile: {said}")
                }))
            }
        }
    }
}

/// Whether a cached artifact may be loaded: written by this user and
/// writable by no one else. Anything else may have been planted.
pub fn artifact_is_ours(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match std::fs::symlink_metadata(path) {
            Ok(metadata) => {
                metadata.file_type().is_file()
                    && metadata.uid() == rustix::process::geteuid().as_raw()
                    && metadata.mode() & 0o022 == 0
            }
            Err(_) => false,
        }
    }
    #[cfg(not(unix))]
    {
        path.exists()
    }
}
