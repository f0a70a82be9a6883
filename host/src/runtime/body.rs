//! A request body that stops at its size limit while streaming, and one that
//! stops when it trickles in slower than a minimum rate.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error as HttpError;

/// Wraps a body and fails it as soon as more than `limit` bytes arrive, so an
/// oversized upload is refused without being held in memory.
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    /// Limits `inner` to `limit` bytes; `exceeded` is set when it overflows.
    pub fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.exceeded.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(self.limit)))));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The slowest a request body may come in: after `grace`, at least `rate`
/// bytes per second on average (the allowance grows by one second per
/// `rate` bytes received, as Apache's `mod_reqtimeout` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second; 0 turns the check off.
    pub rate: u64,
    /// Time the body may take before the rate applies.
    pub grace: std::time::Duration,
}

impl MinRate {
    /// The error for a body cut off by this rule.
    pub fn error(&self) -> crate::error::ApiError {
        crate::error::ApiError::RequestTimeout {
            min_rate: self.rate,
            grace_ms: self.grace.as_millis() as u64,
        }
    }
}

/// Wraps a body and fails it when its bytes come in slower than a
/// [`MinRate`]: a client that trickles a body cannot hold a call, its
/// concurrency permit and its environment for as long as it likes.
pub struct RateBody<B> {
    inner: B,
    min: MinRate,
    started: tokio::time::Instant,
    received: u64,
    timer: Pin<Box<tokio::time::Sleep>>,
    too_slow: Arc<AtomicBool>,
    /// Set while the body's reader waits for bytes the client has not sent.
    stalled: Option<Arc<AtomicBool>>,
}

impl<B> RateBody<B> {
    /// Holds `inner` to `min`; `too_slow` is set when it is cut off.
    pub fn new(inner: B, min: MinRate, too_slow: Arc<AtomicBool>) -> Self {
        let started = tokio::time::Instant::now();
        Self {
            inner,
            min,
            started,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(started + min.grace)),
            too_slow,
            stalled: None,
        }
    }

    /// Keeps `stalled` set while the body's reader waits on the client, so
    /// that a call whose deadline passes then can blame the client (408),
    /// not the function.
    pub fn with_stall(mut self, stalled: Arc<AtomicBool>) -> Self {
        self.stalled = Some(stalled);
        self
    }

    /// When the body must have made more progress by.
    fn deadline(&self) -> tokio::time::Instant {
        let earned = std::time::Duration::from_secs_f64(self.received as f64 / self.min.rate.max(1) as f64);
        self.started + self.min.grace + earned
    }
}

impl<B> Body for RateBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(stalled) = &self.stalled {
            stalled.store(polled.is_pending(), Ordering::Release);
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    let deadline = self.deadline();
                    self.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if self.min.rate == 0 => Poll::Pending,
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.too_slow.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(None))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
