//! One call: its identity and deadline, its environment, the guest's run
//! in a task of its own, and what the caller is told when it fails.

use std::sync::Arc;

use http_body::Body;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::admission::Source;
use super::call::{CallContext, Identity};
use super::engine::Runtime;
use super::failure::{self, Failed, Failure};
use super::state::HostState;
use super::{output, warm};
use crate::error::ApiError;
use crate::registry::records::{Reuse, VersionRecord};

impl Runtime {
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
        let Identity {
            deadline,
            timeout,
            lineage,
            invocation,
        } = call.identity(version);
        let source = self
            .environment(version, call, warm.then_some(&partition), &invocation)
            .await?;
        // Core time is the caller's, like its concurrency: anonymous callers
        // are counted per owner.
        let account = match call.caller_id {
            crate::tenancy::ANONYMOUS => format!("{}@{}", crate::tenancy::ANONYMOUS, version.account_id),
            id => id.to_string(),
        };
        let seat = self.cores.seat(&account, call.sub_tenant.map_or("", |s| s.as_str()));
        let live = self.live.enter(invocation.id.clone(), lineage);
        let tokio_deadline = tokio::time::Instant::from_std(deadline);
        let (sender, receiver) = oneshot::channel();
        let this = self.clone();
        let captured: Arc<std::sync::OnceLock<output::CallOutput>> = Arc::default();
        let output = captured.clone();
        let output_so_far = captured.clone();
        let timer = seat.timer();
        let task = tokio::spawn(async move {
            // The invocation's tokens are alive exactly while this task runs.
            let _live = live;
            let run = this.run(
                pre,
                source,
                Run {
                    deadline,
                    invocation,
                    request,
                    answer: sender,
                    captured,
                    keep: warm.then_some(partition),
                    seat,
                },
            );
            // The epoch callback stops guest code; this also stops a guest
            // parked in a host call (e.g. waiting on a slow client). Either
            // way a failed environment is dropped, never reused.
            match tokio::time::timeout_at(tokio_deadline, timer.time(run)).await {
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

        // Until the guest answers, the call is this future: if it is dropped
        // (the client went away), the invocation stops at its next yield and
        // its environment is freed, rather than running to its deadline.
        self.live.attach(call.invocation_id, task.abort_handle());
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
        let timeout_ms = timeout.as_millis() as u64;
        let told = failure::Told {
            owner: format!("{}/{}", version.account, version.function),
            invocation: call.invocation_id,
            timeout_ms,
            // How a function fails, and its limits, are its owner's to
            // know: other callers learn only where to point them.
            to_owner: call.caller_id == version.account_id,
        };
        let (error, cause) = match answered {
            Ok(Ok(Ok(response))) => {
                cancel.disarm();
                return Ok(Invoked { response, task });
            }
            Ok(Ok(Err(code))) => (
                ApiError::GuestError(format!("the function answered with an error: {code:?}")),
                None,
            ),
            Ok(Err(_)) => told.ended(task.await.map(|(result, _)| result)),
            Err(_) => told.ended(Ok(Err(Failure::Timeout))),
        };
        let note = cause.unwrap_or_else(|| error.to_string());
        Err(Failed {
            printed: printed_so_far().with_note(&note),
            error,
        })
    }

    /// The guest's part of a call, in its task: instantiate (for a fresh
    /// environment), hand it the request, and keep a warm environment for
    /// its partition once it is done. Answers what the guest printed.
    async fn run<B>(&self, pre: ProxyPre<HostState>, source: Source, job: Run<B>) -> Result<output::Printed, Failure>
    where
        B: Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // A backlogged sub-tenant's new call waits its turn before any of
        // its code runs.
        if let Some(wait) = job.seat.at_start() {
            wait.await;
        }
        let mut env = match source {
            Source::Warm(mut env) => {
                env.store.data_mut().seat = Some(job.seat);
                env
            }
            Source::Fresh(permit, mut store) => {
                store.data_mut().seat = Some(job.seat);
                store.data_mut().set_deadline(job.deadline);
                // A tick from now, not from when the store was made.
                store.set_epoch_deadline(1);
                let proxy = pre.instantiate_async(&mut store).await.map_err(Failure::from_trap)?;
                warm::Env::new(store, proxy, permit, self.stats.live_instances.clone())
            }
        };
        env.store.data_mut().set_deadline(job.deadline);
        env.store.data_mut().credentials.invocation = job.invocation;
        let _ = job.captured.set(env.store.data().output.clone());
        let http = |store: &mut Store<HostState>| {
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, job.request)?;
            let out = store.data_mut().http().new_response_outparam(job.answer)?;
            Ok::<_, wasmtime::Error>((req, out))
        };
        let (req, out) = http(&mut env.store).map_err(|e| Failure::Trap(format!("{e:#}")))?;
        // A tick from now: a warm environment's deadline is from its last
        // call, long past, and would stop the guest (to yield, and to take a
        // core) at its first instruction.
        env.store.set_epoch_deadline(1);
        let handled = env
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut env.store, req, out)
            .await;
        if let Err(err) = handled {
            return Err(Failure::of_call(err, env.store.data().limits.memory_refused()));
        }
        // Its core goes to the next call now, not when the environment does.
        env.store.data_mut().seat = None;
        // Taken before the environment can serve anyone else.
        let printed = env.store.data().output.take();
        if let Some(partition) = job.keep {
            self.warm.put(partition, env);
        }
        Ok(printed)
    }
}

/// What the guest's part of a call needs.
struct Run<B> {
    deadline: std::time::Instant,
    invocation: super::credentials::Invocation,
    request: http::Request<B>,
    /// Where the guest's response head goes.
    answer: oneshot::Sender<
        Result<http::Response<HyperOutgoingBody>, wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>,
    >,
    /// The environment's output buffer, once it has one, for the error path.
    captured: Arc<std::sync::OnceLock<output::CallOutput>>,
    /// The partition to keep the environment for afterwards (warm versions).
    keep: Option<warm::Partition>,
    /// Its place at the cores.
    seat: super::cores::Seat,
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
