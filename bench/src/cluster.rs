//! Cluster: what running on etcd costs and buys, each figure beside its
//! baseline from the same run — propagation of a deploy to the other nodes,
//! a new version's time to ready on the nodes that fetch its compiled code
//! against the compile on the first, registry writes and KV increments on
//! etcd against sled, and calls through a cluster node against the same
//! binary standalone.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;

use crate::server::{Server, percentile, provenance};

/// Options of the cluster benchmark.
#[derive(Debug, clap::Args)]
pub struct ClusterBench {
    /// Deploys whose propagation is timed.
    #[arg(long, default_value_t = 50)]
    deploys: usize,
    /// New components whose time to ready is timed on every node.
    #[arg(long, default_value_t = 5)]
    compiles: usize,
    /// Registry writes and KV increments timed on each store.
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// wrk rounds per variant (alternating), seconds each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

/// etcd on free loopback ports, killed on drop.
pub(crate) struct Etcd {
    child: Child,
    pub(crate) endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Etcd {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("127.0.0.1:{client}");
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("bench=http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start etcd ({e}): apt-get install etcd-server"))?;
        let started = Instant::now();
        while std::net::TcpStream::connect(&endpoint).is_err() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "etcd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            endpoint,
            _dir: dir,
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Polls `url` until it answers 200, as fast as it answers; the time it took.
fn until_ok(server: &Server, path: &str, auth: &str, since: Instant) -> anyhow::Result<Duration> {
    loop {
        if server.call(path, &[("authorization", auth)])? == 200 {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(since.elapsed() < Duration::from_secs(30), "{path} never answered 200");
    }
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// etcd and `n` nodes of a cluster on it; the cluster's URL.
pub(crate) fn start_cluster(stratus: &Path, n: usize) -> anyhow::Result<(Etcd, Vec<Server>, String)> {
    let etcd = Etcd::start()?;
    let url = format!("etcd://{}/bench", etcd.endpoint);
    let nodes = (0..n)
        .map(|i| Server::start(stratus, &["--cluster", &url, "--node-id", &format!("n{i}")]))
        .collect::<anyhow::Result<_>>()?;
    Ok((etcd, nodes, url))
}

impl ClusterBench {
    pub fn run(&self, stratus: &Path, hello: &Path, counter: &Path) -> anyhow::Result<String> {
        let (etcd, nodes, _) = start_cluster(stratus, 3)?;
        let standalone = Server::start(stratus, &[])?;
        let (a, others) = (&nodes[0], &nodes[1..]);
        let key = a.setup("acme", "hello", hello, json!({}))?;
        a.deploy(&key, "acme", "counter", counter, json!({}))?;
        let alone_key = standalone.setup("acme", "hello", hello, json!({}))?;
        standalone.deploy(&alone_key, "acme", "counter", counter, json!({}))?;
        let auth = format!("Bearer {key}");
        let alone_auth = format!("Bearer {alone_key}");
        for node in &nodes {
            until_ok(node, "/fn/acme/hello/", &auth, Instant::now())?;
        }

        // Propagation: the same component again, so nothing compiles and
        // only the registry moves.
        let blob = sha(&std::fs::read(hello)?);
        let mut propagation = Vec::new();
        for _ in 0..self.deploys {
            let deployed = a.admin(
                &key,
                "POST",
                "/accounts/acme/functions/hello/versions",
                Some(json!({ "blob": blob })),
            )?;
            let acknowledged = Instant::now();
            let version = deployed["version"].as_u64().unwrap_or_default();
            for node in others {
                propagation.push(until_ok(
                    node,
                    &format!("/fn/acme/hello:{version}/"),
                    &auth,
                    acknowledged,
                )?);
            }
        }
        let propagation = sorted(propagation);

        // Compile once: a new component (a custom section makes its SHA-256
        // new), compiled by A; B and C fetch it.
        let bytes = std::fs::read(hello)?;
        let compiles = || -> anyhow::Result<f64> {
            Ok(nodes
                .iter()
                .map(|n| n.metric("stratus_compiles_total"))
                .collect::<anyhow::Result<Vec<_>>>()?
                .iter()
                .sum())
        };
        let compiles_before = compiles()?;
        let (mut compile, mut fetched) = (Vec::new(), Vec::new());
        for round in 0..self.compiles {
            let fresh = crate::deploy::with_custom_section(
                &bytes,
                format!("cluster-{round}-{}", std::process::id()).as_bytes(),
            );
            let path = std::env::temp_dir().join(format!("stratus-bench-cluster-{round}.wasm"));
            std::fs::write(&path, &fresh)?;
            let started = Instant::now();
            a.deploy(&key, "acme", "fresh", &path, json!({}))?;
            compile.push(started.elapsed());
            let acknowledged = Instant::now();
            let version = round + 1;
            for node in others {
                fetched.push(until_ok(
                    node,
                    &format!("/fn/acme/fresh:{version}/"),
                    &auth,
                    acknowledged,
                )?);
            }
            let _ = std::fs::remove_file(&path);
        }
        let compiles_total = compiles()? - compiles_before;
        let (compile, fetched) = (sorted(compile), sorted(fetched));

        // Registry writes (an alias re-pointed) and KV increments (a call of
        // `counter`), on etcd and on sled.
        let write = |server: &Server, key: &str| -> anyhow::Result<Vec<Duration>> {
            let mut took = Vec::new();
            for i in 0..self.writes {
                let started = Instant::now();
                server.admin(
                    key,
                    "PUT",
                    "/accounts/acme/functions/hello/aliases/live",
                    Some(json!({ "version": 1 + (i % 2) })),
                )?;
                took.push(started.elapsed());
            }
            Ok(sorted(took))
        };
        standalone.deploy(&alone_key, "acme", "hello", hello, json!({}))?;
        let (etcd_writes, sled_writes) = (write(a, &key)?, write(&standalone, &alone_key)?);
        let increment = |server: &Server, auth: &str| -> anyhow::Result<Vec<Duration>> {
            let mut took = Vec::new();
            for _ in 0..self.writes {
                let started = Instant::now();
                anyhow::ensure!(server.call("/fn/acme/counter/", &[("authorization", auth)])? == 200);
                took.push(started.elapsed());
            }
            Ok(sorted(took))
        };
        let (etcd_kv, sled_kv) = (increment(a, &auth)?, increment(&standalone, &alone_auth)?);

        // Calls: the same binary, as a cluster node and standalone, rounds
        // alternating.
        let (mut cluster_rps, mut alone_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..=self.rounds {
            let on_cluster = self.wrk(&format!("{}/fn/acme/hello/", a.url), &auth)?;
            let on_alone = self.wrk(&format!("{}/fn/acme/hello/", standalone.url), &alone_auth)?;
            if round == 0 {
                continue; // warm-up
            }
            eprintln!(
                "round {round}: cluster {:.0} req/s p99 {:.2} ms, standalone {:.0} req/s p99 {:.2} ms",
                on_cluster.per_second, on_cluster.p99_ms, on_alone.per_second, on_alone.p99_ms
            );
            ratios.push(on_cluster.per_second / on_alone.per_second);
            cluster_rps.push(on_cluster);
            alone_rps.push(on_alone);
        }
        ratios.sort_by(f64::total_cmp);
        let median_ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
        let median_of = |trials: &[crate::throughput::Trial], f: fn(&crate::throughput::Trial) -> f64| {
            let mut v: Vec<f64> = trials.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        drop(nodes);
        drop(etcd);

        let mut out = String::new();
        out.push_str(&format!(
            "## cluster — {}\n\n`bash bench/run.sh cluster` (3 nodes and etcd {} on loopback, and one standalone server, all on this machine)\n\n",
            provenance(),
            etcd_version()
        ));
        out.push_str("| figure | p50 | p99 | baseline | ratio | goal |\n|---|---|---|---|---|---|\n");
        out.push_str(&format!(
            "| deploy `201` on A → first `200` of that version on B and C ({} deploys × 2 nodes) | {:.1} ms | {:.1} ms | — | — | p99 ≤ 100 ms |\n",
            self.deploys,
            percentile(&propagation, 0.5),
            percentile(&propagation, 0.99)
        ));
        out.push_str(&format!(
            "| new component: ready on B and C after A's `201` vs A's upload + compile ({} components) | {:.1} ms | {:.1} ms | {:.1} ms (p50 on A) | {:.3}× | ≤ 20 ms vs ≥ 200 ms |\n",
            self.compiles,
            percentile(&fetched, 0.5),
            percentile(&fetched, 0.99),
            percentile(&compile, 0.5),
            percentile(&fetched, 0.5) / percentile(&compile, 0.5)
        ));
        out.push_str(&format!(
            "| registry write (alias re-pointed), etcd vs sled ({} each) | {:.2} ms | {:.2} ms | {:.2} ms / {:.2} ms | {:.2}× (p50) | — |\n",
            self.writes,
            percentile(&etcd_writes, 0.5),
            percentile(&etcd_writes, 0.99),
            percentile(&sled_writes, 0.5),
            percentile(&sled_writes, 0.99),
            percentile(&etcd_writes, 0.5) / percentile(&sled_writes, 0.5)
        ));
        out.push_str(&format!(
            "| call that increments KV, etcd vs sled ({} each) | {:.2} ms | {:.2} ms | {:.2} ms / {:.2} ms | {:.2}× (p50) | — |\n",
            self.writes,
            percentile(&etcd_kv, 0.5),
            percentile(&etcd_kv, 0.99),
            percentile(&sled_kv, 0.5),
            percentile(&sled_kv, 0.99),
            percentile(&etcd_kv, 0.5) / percentile(&sled_kv, 0.5)
        ));
        out.push_str(&format!(
            "| `hello` through one cluster node vs standalone (wrk, {} c, {} × {} s) | {:.2} ms | {:.2} ms | {:.0} vs {:.0} req/s | {:.3}× (req/s) | ≥ 0.95× |\n",
            self.connections,
            self.rounds,
            self.duration,
            median_of(&cluster_rps, |t| t.p50_ms),
            median_of(&cluster_rps, |t| t.p99_ms),
            median_of(&cluster_rps, |t| t.per_second),
            median_of(&alone_rps, |t| t.per_second),
            median_ratio
        ));
        out.push_str(&format!(
            "\nCompiles over the three nodes (`stratus_compiles_total`) while the {} new components became ready on all three: {compiles_total}.\n",
            self.compiles
        ));
        Ok(out)
    }

    fn wrk(&self, url: &str, auth: &str) -> anyhow::Result<crate::throughput::Trial> {
        crate::throughput::wrk_run(2, self.connections, self.duration, url, auth)
    }
}

fn etcd_version() -> String {
    Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version: ").to_string())
        })
        .unwrap_or_default()
}
