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
pub const TRUNCATED: &str = "output past this point was dropped: 64 KiB per call";

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error (where a Rust panic's message goes).
    Stderr,
    /// The host, about the call: why it failed, what it refused.
    Stratus,
}

/// What one call printed, in order, by stream.
#[derive(Debug, Clone, Default)]
pub struct Printed {
    chunks: Vec<(Stream, Bytes)>,
    /// The host's lines about the call as a whole, after everything printed.
    after: Vec<String>,
}

impl Printed {
    /// Nothing printed and nothing to say.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.after.is_empty()
    }

    /// The same, with one more line from the host after what was printed.
    pub fn with_note(mut self, note: &str) -> Self {
        self.after.push(note.to_string());
        self
    }

    /// Non-empty lines by stream, in the order they ended; a line a
    /// stream left unfinished ends with the call.
    pub fn lines(&self) -> Vec<(Stream, String)> {
        let mut open: Vec<(Stream, Vec<u8>)> = Vec::new();
        let mut lines = Vec::new();
        let finish = |stream: Stream, bytes: Vec<u8>, lines: &mut Vec<(Stream, String)>| {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches('\r');
            if !text.is_empty() {
                lines.push((stream, text.to_string()));
            }
        };
        for (stream, chunk) in &self.chunks {
            let index = match open.iter().position(|(s, _)| s == stream) {
                Some(index) => index,
                None => {
                    open.push((*stream, Vec::new()));
                    open.len() - 1
                }
            };
            for piece in chunk.split_inclusive(|b| *b == b'\n') {
                open[index].1.extend_from_slice(piece);
                if piece.ends_with(b"\n") {
                    let mut line = std::mem::take(&mut open[index].1);
                    line.pop();
                    finish(*stream, line, &mut lines);
                }
            }
        }
        for (stream, rest) in open {
            finish(stream, rest, &mut lines);
        }
        lines.extend(self.after.iter().map(|note| (Stream::Stratus, note.clone())));
        lines
    }
}

#[derive(Debug, Default)]
struct Inner {
    chunks: Vec<(Stream, BytesMut)>,
    kept: usize,
    truncated: bool,
}

/// A bounded output buffer shared by stdout and stderr; each clone writes
/// as one stream.
#[derive(Debug, Clone)]
pub struct CallOutput {
    inner: Arc<Mutex<Inner>>,
    capacity: usize,
    stream: Stream,
}

impl CallOutput {
    /// Keeps up to `capacity` bytes per call; this handle writes stdout.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity,
            stream: Stream::Stdout,
        }
    }

    /// A handle to the same buffer that writes as `stream`.
    pub fn as_stream(&self, stream: Stream) -> Self {
        Self { stream, ..self.clone() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        let room = self.capacity.saturating_sub(inner.kept);
        if bytes.len() > room {
            inner.truncated = true;
        }
        let kept = &bytes[..bytes.len().min(room)];
        if kept.is_empty() {
            return;
        }
        inner.kept += kept.len();
        match inner.chunks.last_mut() {
            Some((stream, chunk)) if *stream == self.stream => chunk.extend_from_slice(kept),
            _ => inner.chunks.push((self.stream, BytesMut::from(kept))),
        }
    }

    /// A line from the host about the current call (e.g. a refused
    /// request). It counts against the call's bound like the guest's own
    /// output: a guest that makes the host refuse in a loop cannot make the
    /// host write more than it could print.
    pub fn note(&self, line: &str) {
        let mut inner = self.lock();
        let line = format!("{line}\n");
        let notes = inner.chunks.iter().filter(|(s, _)| *s == Stream::Stratus).count();
        if notes >= 16 || line.len() > self.capacity.saturating_sub(inner.kept) {
            inner.truncated = true;
            return;
        }
        inner.kept += line.len();
        inner.chunks.push((Stream::Stratus, BytesMut::from(line.as_bytes())));
    }

    fn printed(chunks: Vec<(Stream, Bytes)>, truncated: bool) -> Printed {
        let printed = Printed {
            chunks,
            after: Vec::new(),
        };
        if truncated {
            printed.with_note(TRUNCATED)
        } else {
            printed
        }
    }

    /// What the current call printed so far (a copy: the call may go on).
    pub fn contents(&self) -> Printed {
        let inner = self.lock();
        let chunks = inner
            .chunks
            .iter()
            .map(|(s, b)| (*s, Bytes::copy_from_slice(b)))
            .collect();
        Self::printed(chunks, inner.truncated)
    }

    /// What the current call printed, moved out (every call's path: no
    /// copy); the next call starts empty.
    pub fn take(&self) -> Printed {
        let inner = std::mem::take(&mut *self.lock());
        let chunks = inner.chunks.into_iter().map(|(s, b)| (s, b.freeze())).collect();
        Self::printed(chunks, inner.truncated)
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

    fn text(printed: &Printed) -> Vec<(Stream, String)> {
        printed.lines()
    }

    #[test]
    fn the_bound_is_per_call() {
        let out = CallOutput::new(8);
        out.append(b"12345");
        assert_eq!(text(&out.take()), [(Stream::Stdout, "12345".to_string())]);
        out.append(b"1234567890");
        assert_eq!(
            text(&out.take()),
            [
                (Stream::Stdout, "12345678".to_string()),
                (Stream::Stratus, TRUNCATED.to_string())
            ]
        );
        out.append(b"abc");
        assert_eq!(
            text(&out.take()),
            [(Stream::Stdout, "abc".to_string())],
            "a full call does not bound the next"
        );
    }

    #[test]
    fn host_notes_count_against_the_bound() {
        let out = CallOutput::new(64);
        for _ in 0..10 {
            out.note("refused a request to somewhere");
        }
        let lines = text(&out.take());
        let notes = lines
            .iter()
            .filter(|(s, l)| *s == Stream::Stratus && l != TRUNCATED)
            .count();
        assert_eq!(notes, 2, "{lines:?}");
        assert_eq!(lines.last().map(|(_, l)| l.as_str()), Some(TRUNCATED));
    }

    #[test]
    fn lines_keep_their_stream_when_the_streams_interleave() {
        let out = CallOutput::new(1024);
        let err = out.as_stream(Stream::Stderr);
        out.append(b"half ");
        err.append(b"panicked at x\n");
        out.append(b"line\nlast");
        out.note("refused");
        assert_eq!(
            text(&out.take()),
            [
                (Stream::Stderr, "panicked at x".to_string()),
                (Stream::Stdout, "half line".to_string()),
                (Stream::Stratus, "refused".to_string()),
                (Stream::Stdout, "last".to_string()),
            ]
        );
    }
}
