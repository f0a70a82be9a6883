//! A guest's requests to the host's own origin, served in-process.
//!
//! A function calling `/fn/…` on its own host with its `token()` makes a
//! nested call: it goes through the trigger exactly as a request from outside
//! would (authentication, resolution, quotas), but never leaves the process,
//! so it needs no `allow_outbound` entry and is not subject to the
//! private-address guard. The admin API is not reachable this way.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri};
use wasmtime_wasi_http::WasiBody;

use super::respond::{self, Body};
use super::state::AppState;
use super::{introspect, trigger};
use crate::error::ApiError;
use crate::runtime::Loopback;

/// Whether `host:port` names the listener at `listening`.
fn names_listener(host: &str, port: u16, listening: SocketAddr) -> bool {
    if port != listening.port() {
        return false;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = listening.ip().is_loopback() || listening.ip().is_unspecified();
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip == listening.ip() || (local && ip.is_loopback()),
        Err(_) => local && bare.eq_ignore_ascii_case("localhost"),
    }
}

impl Loopback for AppState {
    fn is_own_origin(&self, uri: &Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        if let Some(base) = self.config.base_domain.as_deref()
            && (host.eq_ignore_ascii_case(base)
                || host.len().checked_sub(base.len() + 1).is_some_and(|at| {
                    host.is_char_boundary(at) && host[at..].eq_ignore_ascii_case(&format!(".{base}"))
                }))
        {
            return true;
        }
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        if self
            .listening
            .get()
            .is_some_and(|listening| names_listener(host, port, *listening))
        {
            return true;
        }
        // Another node of the cluster: served here, as a nested call, like
        // the request to this node it stands for.
        self.cluster.as_ref().is_some_and(|node| {
            node.peers
                .is_member_authority(host.trim_start_matches('[').trim_end_matches(']'), port)
        })
    }

    fn call(self: Arc<Self>, request: Request<WasiBody>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move {
            let path = request.uri().path();
            if trigger::is_trigger(&self, &request) {
                trigger::handle(self, request).await
            } else if path == "/v1/introspect" {
                introspect::handle(&self, request).await
            } else if path == "/.well-known/jwks.json" {
                respond::json(StatusCode::OK, &self.tokens.jwks())
            } else {
                respond::error(&ApiError::NotFound(format!("{path} is not reachable from a function")))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::names_listener;

    #[test]
    fn the_listener_is_recognised_by_address_and_loopback_names() {
        let local: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(names_listener("127.0.0.1", 8080, local));
        assert!(names_listener("localhost", 8080, local));
        assert!(names_listener("[::1]", 8080, local));
        assert!(!names_listener("127.0.0.1", 8081, local));
        assert!(!names_listener("example.com", 8080, local));
        let public: std::net::SocketAddr = "203.0.113.7:80".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(names_listener("203.0.113.7", 80, public));
        assert!(!names_listener("localhost", 80, public));
    }
}
