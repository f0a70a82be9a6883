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
    hint: SizeHint,
    end: bool,
    body: Option<Incoming>,
}

/// The shared slot of one request's body.
#[derive(Clone)]
pub struct BodySlot {
    slot: Arc<Mutex<Option<Incoming>>>,
    taken: Arc<AtomicBool>,
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
        }
    }

    /// A body for one attempt.
    pub fn attempt(&self) -> Replayable {
        Replayable {
            slot: self.slot.clone(),
            taken: self.taken.clone(),
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
            Some(body) => Pin::new(body).poll_frame(cx),
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
