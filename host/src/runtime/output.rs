//! What a guest prints to stdout and stderr, kept per call.
//!
//! One buffer serves an environment for its whole life, but its bound is per
//! call: [`CallOutput::take`] hands the call's output to its logs and starts
//! the next call with an empty buffer, so a warm environment's tenth call
//! may print as much as its first. Past the bound a call's further output is
//! dropped and the call goes on; printing is never a reason to fail a call.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The line a call's log gets when its output went past the bound.
pub const TRUNCATED: &[u8] = b"[stratus: output past this point was dropped: 64 KiB per call]\n";

#[derive(Debug, Default)]
struct Inner {
    kept: BytesMut,
    truncated: bool,
}

/// A bounded, shared output buffer for stdout and stderr.
#[derive(Debug, Clone)]
pub struct CallOutput {
    inner: Arc<Mutex<Inner>>,
    capacity: usize,
}

impl CallOutput {
    /// Keeps up to `capacity` bytes per call.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        let room = self.capacity.saturating_sub(inner.kept.len());
        if bytes.len() > room {
            inner.truncated = true;
        }
        inner.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// What the current call printed so far.
    pub fn contents(&self) -> Bytes {
        let inner = self.lock();
        let mut out = BytesMut::from(&inner.kept[..]);
        if inner.truncated {
            out.extend_from_slice(TRUNCATED);
        }
        out.freeze()
    }

    /// What the current call printed; the next call starts empty.
    pub fn take(&self) -> Bytes {
        let mut inner = self.lock();
        let mut out = std::mem::take(&mut inner.kept);
        if std::mem::take(&mut inner.truncated) {
            out.extend_from_slice(TRUNCATED);
        }
        out.freeze()
    }
}

impl IsTerminal for CallOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CallOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CallOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always writable: what does not fit is dropped, not refused.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for CallOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CallOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_per_call() {
        let out = CallOutput::new(8);
        out.append(b"12345");
        assert_eq!(&out.take()[..], b"12345");
        out.append(b"1234567890");
        let second = out.take();
        assert!(
            second.starts_with(b"12345678") && second.ends_with(TRUNCATED),
            "{second:?}"
        );
        out.append(b"abc");
        assert_eq!(&out.take()[..], b"abc", "a full call does not bound the next");
    }
}
