//! Forwarding a call to a node: the request and the answer stream through
//! without buffering. A request body is taken only once a node's connection
//! has been made, so a node that refuses the connection costs nothing and
//! the call goes to the next node; a request that was sent is never sent
//! again.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The client's request body, shared by the attempts to forward it: the
/// first attempt whose connection is made takes it.
pub struct Replayable {
    slot: Arc<Mutex<Option<Incoming>>>,
    taken: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    hint: SizeHint,
    end: bool,
    body: Option<Incoming>,
}

/// The shared slot of one request's body.
#[derive(Clone)]
pub struct BodySlot {
    slot: Arc<Mutex<Option<Incoming>>>,
    taken: Arc<AtomicBool>,
    /// The client's body failed (it went away, or sent a broken body).
    broken: Arc<AtomicBool>,
    hint: SizeHint,
    end: bool,
}

impl BodySlot {
    /// Holds `body` for the attempts to come.
    pub fn new(body: Incoming) -> Self {
        Self {
            hint: body.size_hint(),
            end: body.is_end_stream(),
            slot: Arc::new(Mutex::new(Some(body))),
            taken: Arc::default(),
            broken: Arc::default(),
        }
    }

    /// A body for one attempt.
    pub fn attempt(&self) -> Replayable {
        Replayable {
            slot: self.slot.clone(),
            taken: self.taken.clone(),
            broken: self.broken.clone(),
            hint: self.hint,
            end: self.end,
            body: None,
        }
    }

    /// Whether an attempt began sending the body (after which the request
    /// may have reached its node, and is never sent again).
    pub fn was_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    /// Whether the client's body failed while it was being sent: a call
    /// that then fails is the client's doing, not the node's.
    pub fn client_broke(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

impl Body for Replayable {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.body.is_none() {
            self.taken.store(true, Ordering::Release);
            let body = self
                .slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            self.body = body;
        }
        match self.body.as_mut() {
            Some(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(Some(Err(_)))) {
                    self.broken.store(true, Ordering::Release);
                }
                polled
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// A node's answer body, holding `guard` (its call's place in the node's
/// in-flight count) until the answer has been sent or dropped.
pub struct Tracked<G> {
    pub(super) body: Incoming,
    pub(super) _guard: G,
}

impl<G: Unpin> Body for Tracked<G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1):
/// those `Connection` names, and the standard hop-by-hop ones. What is left
/// is end to end, and passes through; each hop frames its own body.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        http::header::CONNECTION,
        http::header::TE,
        http::header::TRAILER,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::PROXY_AUTHORIZATION,
        http::header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Removes the headers nodes use between themselves, which a client must
/// not set (they would, say, make a log read answer for one node only).
/// Appends the client's address to `x-forwarded-for` (after any a proxy in
/// front of this one added), so the function can see who called.
pub fn add_forwarded_for(headers: &mut http::HeaderMap, client: std::net::IpAddr) {
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(value) = http::HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", value);
    }
}

pub fn strip_internal(headers: &mut http::HeaderMap) {
    headers.remove("x-stratus-logs-local");
    headers.remove("x-stratus-introspection-forwarded");
}

#[cfg(test)]
mod tests {
    #[test]
    fn internal_headers_are_not_forwarded() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-stratus-logs-local", http::HeaderValue::from_static("1"));
        headers.insert("x-stratus-introspection-forwarded", http::HeaderValue::from_static("1"));
        headers.insert("x-stratus-sub-tenant", http::HeaderValue::from_static("a"));
        super::strip_internal(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn the_client_is_appended_to_x_forwarded_for() {
        let client: std::net::IpAddr = [10, 0, 0, 7].into();
        let mut headers = http::HeaderMap::new();
        super::add_forwarded_for(&mut headers, client);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.7");
        headers.insert("x-forwarded-for", http::HeaderValue::from_static("203.0.113.1"));
        super::add_forwarded_for(&mut headers, client);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.1, 10.0.0.7");
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("authorization", "Bearer k"),
            ("x-stratus-sub-tenant", "alice"),
        ] {
            headers.append(name, value.parse().unwrap_or_else(|e| panic!("{e}")));
        }
        super::strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-stratus-sub-tenant"]);
    }
}
