//! The cluster harness: a real etcd on loopback ports and real
//! `stratus serve --cluster` nodes. One etcd serves the whole test binary,
//! each test under its own prefix; a test that stops etcd starts its own.

mod calls;
mod faults;
mod frontends;
mod import;
mod propagation;
mod reserved;
mod script;
mod shared;
mod tls;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{OPERATOR_KEY, Server};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A real etcd with a temporary data directory.
pub struct Etcd {
    child: Option<Child>,
    /// `127.0.0.1:PORT` of its client listener.
    pub endpoint: String,
    peer: String,
    dir: PathBuf,
    /// More flags (TLS); with `--cert-file`, clients speak https.
    extra: Vec<String>,
    _keep: Option<tempfile::TempDir>,
}

impl Etcd {
    /// Starts one on free ports; fails the test with the fix when etcd is
    /// not installed.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// One with more flags, e.g. TLS.
    pub fn start_with(extra: &[&str]) -> Self {
        let keep = tempfile::tempdir().unwrap();
        let mut etcd = Self {
            child: None,
            endpoint: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            dir: keep.path().join("etcd"),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            _keep: Some(keep),
        };
        etcd.resume();
        etcd
    }

    /// Starts it again on the same ports and data (after [`Etcd::stop`]).
    pub fn resume(&mut self) {
        let scheme = if self.extra.iter().any(|a| a == "--cert-file") {
            "https"
        } else {
            "http"
        };
        let client = format!("{scheme}://{}", self.endpoint);
        let peer = format!("http://{}", self.peer);
        let mut command = Command::new("etcd");
        command
            .args(["--name", "test", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start etcd ({e}): install it (`apt-get install etcd-server`, which `bash scripts/dev.sh setup` does)")
        });
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(&self.endpoint).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "etcd did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The etcd of the whole test binary. Started from a thread that lives as
/// long as the process and killed with it, so no etcd outlives a run.
fn shared_etcd() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let etcd = Etcd::start();
            tx.send(etcd.endpoint.clone()).unwrap();
            // Parked for good: the etcd goes when the test process does,
            // by the watchdog below.
            let pid = std::process::id();
            let etcd_pid = etcd.child.as_ref().map(Child::id).unwrap_or_default();
            let dir = etcd
                ._keep
                .as_ref()
                .map(|d| d.path().display().to_string())
                .unwrap_or_default();
            // A watchdog shell that kills etcd, and removes its data, once
            // this process is gone.
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!("while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 {etcd_pid}; rm -rf '{dir}'"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            std::mem::forget(etcd);
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap()
    })
}

/// A prefix no other test uses.
fn fresh_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("/t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Nodes of one cluster.
pub struct Cluster {
    /// The nodes, in the order they started.
    pub nodes: Vec<Server>,
    /// `etcd://…/PREFIX`.
    pub url: String,
    dir: tempfile::TempDir,
    started: usize,
}

impl Cluster {
    /// `n` nodes on the test binary's etcd, under a fresh prefix.
    pub fn start(n: usize) -> Self {
        Self::start_on(shared_etcd(), n, &[])
    }

    /// `n` nodes on the test binary's etcd, each with `args` too.
    pub fn start_with(n: usize, args: &[&str]) -> Self {
        Self::start_on(shared_etcd(), n, args)
    }

    /// No nodes yet, on the cluster at `url` (`etcd://…/PREFIX`).
    pub fn on_url(url: &str) -> Self {
        Self {
            nodes: Vec::new(),
            url: url.to_string(),
            dir: tempfile::tempdir().unwrap(),
            started: 0,
        }
    }

    /// `n` nodes on the etcd at `endpoint`, each with `args` too.
    pub fn start_on(endpoint: &str, n: usize, args: &[&str]) -> Self {
        let mut cluster = Self {
            nodes: Vec::new(),
            url: format!("etcd://{endpoint}{}", fresh_prefix()),
            dir: tempfile::tempdir().unwrap(),
            started: 0,
        };
        for _ in 0..n {
            let node = cluster.spawn(args, Some(OPERATOR_KEY));
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Starts one more node (not added to `nodes`) with `args`.
    pub fn spawn(&mut self, args: &[&str], operator: Option<&str>) -> Server {
        let id = format!("n{}", self.started);
        self.started += 1;
        self.spawn_as(&id, args, operator)
    }

    /// Starts node `id` with a data directory of its own.
    pub fn spawn_as(&self, id: &str, args: &[&str], operator: Option<&str>) -> Server {
        let mut all = vec!["--cluster", &self.url, "--node-id", id];
        all.extend_from_slice(args);
        Server::spawn_node(&self.data_of(id), &all, operator)
    }

    /// Where node `id` keeps its caches.
    pub fn data_of(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    /// The full etcd key of `{PREFIX}/v1/{path}`.
    pub fn key(&self, path: &str) -> String {
        let rest = self.url.strip_prefix("etcd://").unwrap();
        format!("{}/v1/{path}", &rest[rest.find('/').unwrap()..])
    }

    /// Runs `etcdctl` with `args` against the cluster's etcd; its output.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let rest = self.url.strip_prefix("etcd://").unwrap();
        let endpoint = &rest[..rest.find('/').unwrap()];
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl ({e}): apt-get install etcd-client"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys stored under `{PREFIX}/v1/{path}`.
    pub fn etcd_keys(&self, path: &str) -> Vec<String> {
        self.etcdctl(&["get", "--prefix", "--keys-only", &self.key(path)])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The value of `metric` summed over every node.
    pub fn sum(&self, metric: &str) -> f64 {
        self.nodes.iter().map(|n| n.metric(metric)).sum()
    }
}

/// Polls `check` until it gives `Some`, for up to 5 s (the bounded wait of
/// the cluster's tests); fails with `what` past it.
pub fn within_5s<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `stratus frontend` process in front of a cluster, killed on drop.
pub struct FrontendProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl FrontendProcess {
    /// Starts one for the cluster at `url` with `args`.
    pub fn start(url: &str, args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(crate::harness::stratus_bin())
            .args(["frontend", "--cluster", url, "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the frontend exited").unwrap();
            if let Some(url) = line.strip_prefix("stratus frontend listening on ") {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }

    /// `GET /readyz` lists `n` nodes.
    pub fn sees(&self, n: usize) -> bool {
        let reply = crate::harness::call_url("GET", &format!("{}/readyz", self.url), &[], b"");
        reply.status == 200 && reply.json()["nodes"].as_array().is_some_and(|nodes| nodes.len() == n)
    }
}

impl Drop for FrontendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
