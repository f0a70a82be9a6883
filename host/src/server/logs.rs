//! Function logs: what guests print, one entry per line, tagged with its
//! invocation, kept per function in a bounded buffer (oldest dropped first,
//! and counted) and streamed to the owner on `…/functions/{f}/logs`.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::respond::Body;
use crate::names::{AccountName, FunctionName};

/// One line a guest printed.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// When the invocation ended, Unix milliseconds.
    pub time_ms: u64,
    /// The invocation.
    pub invocation_id: String,
    /// The function's owner.
    pub owner: String,
    /// The calling account, or `anonymous`.
    pub caller: String,
    /// The function.
    pub function: String,
    /// The version.
    pub version: u32,
    /// The sub-tenant.
    pub sub_tenant: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The invocation's duration.
    pub duration_ms: u64,
    /// The line, without its newline.
    pub line: String,
}

#[derive(Default)]
struct FunctionLog {
    entries: VecDeque<Arc<LogEntry>>,
    bytes: usize,
    dropped: u64,
}

/// Every function's recent lines.
pub struct Logs {
    functions: Mutex<HashMap<(String, String), FunctionLog>>,
    live: broadcast::Sender<Arc<LogEntry>>,
    /// Bytes of lines kept per function.
    limit: usize,
}

/// What a reader asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only lines from invocations that ended at or after this, Unix ms.
    pub since_ms: u64,
    /// Only this sub-tenant's.
    pub sub_tenant: Option<String>,
}

impl Filter {
    fn admits(&self, entry: &LogEntry) -> bool {
        entry.time_ms >= self.since_ms && (self.sub_tenant.is_none() || self.sub_tenant == entry.sub_tenant)
    }
}

impl Logs {
    /// Keeps up to `limit` bytes of lines per function.
    pub fn new(limit: usize) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            functions: Mutex::new(HashMap::new()),
            live,
            limit,
        }
    }

    /// Records an invocation's output, one entry per line.
    pub fn record(&self, template: &LogEntry, printed: &[u8]) {
        let text = String::from_utf8_lossy(printed);
        let lines: Vec<Arc<LogEntry>> = text
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                Arc::new(LogEntry {
                    line: line.to_string(),
                    ..template.clone()
                })
            })
            .collect();
        if lines.is_empty() {
            return;
        }
        {
            let mut functions = self.functions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let log = functions
                .entry((template.owner.clone(), template.function.clone()))
                .or_default();
            for entry in &lines {
                log.bytes += entry.line.len();
                log.entries.push_back(entry.clone());
            }
            while log.bytes > self.limit {
                let Some(oldest) = log.entries.pop_front() else { break };
                log.bytes -= oldest.line.len();
                log.dropped += 1;
            }
        }
        for entry in lines {
            // Nobody following is fine.
            let _ = self.live.send(entry);
        }
    }

    /// The kept lines of a function that pass `filter`, and how many lines
    /// the bound has dropped so far.
    pub fn read(&self, owner: &AccountName, function: &FunctionName, filter: &Filter) -> (Vec<Arc<LogEntry>>, u64) {
        let functions = self.functions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match functions.get(&(owner.to_string(), function.to_string())) {
            Some(log) => (
                log.entries.iter().filter(|e| filter.admits(e)).cloned().collect(),
                log.dropped,
            ),
            None => (Vec::new(), 0),
        }
    }

    /// The kept lines as NDJSON, and with `follow` new ones as they come,
    /// until the reader goes away.
    pub fn response(
        &self,
        owner: &AccountName,
        function: &FunctionName,
        filter: Filter,
        follow: bool,
    ) -> Response<Body> {
        let (entries, dropped) = self.read(owner, function, &filter);
        let (sender, receiver) = mpsc::channel::<Bytes>(256);
        let kept: Vec<Bytes> = entries.iter().map(|e| ndjson(e)).collect();
        let mut live = follow.then(|| self.live.subscribe());
        let (owner, function) = (owner.to_string(), function.to_string());
        tokio::spawn(async move {
            for line in kept {
                if sender.send(line).await.is_err() {
                    return;
                }
            }
            let Some(live) = live.as_mut() else { return };
            loop {
                match live.recv().await {
                    Ok(entry) if entry.owner == owner && entry.function == function && filter.admits(&entry) => {
                        if sender.send(ndjson(&entry)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let mut response = Response::new(Lines(receiver).map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        headers.insert("x-stratus-dropped-lines", HeaderValue::from(dropped));
        response
    }
}

fn ndjson(entry: &LogEntry) -> Bytes {
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A body fed by a channel: it ends when the sender does.
struct Lines(mpsc::Receiver<Bytes>);

impl HttpBody for Lines {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|line| line.map(|line| Ok(Frame::data(line))))
    }
}
