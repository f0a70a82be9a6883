//! How a call fails inside its task, and what its caller and its owner's
//! log are told.

use wasmtime::Trap;

use super::output;
use crate::error::ApiError;

/// How an invocation failed inside its task.
#[derive(Debug)]
pub(super) enum Failure {
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
    pub(super) fn from_trap(err: wasmtime::Error) -> Self {
        Self::of_call(err, None)
    }

    /// What `err` from guest code means; `memory_refused` is the limit
    /// (in bytes) a memory growth ran into during the call, if one did.
    pub(super) fn of_call(err: wasmtime::Error, memory_refused: Option<usize>) -> Self {
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
    pub(super) fn summary(&self) -> String {
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
    pub(super) fn cause(&self) -> String {
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

/// What a failed call's caller is told, and its owner's log.
pub(super) struct Told<'a> {
    /// `account/function`, for the `stratus logs` hint.
    pub owner: String,
    /// The invocation's id.
    pub invocation: &'a str,
    /// Its deadline.
    pub timeout_ms: u64,
    /// Whether the caller is the function's owner, who may learn how it failed.
    pub to_owner: bool,
}

impl Told<'_> {
    /// The caller's error and the log's cause for a call whose guest
    /// ended without answering (or, `Err`, whose task was stopped).
    pub(super) fn ended(
        &self,
        outcome: Result<Result<(), Failure>, tokio::task::JoinError>,
    ) -> (ApiError, Option<String>) {
        let logs_hint = format!(
            ": its owner can read what it printed with `stratus logs {} --invocation {}`",
            self.owner, self.invocation
        );
        let timed_out = || {
            format!(
                "the function did not answer within {} ms, its deadline, and was stopped",
                self.timeout_ms
            )
        };
        match outcome {
            Ok(Ok(())) => (
                ApiError::GuestError("the function returned without a response".into()),
                None,
            ),
            Ok(Err(Failure::Timeout)) => (
                ApiError::Timeout {
                    timeout_ms: self.timeout_ms,
                    logs: logs_hint,
                },
                Some(timed_out()),
            ),
            Ok(Err(failure @ (Failure::Panic | Failure::Exit(_) | Failure::Trap(_) | Failure::OutOfMemory { .. }))) => {
                let what = if self.to_owner {
                    failure.summary()
                } else {
                    "the function failed".into()
                };
                (
                    ApiError::GuestError(format!(
                        "{what}: its owner can read why with `stratus logs {} --invocation {}`",
                        self.owner, self.invocation
                    )),
                    Some(failure.cause()),
                )
            }
            Ok(Err(failure @ Failure::Saturated)) => (
                ApiError::Unavailable {
                    message: "the host has no free environment".into(),
                    retry_after: 1,
                },
                Some(failure.cause()),
            ),
            Err(join) if join.is_cancelled() => (
                ApiError::NotFound("the function's account was deleted while this call ran".into()),
                None,
            ),
            Err(join) => (ApiError::internal(join), None),
        }
    }
}
