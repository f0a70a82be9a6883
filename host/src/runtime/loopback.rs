//! The seam through which a guest's request to the host's own origin is
//! served in-process, as a nested call (the server implements it).

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Serves a guest's request to the host's own origin in-process, as a
/// nested call, without the network.
pub trait Loopback: Send + Sync {
    /// Whether a request for `uri` is for this host.
    fn is_own_origin(&self, uri: &http::Uri) -> bool;
    /// Serves the request as the host would serve it from outside.
    fn call(
        self: Arc<Self>,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<HyperOutgoingBody>> + Send>>;
}
