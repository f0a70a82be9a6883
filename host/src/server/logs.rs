//! Function logs: what guests print, one entry per line, tagged with its
//! invocation, kept per function in a bounded buffer (oldest dropped first,
//! and counted) and streamed to the owner on `…/functions/{f}/logs`.
//!
//! Followers (`?follow=true`) are registered by the function they follow,
//! each with a bounded channel, and leave when their response body is
//! dropped; an account may have only so many at once.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::mpsc;

use super::respond::Body;
use crate::error::ApiError;
use crate::names::FunctionName;
use crate::runtime::output::{Printed, Stream};
use crate::tenancy::inflight::{InFlight, Ticket};

/// One line a guest printed.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// When the invocation ended, Unix milliseconds.
    pub time_ms: u64,
    /// The invocation.
    pub invocation_id: String,
    /// The function's owner.
    pub owner: String,
    /// The owner's id: logs are kept by it, so an account that takes a
    /// deleted account's name never reads what the old one's code printed.
    #[serde(skip)]
    pub owner_id: String,
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
    /// Who wrote the line: the guest's `stdout` or `stderr`, or `stratus`
    /// (the host, about the call: why it failed, what it refused).
    pub stream: Stream,
    /// The line, without its newline.
    pub line: String,
    /// When the invocation started: the log is kept in this order, since
    /// invocations are recorded as they end and a later call can end (and
    /// be recorded) first.
    #[serde(skip)]
    pub started: std::time::Instant,
}

impl LogEntry {
    /// What keeping the entry costs: its line and its tags. A guest that
    /// prints many short lines is held to the same bytes as one that prints
    /// long ones.
    fn cost(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + self.line.len()
            + self.invocation_id.len()
            + self.owner.len()
            + self.owner_id.len()
            + self.caller.len()
            + self.function.len()
            + self.sub_tenant.as_ref().map_or(0, String::len)
    }
}

#[derive(Default)]
struct FunctionLog {
    entries: VecDeque<Arc<LogEntry>>,
    bytes: usize,
    dropped: u64,
}

/// The key of a function's log: its owner's id and its name.
type LogKey = (String, String);

/// A client following one function's log.
struct Follower {
    id: u64,
    filter: Filter,
    sender: mpsc::Sender<Bytes>,
}

type Followers = Arc<Mutex<HashMap<LogKey, Vec<Follower>>>>;

/// Lines a follower may fall behind by before new ones skip it.
const FOLLOWER_BACKLOG: usize = 256;

/// Every function's recent lines.
pub struct Logs {
    functions: Mutex<HashMap<LogKey, FunctionLog>>,
    /// Followers by the function they follow: a line wakes only those that
    /// follow its function and want it.
    followers: Followers,
    next_follower: std::sync::atomic::AtomicU64,
    /// Clients following now.
    pub following: Gauge,
    /// Followers per account, bounded.
    follow_slots: Arc<InFlight>,
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
    /// Only the invocation whose id starts with this (the id, or the
    /// short form the CLI prints).
    pub invocation: Option<String>,
}

impl Filter {
    fn admits(&self, entry: &LogEntry) -> bool {
        entry.time_ms >= self.since_ms
            && (self.sub_tenant.is_none() || self.sub_tenant == entry.sub_tenant)
            && self
                .invocation
                .as_ref()
                .is_none_or(|id| entry.invocation_id.starts_with(id.as_str()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Logs {
    /// Keeps up to `limit` bytes of lines per function; each account may
    /// have `max_followers` clients following at once.
    pub fn new(limit: usize, max_followers: u32) -> Self {
        Self {
            functions: Mutex::new(HashMap::new()),
            followers: Arc::default(),
            next_follower: Default::default(),
            following: Gauge::default(),
            follow_slots: InFlight::new(max_followers, "log followers", "--max-log-followers-per-account"),
            limit,
        }
    }

    /// Records an invocation's output, one entry per line.
    pub fn record(&self, template: &LogEntry, printed: &Printed) {
        let lines: Vec<Arc<LogEntry>> = printed
            .lines()
            .into_iter()
            .map(|(stream, line)| {
                Arc::new(LogEntry {
                    stream,
                    line,
                    ..template.clone()
                })
            })
            .collect();
        if lines.is_empty() {
            return;
        }
        let key = (template.owner_id.clone(), template.function.clone());
        let mut functions = lock(&self.functions);
        let log = functions.entry(key.clone()).or_default();
        // Almost always at the end; after the invocations that started
        // before this one otherwise.
        let at = log.entries.partition_point(|e| e.started <= template.started);
        for (i, entry) in lines.iter().enumerate() {
            log.bytes += entry.cost();
            log.entries.insert(at + i, entry.clone());
        }
        while log.bytes > self.limit {
            let Some(oldest) = log.entries.pop_front() else { break };
            log.bytes -= oldest.cost();
            log.dropped += 1;
        }
        // Under the functions lock, so a follower that registered after
        // reading the kept lines misses none and sees none twice.
        let mut followers = lock(&self.followers);
        if let Some(list) = followers.get_mut(&key) {
            for follower in list.iter() {
                for entry in lines.iter().filter(|e| follower.filter.admits(e)) {
                    // A follower that does not read falls behind and skips
                    // lines; it never makes the host hold more.
                    let _ = follower.sender.try_send(ndjson(entry));
                }
            }
        }
    }

    fn kept(
        functions: &HashMap<LogKey, FunctionLog>,
        owner_id: &str,
        function: &FunctionName,
        filter: &Filter,
    ) -> (Vec<Arc<LogEntry>>, u64) {
        match functions.get(&(owner_id.to_string(), function.to_string())) {
            Some(log) => (
                log.entries.iter().filter(|e| filter.admits(e)).cloned().collect(),
                log.dropped,
            ),
            None => (Vec::new(), 0),
        }
    }

    /// Forgets the lines of an account's functions (`function: None`) or of
    /// one of them, once deleted.
    pub fn forget(&self, owner_id: &str, function: Option<&FunctionName>) {
        let mut functions = lock(&self.functions);
        functions.retain(|(owner, name), _| owner != owner_id || function.is_some_and(|f| f.as_str() != name));
    }

    /// The kept lines as NDJSON, and with `follow` new ones as they come,
    /// until the reader goes away. `account` names the owner in a refusal:
    /// an account may have only so many followers at once.
    pub fn response(
        &self,
        owner_id: &str,
        account: &str,
        function: &FunctionName,
        filter: Filter,
        follow: bool,
    ) -> Result<Response<Body>, ApiError> {
        let ticket = follow.then(|| self.follow_slots.enter(owner_id, account)).transpose()?;
        let functions = lock(&self.functions);
        let (entries, dropped) = Self::kept(&functions, owner_id, function, &filter);
        let live = ticket.map(|ticket| {
            let (sender, receiver) = mpsc::channel(FOLLOWER_BACKLOG);
            let id = self.next_follower.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = (owner_id.to_string(), function.to_string());
            lock(&self.followers)
                .entry(key.clone())
                .or_default()
                .push(Follower { id, filter, sender });
            self.following.inc();
            (
                receiver,
                Registration {
                    followers: self.followers.clone(),
                    key,
                    id,
                    following: self.following.clone(),
                    _ticket: ticket,
                },
            )
        });
        drop(functions);
        let lines = Lines {
            kept: entries.iter().map(|e| ndjson(e)).collect(),
            live,
        };
        let mut response = Response::new(lines.map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        headers.insert("x-stratus-dropped-lines", HeaderValue::from(dropped));
        Ok(response)
    }
}

fn ndjson(entry: &LogEntry) -> Bytes {
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A follower's place in [`Logs`]: dropped with the response body (the
/// client went away), it takes the follower out at once.
struct Registration {
    followers: Followers,
    key: LogKey,
    id: u64,
    following: Gauge,
    _ticket: Ticket,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut followers = lock(&self.followers);
        if let Some(list) = followers.get_mut(&self.key) {
            list.retain(|f| f.id != self.id);
            if list.is_empty() {
                followers.remove(&self.key);
            }
        }
        self.following.dec();
    }
}

/// The kept lines, then (when following) the live ones until the client
/// goes away. No task of its own: when hyper drops the body, it is gone.
struct Lines {
    kept: VecDeque<Bytes>,
    live: Option<(mpsc::Receiver<Bytes>, Registration)>,
}

impl HttpBody for Lines {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(line) = self.kept.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(line))));
        }
        match &mut self.live {
            Some((receiver, _)) => receiver
                .poll_recv(cx)
                .map(|line| line.map(|line| Ok(Frame::data(line)))),
            None => Poll::Ready(None),
        }
    }
}
