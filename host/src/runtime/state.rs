//! What a store holds for one environment: WASI contexts, the resource table,
//! limits, and the outbound policy.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Bytes of guest stdout/stderr kept per call.
pub const OUTPUT_CAPTURE: usize = 64 * 1024;

/// Resources one environment may hold at once (requests, fields, streams…).
const MAX_RESOURCES: usize = 10_000;

/// Store data for one environment.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Memory and instance limits of the version (or its alias).
    pub limits: Limits,
    hooks: Outbound,
    /// The guest's stdout and stderr, bounded per call.
    pub output: super::output::CallOutput,
    /// The call's KV namespace.
    pub(crate) kv: super::kv::KvAccess,
    /// The current invocation's claims and token minting.
    pub(crate) credentials: super::credentials::CredentialsAccess,
    /// When the current call must end; set at the start of every call.
    pub(crate) deadline: std::time::Instant,
    /// The current call's place at the cores.
    pub(super) seat: Option<super::cores::Seat>,
}

impl HostState {
    /// Sets when the current call must end, for the guest and for its
    /// outgoing requests.
    pub(crate) fn set_deadline(&mut self, deadline: std::time::Instant) {
        self.deadline = deadline;
        self.hooks.deadline = deadline;
        // A new call: a refusal during an earlier one is not its cause.
        self.limits.refused = false;
    }
}

impl HostState {
    /// Builds the state for a version's configuration.
    pub(crate) fn new(
        env: &BTreeMap<String, String>,
        memory_mb: u32,
        outbound: Outbound,
        kv: super::kv::KvAccess,
        credentials: super::credentials::CredentialsAccess,
    ) -> Self {
        let output = super::output::CallOutput::new(OUTPUT_CAPTURE);
        let mut builder = WasiCtx::builder();
        for (key, value) in env {
            builder.env(key, value);
        }
        // No preopened directories and no sockets: the only network is
        // wasi:http outgoing, through the outbound policy below.
        builder
            .stdout(output.clone())
            .stderr(output.as_stream(super::output::Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // The default lets one call ask the host for 64 MiB at once.
            .max_random_size(1 << 20)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        let memory_bytes = memory_mb as usize * 1024 * 1024;
        let limits = Limits {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(64)
                .tables(64)
                .memories(16)
                .build(),
            memory_bytes,
            refused: false,
        };
        let mut outbound = outbound;
        outbound.output = Some(output.as_stream(super::output::Stream::Stratus));
        // Capped so a guest cannot grow host memory by creating resources
        // (requests, fields, streams) in a loop.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            table,
            limits,
            hooks: outbound,
            output,
            kv,
            credentials,
            deadline: std::time::Instant::now(),
            seat: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The store's limits, remembering whether one refused memory growth during
/// the current call: a guest that then traps ran out of memory.
pub struct Limits {
    inner: StoreLimits,
    memory_bytes: usize,
    refused: bool,
}

impl Limits {
    /// The memory limit in bytes, if growing past it was refused this call.
    pub fn memory_refused(&self) -> Option<usize> {
        self.refused.then_some(self.memory_bytes)
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Outbound HTTP policy. A request to the host's own origin is served
/// in-process as a nested call. Anything else must be listed exactly as
/// `HOST[:PORT]` in the version's `allow_outbound`, and may not reach a
/// loopback, private or link-local address unless the operator exempted it.
pub(crate) struct Outbound {
    /// `HOST` or `HOST:PORT` entries.
    pub allow: Vec<String>,
    /// The guard and connector requests past the allow-list go through.
    pub egress: Arc<super::egress::Egress>,
    /// The host itself, for nested calls.
    pub loopback: Option<Weak<dyn super::loopback::Loopback>>,
    /// The current call's deadline: no outgoing request waits past it.
    pub deadline: std::time::Instant,
    /// Where a refusal is written, for the function's log (wasi-http's
    /// denial carries no text of its own).
    pub output: Option<super::output::CallOutput>,
}

impl Outbound {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let with_port = format!("{host}:{}", super::egress::port_of(uri));
        self.allow.iter().any(|entry| entry == host || *entry == with_port)
    }
}

use super::egress::IoFuture;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<wasmtime_wasi_http::WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    > {
        drop(fut);
        let loopback = self
            .loopback
            .as_ref()
            .and_then(Weak::upgrade)
            .filter(|host| host.is_own_origin(request.uri()));
        if let Some(host) = loopback {
            return Box::new(async move {
                let response = host.call(request).await;
                Ok((response, Box::new(async { Ok(()) }) as IoFuture))
            });
        }
        let allowed = self.allows(request.uri());
        let egress = self.egress.clone();
        // The guest's timeouts, or the defaults (600 s), never outlast the call.
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        let mut options = options.unwrap_or_default();
        for timeout in [
            &mut options.connect_timeout,
            &mut options.first_byte_timeout,
            &mut options.between_bytes_timeout,
        ] {
            *timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        let options = Some(options);
        // The guest chose the name: no longer in the log than a DNS name can be.
        let host: String = request.uri().host().unwrap_or("").chars().take(253).collect();
        let target = format!("{host}:{}", super::egress::port_of(request.uri()));
        let output = self.output.clone();
        let note = move |line: String| {
            if let Some(output) = &output {
                output.note(&line);
            }
        };
        Box::new(async move {
            if !allowed {
                note(format!(
                    "outbound request to {target} denied: it is not in this version's allow-list; deploy with `--allow-outbound {target}`"
                ));
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let sent = egress.send(request, options).await;
            if let Err(wasmtime_wasi_http::Error::DestinationIpProhibited) = &sent {
                note(format!(
                    "outbound request to {target} denied: it resolves to a loopback, private or link-local address; the operator can allow one with `--allow-private-outbound IP` (`stratus serve` or `stratus up`)"
                ));
            }
            sent
        })
    }
}

/// Links the KV interface, reaching each store's [`KvAccess`](super::kv::KvAccess).
pub fn add_kv_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    struct KvData;
    impl wasmtime::component::HasData for KvData {
        type Data<'a> = &'a mut super::kv::KvAccess;
    }
    super::bindings::stratus::function::kv::add_to_linker::<HostState, KvData>(linker, |state| &mut state.kv)
}

/// Links the credentials interface, reaching each store's
/// [`CredentialsAccess`](super::credentials::CredentialsAccess).
pub fn add_credentials_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    struct CredentialsData;
    impl wasmtime::component::HasData for CredentialsData {
        type Data<'a> = &'a mut super::credentials::CredentialsAccess;
    }
    super::bindings::stratus::function::credentials::add_to_linker::<HostState, CredentialsData>(linker, |state| {
        &mut state.credentials
    })
}
