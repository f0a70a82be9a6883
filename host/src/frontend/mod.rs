//! `stratus frontend`: a stateless router in front of a cluster's nodes.
//!
//! It learns the live nodes from the cluster's membership, puts them on a
//! consistent hash ring ([`ring`]), and sends each trigger call to the arc of
//! its group ([`route`]): (account, function or alias name), plus the
//! sub-tenant the call names, so every partition lands on a stable node and
//! finds its warm environments there. Inside the arc it picks by bounded
//! load on its own in-flight counts. A call carrying an invocation token
//! goes to the node that minted it. Admin API calls go to any live node.
//! Requests and answers stream through ([`forward`]); a node that refuses a
//! connection is marked down and skipped at once.

pub mod forward;
pub mod keys;
pub mod route;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::cluster::ClusterConfig;
use crate::cluster::members::{Directory, Member};
use crate::cluster::ring;

/// What a frontend answers with.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

/// How a frontend routes.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Where it reaches the cluster.
    pub cluster: ClusterConfig,
    /// Distinct nodes in a group's arc; the cluster's `--arc-size` if none.
    pub arc_size: Option<usize>,
    /// The bounded-load factor `c`.
    pub load_factor: f64,
    /// Points per node on the ring.
    pub vnodes: usize,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long a node may take to start answering a call it was sent.
    pub node_timeout: Duration,
    /// Send a reservation's calls where the ring puts them as soon as it
    /// shrinks, rather than keeping each partition on its node while warm.
    pub rehash_at_once: bool,
}

/// Partitions remembered on their nodes at most (a partition costs its key
/// and node id): past it, new ones are not remembered until idle ones are
/// forgotten (every few seconds).
const MAX_STICKY: usize = 100_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// The frontend's own counters, `stratus_frontend_*`.
struct Metrics {
    registry: prometheus_client::registry::Registry,
    routed: Family<NodeLabel, Counter>,
    skipped: Family<NodeLabel, Counter>,
    failed: Family<NodeLabel, Counter>,
    client_aborted: Counter,
    in_flight: Family<NodeLabel, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::with_prefix("stratus_frontend");
        let routed = Family::<NodeLabel, Counter>::default();
        registry.register("routed", "Calls sent to each node", routed.clone());
        let skipped = Family::<NodeLabel, Counter>::default();
        registry.register(
            "skipped",
            "Calls that went to the next node because this one refused the connection",
            skipped.clone(),
        );
        let failed = Family::<NodeLabel, Counter>::default();
        registry.register(
            "failed",
            "Calls sent to a node that failed before it answered (never sent again)",
            failed.clone(),
        );
        let client_aborted = Counter::default();
        registry.register(
            "client_aborted",
            "Calls whose client broke off its request body while it was forwarded",
            client_aborted.clone(),
        );
        let in_flight = Family::<NodeLabel, Gauge>::default();
        registry.register("in_flight", "Calls in flight to each node", in_flight.clone());
        Self {
            registry,
            routed,
            skipped,
            failed,
            client_aborted,
            in_flight,
        }
    }
}

/// A running frontend.
pub struct Frontend {
    config: FrontendConfig,
    directory: Arc<Directory>,
    /// Nodes that refused a connection, by id, with the start time of the
    /// lease they had then: down until a probe answers or they rejoin.
    down: Mutex<HashMap<String, u64>>,
    ring: RwLock<Arc<ring::Ring>>,
    /// Where the reservations are, with their arcs.
    placement: Arc<crate::cluster::placement::View>,
    /// The arc size in use.
    arc_size: usize,
    /// The node each partition of a reserved function was last sent to, and
    /// when: after the reservation shrinks, its partitions stay where their
    /// warm environments are until those expire.
    sticky: Mutex<HashMap<Vec<u8>, (String, std::time::Instant)>>,
    /// Whether `sticky` holds anything (unreserved calls skip its lock).
    any_sticky: std::sync::atomic::AtomicBool,
    in_flight: Mutex<HashMap<String, u64>>,
    total_in_flight: AtomicU64,
    next_any: AtomicUsize,
    base_domain: Option<String>,
    /// The cluster's public keys, to verify an invocation token before
    /// sending its call to the node it names.
    keys: keys::Keys,
    http: HttpClient<HttpConnector, forward::Replayable>,
    metrics: Metrics,
}

/// A call's place in its node's in-flight count.
struct InFlight {
    frontend: Arc<Frontend>,
    node: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self
            .frontend
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.node) {
            *count = count.saturating_sub(1);
        }
        self.frontend.total_in_flight.fetch_sub(1, Ordering::AcqRel);
        self.frontend
            .metrics
            .in_flight
            .get_or_create(&NodeLabel {
                node: self.node.clone(),
            })
            .dec();
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

impl Frontend {
    /// Connects to the cluster and starts following its nodes.
    pub async fn start(config: FrontendConfig) -> anyhow::Result<Arc<Self>> {
        let client = config.cluster.connect().await?;
        // The settings (issuer, base domain, arc size) are the first node's:
        // until one has joined, there is nothing to route by.
        let mut told = false;
        let settings = loop {
            let settings = crate::cluster::settings::read(&client, &config.cluster)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the cluster's settings (is --cluster right?): {e}"))?;
            if !settings.is_empty() {
                break settings;
            }
            if !told {
                told = true;
                eprintln!(
                    "waiting for the cluster's first node: no node has joined {} yet (is the prefix right?)",
                    config.cluster.key("")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let base_domain = settings.get("base-domain").filter(|b| !b.is_empty()).cloned();
        let arc_size = match config.arc_size {
            Some(size) => size,
            None => settings
                .get("arc-size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(crate::cluster::DEFAULT_ARC_SIZE),
        };
        let placement = crate::cluster::placement::View::follow(client.clone(), config.cluster.clone());
        let skew = settings
            .get("clock-skew")
            .and_then(|s| humantime::parse_duration(s).ok())
            .unwrap_or(Duration::from_secs(1));
        let keys = keys::Keys::new(settings.get("issuer").cloned().unwrap_or_default(), skew.as_secs());
        let directory = Directory::follow(client, config.cluster.clone());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let frontend = Arc::new(Self {
            config,
            directory,
            down: Mutex::default(),
            ring: RwLock::default(),
            placement,
            arc_size,
            sticky: Mutex::default(),
            any_sticky: std::sync::atomic::AtomicBool::new(false),
            in_flight: Mutex::default(),
            total_in_flight: AtomicU64::new(0),
            next_any: AtomicUsize::new(0),
            base_domain,
            keys,
            http,
            metrics: Metrics::new(),
        });
        tokio::spawn(Self::keep_ring(Arc::downgrade(&frontend)));
        Ok(frontend)
    }

    /// Rebuilds the ring when the live nodes change, and probes the nodes
    /// marked down.
    async fn keep_ring(this: std::sync::Weak<Self>) {
        let probe = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        for round in 0u64.. {
            let Some(frontend) = this.upgrade() else { return };
            let members = frontend.directory.members();
            let down: Vec<(String, u64)> = frontend
                .down
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(id, at)| (id.clone(), *at))
                .collect();
            for (id, at) in down {
                let member = members.iter().find(|m| m.id == id);
                let back = match member {
                    // It left, or took a new lease: a node to try again.
                    None => true,
                    Some(member) if member.started_at != at => true,
                    Some(member) => {
                        let url = format!("{}/healthz", member.advertise);
                        match url.parse::<http::Uri>() {
                            Ok(uri) => tokio::time::timeout(Duration::from_millis(500), probe.get(uri))
                                .await
                                .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success())),
                            Err(_) => false,
                        }
                    }
                };
                if back {
                    frontend
                        .down
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&id);
                }
            }
            frontend.rebuild(&members);
            // From a node on the ring (not marked down).
            if frontend.keys.stale()
                && let Some(member) = frontend
                    .ring()
                    .nodes()
                    .first()
                    .and_then(|id| frontend.directory.get(id))
            {
                frontend.keys.refresh(&member.advertise).await;
            }
            if round % 50 == 0 {
                frontend.forget_cold();
            }
            drop(frontend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The ring of the live nodes not marked down, if that set changed.
    fn rebuild(&self, members: &[Member]) {
        let down = self
            .down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let live: Vec<String> = members
            .iter()
            .filter(|m| !down.contains_key(&m.id))
            .map(|m| m.id.clone())
            .collect();
        let current = self.ring();
        let same: HashSet<&String> = current.nodes().iter().collect();
        if same.len() == live.len() && live.iter().all(|id| same.contains(id)) {
            return;
        }
        tracing::info!(nodes = ?live, "the ring changed");
        *self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(ring::Ring::new(&live, self.config.vnodes));
    }

    fn ring(&self) -> Arc<ring::Ring> {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn mark_down(&self, node: &str) {
        let started = self.directory.get(node).map_or(0, |m| m.started_at);
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node.to_string(), started);
        tracing::warn!(node, "a node refused the connection: marked down");
        self.rebuild(&self.directory.members());
    }

    fn count(&self, node: &str) -> u64 {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(node)
            .copied()
            .unwrap_or(0)
    }

    /// The nodes to try for `route`, best first.
    fn candidates(&self, route: &route::Route) -> Vec<String> {
        let ring = self.ring();
        match route {
            route::Route::Call {
                key,
                minted_by,
                function,
            } => {
                // The node that knows the token's invocation, while it lives.
                if let Some(node) = minted_by
                    && ring.nodes().iter().any(|n| n == node)
                {
                    return vec![node.clone()];
                }
                // Every node in ring order from the key: the arc is its first
                // `arc_size`, the rest are where the call goes if those fail.
                let all = ring.arc(key, usize::MAX);
                let total = self.total_in_flight.load(Ordering::Acquire);
                let c = self.config.load_factor;
                let placement = self.placement.get();
                // A reserved function's calls go to its reserved arc (in the
                // order the ring gives this partition), where its environments
                // are kept.
                let reserved: Vec<&str> = function
                    .as_ref()
                    .and_then(|f| {
                        placement
                            .find(&f.account, &f.name, f.qualifier.as_deref())
                            .map(|p| (f, p))
                    })
                    .filter(|(f, p)| p.sub_tenant.is_none() || p.sub_tenant == f.sub_tenant)
                    .map(|(_, p)| {
                        all.iter()
                            .copied()
                            .filter(|node| p.nodes.iter().any(|s| s.node == *node))
                            .collect()
                    })
                    .unwrap_or_default();
                let arc = if reserved.is_empty() {
                    &all[..self.arc_size.min(all.len())]
                } else {
                    &reserved[..]
                };
                let bound = (c * (total + 1) as f64 / arc.len().max(1) as f64).ceil() as u64;
                // A partition a reservation placed stays on the node it was
                // sent to while its environment there is warm (and the node
                // is not overloaded), whether the reservation since shrank,
                // moved or went; idle past the warm time, it goes where the
                // placement or the ring puts it.
                // Remembered per qualifier: a reservation of `hello:3` says
                // nothing about where `hello:4` is warm. Built only when
                // there is something to look up or remember, not per call.
                let sticky_key = (!reserved.is_empty() || self.any_sticky.load(Ordering::Acquire)).then(|| {
                    match function.as_ref().and_then(|f| f.qualifier.as_deref()) {
                        Some(qualifier) => [key.as_slice(), b"\0", qualifier.as_bytes()].concat(),
                        None => key.clone(),
                    }
                });
                let kept = sticky_key
                    .as_deref()
                    .and_then(|sticky| self.kept(sticky, Duration::from_millis(placement.keep_ms)))
                    .filter(|node| self.count(node) < bound)
                    .and_then(|node| all.iter().copied().find(|n| *n == node));
                let chosen = match kept {
                    Some(node) => {
                        if let Some(sticky) = &sticky_key {
                            self.remember(sticky, node);
                        }
                        Some(node)
                    }
                    None => {
                        let chosen = ring::choose(arc, |node| self.count(node), total, c);
                        if let Some(node) = chosen
                            && let Some(sticky) = &sticky_key
                            && !reserved.is_empty()
                            && !self.config.rehash_at_once
                        {
                            self.remember(sticky, node);
                        }
                        chosen
                    }
                };
                let mut order: Vec<String> = chosen.into_iter().map(str::to_string).collect();
                order.extend(
                    all.iter()
                        .filter(|node| Some(**node) != chosen)
                        .map(|node| node.to_string()),
                );
                order
            }
            route::Route::Any => {
                let nodes = ring.nodes();
                if nodes.is_empty() {
                    return Vec::new();
                }
                let start = self.next_any.fetch_add(1, Ordering::Relaxed) % nodes.len();
                nodes.iter().cycle().skip(start).take(nodes.len()).cloned().collect()
            }
        }
    }

    /// Sends `req` to the first of its candidates that takes the connection.
    async fn forward(self: &Arc<Self>, req: Request<Incoming>, client: std::net::IpAddr) -> Response<Body> {
        // Only `/path` targets are forwarded: `*`, or an absolute or
        // authority form, has no meaning for a node (and must never make a
        // node look down).
        if !req.uri().path().starts_with('/') || req.uri().authority().is_some() {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the frontend forwards requests for a /path only",
            );
        }
        let mut route = route::of(req.uri().path(), req.headers(), self.base_domain.as_deref());
        // An invocation token's node is trusted only once the token verifies:
        // a forged one is routed like any other call (and refused there).
        if let route::Route::Call { minted_by, .. } = &mut route
            && minted_by.is_some()
        {
            let bearer = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let any = self
                .ring()
                .nodes()
                .first()
                .and_then(|id| self.directory.get(id))
                .map(|m| m.advertise);
            *minted_by = match bearer {
                Some(bearer) => self.keys.minting_node(bearer, any.as_deref()).await,
                None => None,
            };
        }
        let candidates = self.candidates(&route);
        let (parts, body) = req.into_parts();
        let slot = forward::BodySlot::new(body);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        for node in candidates {
            let Some(member) = self.directory.get(&node) else {
                continue;
            };
            let Ok(uri) = format!("{}{path}", member.advertise).parse::<http::Uri>() else {
                continue;
            };
            let mut request = Request::new(slot.attempt());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.headers_mut() = parts.headers.clone();
            forward::strip_hop_by_hop(request.headers_mut());
            forward::strip_internal(request.headers_mut());
            forward::add_forwarded_for(request.headers_mut(), client);
            let label = NodeLabel { node: node.clone() };
            let guard = self.enter(&node);
            let answer = match tokio::time::timeout(self.config.node_timeout, self.http.request(request)).await {
                Ok(answer) => answer,
                Err(_) => {
                    // Sent, and never answered: not sent again.
                    self.metrics.failed.get_or_create(&label).inc();
                    tracing::warn!(node, "a node did not answer a call in time: marked down");
                    self.mark_down(&node);
                    return json_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        &format!(
                            "node {node} did not answer within {} s; the call was not sent again",
                            self.config.node_timeout.as_secs()
                        ),
                    );
                }
            };
            match answer {
                Ok(answer) => {
                    self.metrics.routed.get_or_create(&label).inc();
                    let (mut head, body) = answer.into_parts();
                    forward::strip_hop_by_hop(&mut head.headers);
                    if let Ok(value) = http::HeaderValue::from_str(&node) {
                        head.headers.insert("x-stratus-node", value);
                    }
                    let body = forward::Tracked { body, _guard: guard };
                    return Response::from_parts(head, body.boxed_unsync());
                }
                Err(err) if err.is_connect() && !slot.was_taken() => {
                    // Nothing was sent: the next node gets the call.
                    self.metrics.skipped.get_or_create(&label).inc();
                    self.mark_down(&node);
                }
                Err(err) if slot.client_broke() => {
                    // The client went away (or broke its body) mid-request:
                    // nothing to blame the node for.
                    self.metrics.client_aborted.inc();
                    tracing::debug!(%err, node, "the client's request body broke off");
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "the request body ended before it was complete",
                    );
                }
                Err(err) => {
                    self.metrics.failed.get_or_create(&label).inc();
                    tracing::warn!(%err, node, "a node failed a call it had been sent");
                    return json_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        &format!("node {node} failed before it answered; the call was not sent again"),
                    );
                }
            }
        }
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no node of the cluster took the call",
        )
    }

    /// Remembers that `key`'s partition was just sent to `node`.
    fn remember(&self, key: &[u8], node: &str) {
        let now = std::time::Instant::now();
        let mut sticky = self.sticky.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = sticky.get_mut(key) {
            entry.1 = now;
            if entry.0 != node {
                entry.0 = node.to_string();
            }
            return;
        }
        if sticky.len() < MAX_STICKY {
            sticky.insert(key.to_vec(), (node.to_string(), now));
            self.any_sticky.store(true, Ordering::Release);
        }
    }

    /// The node `key`'s partition was sent to within `keep` (refreshed only
    /// once the call is sent there again).
    fn kept(&self, key: &[u8], keep: Duration) -> Option<String> {
        if !self.any_sticky.load(Ordering::Acquire) {
            return None;
        }
        let mut sticky = self.sticky.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = sticky.get_mut(key)?;
        let now = std::time::Instant::now();
        if now.duration_since(entry.1) >= keep {
            sticky.remove(key);
            return None;
        }
        Some(entry.0.clone())
    }

    /// Forgets partitions idle past the warm time: their environments
    /// have expired, so nothing keeps them off their ring places.
    fn forget_cold(&self) {
        if !self.any_sticky.load(Ordering::Acquire) {
            return;
        }
        let keep = Duration::from_millis(self.placement.get().keep_ms);
        let mut sticky = self.sticky.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        sticky.retain(|_, (_, at)| now.duration_since(*at) < keep);
        self.any_sticky.store(!sticky.is_empty(), Ordering::Release);
    }

    fn enter(self: &Arc<Self>, node: &str) -> InFlight {
        *self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(node.to_string())
            .or_default() += 1;
        self.total_in_flight.fetch_add(1, Ordering::AcqRel);
        self.metrics
            .in_flight
            .get_or_create(&NodeLabel { node: node.to_string() })
            .inc();
        InFlight {
            frontend: self.clone(),
            node: node.to_string(),
        }
    }

    async fn dispatch(self: Arc<Self>, req: Request<Incoming>, client: std::net::IpAddr) -> Response<Body> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let nodes = self.ring().nodes().to_vec();
                let status = if nodes.is_empty() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let body = serde_json::json!({ "ready": !nodes.is_empty(), "nodes": nodes }).to_string();
                text(status, body)
            }
            "/metrics" => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry) {
                    Ok(()) => text(StatusCode::OK, out),
                    Err(err) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &err.to_string()),
                }
            }
            _ => self.forward(req, client).await,
        }
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) {
        let connections = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let this = this.clone();
                async move { Ok::<_, std::convert::Infallible>(this.dispatch(req, peer.ip()).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(self.config.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let connection = connections.watch(connection);
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(%err, %peer, "connection ended with an error");
                }
            });
        }
        // The calls in flight finish; new connections are refused.
        let _ = tokio::time::timeout(Duration::from_secs(30), connections.shutdown()).await;
    }
}
