//! What a store holds for one environment: WASI contexts, the resource table,
//! limits, and the outbound policy.

use std::collections::BTreeMap;
use std::net::IpAddr;
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
    pub loopback: Option<Weak<dyn super::Loopback>>,
    /// The current call's deadline: no outgoing request waits past it.
    pub deadline: std::time::Instant,
    /// Where a refusal is written, for the function's log (wasi-http's
    /// denial carries no text of its own).
    pub output: Option<super::output::CallOutput>,
}

impl Outbound {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let with_port = format!("{host}:{}", port_of(uri));
        self.allow.iter().any(|entry| entry == host || *entry == with_port)
    }
}

pub(crate) fn port_of(uri: &http::Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 })
}

/// Whether `ip` is an address a guest must not reach by default: loopback,
/// private (RFC 1918, unique-local), link-local (cloud metadata lives
/// there), carrier-grade NAT, unspecified, broadcast, multicast or
/// documentation ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32
            // bits: as private as that address.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = [seg[6].to_be_bytes(), seg[7].to_be_bytes()];
                return is_private(IpAddr::V4(std::net::Ipv4Addr::new(a[0], a[1], b[0], b[1])));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // IPv4-compatible `::a.b.c.d` (deprecated; the whole ::/96).
                || seg[..6] == [0; 6]
                // IPv4-translated `::ffff:0:a.b.c.d` (SIIT).
                || seg[..6] == [0, 0, 0, 0, 0xffff, 0]
                // Local-use NAT64 (64:ff9b:1::/48) translates to anything.
                || seg[..3] == [0x64, 0xff9b, 1]
                // 6to4 and Teredo embed IPv4 addresses that may be private.
                || seg[0] == 0x2002
                || seg[..2] == [0x2001, 0]
                // Documentation, site-local (deprecated), discard-only.
                || seg[..2] == [0x2001, 0x0db8]
                || seg[0] & 0xffc0 == 0xfec0
                || seg[..4] == [0x100, 0, 0, 0]
        }
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
        let target = format!("{host}:{}", port_of(request.uri()));
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

#[cfg(test)]
mod tests {
    use super::is_private;

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::5db8:d822",
            "::10.0.0.1",
            "::93.184.216.34",
            "::ffff:0:10.0.0.1",
            "::ffff:0:93.184.216.34",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2002:a00:1::1",
            "fec0::1",
            "feff::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "2001:db8::1",
        ] {
            assert!(
                is_private(private.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{private}"
            );
        }
        // NAT64 to a public address is how IPv6-only networks reach the
        // IPv4 internet; so is an ordinary global address near the ranges.
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2001:4860::8888",
            "101::1",
        ] {
            assert!(
                !is_private(public.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{public}"
            );
        }
    }
}
