//! What a store holds for one environment: WASI contexts, the resource table,
//! limits, and the outbound policy.

use std::collections::BTreeMap;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Bytes of guest stdout/stderr kept per invocation.
pub const OUTPUT_CAPTURE: usize = 64 * 1024;

/// Resources one environment may hold at once (requests, fields, streams…).
const MAX_RESOURCES: usize = 10_000;

/// Store data for one environment.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Memory and instance limits of the version (or its alias).
    pub limits: StoreLimits,
    hooks: Outbound,
    /// The guest's stdout and stderr, bounded.
    pub output: MemoryOutputPipe,
    /// The call's KV namespace.
    pub(crate) kv: super::kv::KvAccess,
    /// The current invocation's claims and token minting.
    pub(crate) credentials: super::credentials::CredentialsAccess,
    /// When the current call must end; set at the start of every call.
    pub(crate) deadline: std::time::Instant,
}

impl HostState {
    /// Builds the state for a version's configuration.
    pub fn new(
        env: &BTreeMap<String, String>,
        memory_mb: u32,
        allow_outbound: &[String],
        kv: super::kv::KvAccess,
        credentials: super::credentials::CredentialsAccess,
    ) -> Self {
        let output = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let mut builder = WasiCtx::builder();
        for (key, value) in env {
            builder.env(key, value);
        }
        // No preopened directories and no sockets: the only network is
        // wasi:http outgoing, through the outbound policy below.
        builder
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_mb as usize * 1024 * 1024)
            .instances(64)
            .tables(64)
            .memories(16)
            .build();
        // Capped so a guest cannot grow host memory by creating resources
        // (requests, fields, streams) in a loop.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            table,
            limits,
            hooks: Outbound {
                allow: allow_outbound.to_vec(),
            },
            output,
            kv,
            credentials,
            deadline: std::time::Instant::now(),
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

/// Outbound HTTP policy: deny unless `HOST[:PORT]` is listed exactly.
struct Outbound {
    allow: Vec<String>,
}

impl Outbound {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        let with_port = format!("{host}:{port}");
        self.allow.iter().any(|entry| entry == host || *entry == with_port)
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let allowed = self.allows(request.uri());
        Box::new(async move {
            use http_body_util::BodyExt;
            if !allowed {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}
