//! Frontend: what the hop through `stratus frontend` costs, against calling
//! the node it picks directly; the warm-hit rate of a multi-tenant function
//! under the ring, against random placement over the same nodes; the cold
//! starts a reservation's removal causes, graceful against an immediate
//! rehash; and how long calls fail after a node is killed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, provenance};

/// Options of the frontend benchmark.
#[derive(Debug, clap::Args)]
pub struct FrontendBench {
    /// wrk rounds per variant (alternating), seconds each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Sub-tenants (partitions) of the warm-hit comparison.
    #[arg(long, default_value_t = 200)]
    sub_tenants: usize,
    /// Calls per sub-tenant after its first.
    #[arg(long, default_value_t = 5)]
    calls: usize,
    /// Partitions (and reserved environments) of the reduction comparison.
    #[arg(long, default_value_t = 32)]
    reduced: u32,
    /// Client threads of the failover measurement.
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

struct Frontend {
    child: Child,
    url: String,
}

impl Drop for Frontend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Frontend {
    fn start(stratus: &Path, cluster: &str, args: &[&str]) -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        let mut child = Command::new(stratus)
            .args(["frontend", "--cluster", cluster, "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().ok_or_else(|| anyhow::anyhow!("the frontend exited"))??;
            if let Some(url) = line.strip_prefix("stratus frontend listening on ") {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, url })
    }
}

fn sum(nodes: &[Server], metric: &str) -> anyhow::Result<f64> {
    nodes.iter().map(|n| n.metric(metric)).sum()
}

impl FrontendBench {
    pub fn run(&self, stratus: &Path, hello: &Path, counter: &Path) -> anyhow::Result<String> {
        let (etcd, nodes, url) = crate::cluster::start_cluster(stratus, 3)?;
        let key = nodes[0].setup("acme", "hello", hello, json!({}))?;
        nodes[0].deploy(
            &key,
            "acme",
            "counter",
            counter,
            json!({ "tenancy": "multi", "reuse": "warm" }),
        )?;
        let frontend = Frontend::start(stratus, &url, &[])?;
        let auth = format!("Bearer {key}");
        let agent = &nodes[0].agent;
        let started = Instant::now();
        // The node the frontend picks for hello, once it knows all three.
        let chosen = loop {
            let request = http::Request::get(format!("{}/fn/acme/hello/", frontend.url))
                .header("authorization", &auth)
                .body(())?;
            let response = agent.run(request)?;
            if let Some(node) = response.headers().get("x-stratus-node")
                && response.status() == 200
            {
                let node = node.to_str()?.to_string();
                let index: usize = node.trim_start_matches('n').parse()?;
                break index;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "the frontend never routed");
            std::thread::sleep(Duration::from_millis(50));
        };

        // The hop: one connection, so latency is not queueing.
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for round in 0..=self.rounds {
            let d = self.wrk(&format!("{}/fn/acme/hello/", nodes[chosen].url), &auth)?;
            let t = self.wrk(&format!("{}/fn/acme/hello/", frontend.url), &auth)?;
            if round > 0 {
                eprintln!(
                    "round {round}: direct p50 {:.3} ms p99 {:.3} ms, through the frontend p50 {:.3} ms p99 {:.3} ms",
                    d.p50_ms, d.p99_ms, t.p50_ms, t.p99_ms
                );
                direct.push(d);
                through.push(t);
            }
        }
        let median = |trials: &[crate::throughput::Trial], f: fn(&crate::throughput::Trial) -> f64| {
            let mut v: Vec<f64> = trials.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let added = |f: fn(&crate::throughput::Trial) -> f64| {
            let mut v: Vec<f64> = through.iter().zip(&direct).map(|(t, d)| f(t) - f(d)).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };

        // Warm hits: the same calls, placed by the ring or at random.
        let call = |base: &str, sub: &str| -> anyhow::Result<()> {
            let request = http::Request::post(format!("{base}/fn/acme/counter/"))
                .header("authorization", &auth)
                .header("x-stratus-sub-tenant", sub)
                .body(Vec::new())?;
            let mut response = agent.run(request)?;
            let _ = response.body_mut().read_to_vec()?;
            anyhow::ensure!(response.status() == 200, "counter answered {}", response.status());
            Ok(())
        };
        let rate = |place: &dyn Fn(usize, usize) -> String, prefix: &str| -> anyhow::Result<(f64, f64)> {
            for sub in 0..self.sub_tenants {
                call(&place(sub, 0), &format!("{prefix}{sub}"))?;
            }
            let (hits, colds) = (
                sum(&nodes, "stratus_warm_hits_total")?,
                sum(&nodes, "stratus_cold_starts_total")?,
            );
            for round in 1..=self.calls {
                for sub in 0..self.sub_tenants {
                    call(&place(sub, round), &format!("{prefix}{sub}"))?;
                }
            }
            let calls = (self.calls * self.sub_tenants) as f64;
            Ok((
                (sum(&nodes, "stratus_warm_hits_total")? - hits) / calls,
                (sum(&nodes, "stratus_cold_starts_total")? - colds) / calls,
            ))
        };
        let (ring_hits, ring_colds) = rate(&|_, _| frontend.url.clone(), "ring-")?;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let random = std::cell::RefCell::new(move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        });
        let (random_hits, random_colds) = rate(
            &|_, _| nodes[(random.borrow_mut())() as usize % nodes.len()].url.clone(),
            "random-",
        )?;
        // A reservation removed under steady load: cold starts of the next
        // 10 s, with each partition kept on its warm node, and rehashed at once.
        let rehashing = Frontend::start(stratus, &url, &["--rehash-at-once"])?;
        let immediate = self.reduction(&nodes, &key, counter, &rehashing.url, "rehashed")?;
        let graceful = self.reduction(&nodes, &key, counter, &frontend.url, "kept")?;
        drop(rehashing);

        // Failover: kill -9 one node under load through the frontend.
        let mut nodes = nodes;
        let (to_last_failure, failed, calls) = self.failover(&mut nodes, &key, &frontend.url)?;
        drop(frontend);
        drop(nodes);
        drop(etcd);

        let mut out = format!(
            "## frontend — {}\n\n`bash bench/run.sh frontend` (3 nodes, etcd and one frontend on loopback, all on this machine)\n\n",
            provenance()
        );
        out.push_str("| figure | result | baseline | goal |\n|---|---|---|---|\n");
        out.push_str(&format!(
            "| `hello`, one connection, through the frontend vs its node directly (wrk -c1, {} × {} s) | p50 {:.3} ms, p99 {:.3} ms | p50 {:.3} ms, p99 {:.3} ms | — |\n",
            self.rounds,
            self.duration,
            median(&through, |t| t.p50_ms),
            median(&through, |t| t.p99_ms),
            median(&direct, |t| t.p50_ms),
            median(&direct, |t| t.p99_ms)
        ));
        out.push_str(&format!(
            "| added by the hop (median over rounds of through − direct) | p50 +{:.0} µs, p99 +{:.0} µs | — | p50 ≤ 150 µs |\n",
            added(|t| t.p50_ms) * 1000.0,
            added(|t| t.p99_ms) * 1000.0
        ));
        out.push_str(&format!(
            "| warm hits of a `--reuse warm` multi-tenant function after each partition's first call ({} sub-tenants × {} calls) | ring {:.1} % ({:.1} % cold) | random placement {:.1} % ({:.1} % cold) | ≥ 99 % |\n",
            self.sub_tenants,
            self.calls,
            ring_hits * 100.0,
            ring_colds * 100.0,
            random_hits * 100.0,
            random_colds * 100.0
        ));
        out.push_str(&format!(
            "| cold starts in the 10 s after a reservation of {n} environments of a `--reuse warm` function is deleted, {n} partitions called steadily | graceful: {graceful} | immediate rehash (`--rehash-at-once`): {immediate} | graceful ≤ ¼ of immediate |\n",
            n = self.reduced
        ));
        out.push_str(&format!(
            "| failover: from kill -9 of one of 3 nodes to the last failed call ({} clients through the frontend) | {:.0} ms, {failed} of {calls} calls failed | the membership lease: 5000 ms | — |\n",
            self.clients,
            to_last_failure.as_secs_f64() * 1000.0
        ));
        Ok(out)
    }

    /// Reserves `reduced` environments of a new `--reuse warm` function,
    /// calls as many partitions steadily through `frontend`, deletes the
    /// reservation; the cold starts of the next 10 s.
    fn reduction(
        &self,
        nodes: &[Server],
        key: &str,
        counter: &Path,
        frontend: &str,
        function: &str,
    ) -> anyhow::Result<f64> {
        nodes[0].deploy(
            key,
            "acme",
            function,
            counter,
            json!({ "tenancy": "multi", "reuse": "warm" }),
        )?;
        let n = self.reduced;
        nodes[0].admin(
            key,
            "PUT",
            &format!("/accounts/acme/functions/{function}/reservations/latest"),
            Some(json!({ "min": n, "target": n })),
        )?;
        let started = Instant::now();
        while sum(nodes, "stratus_reserved_instances")? < f64::from(n) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "the reservation was never kept"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        let agent = nodes[0].agent.clone();
        std::thread::scope(|s| {
            let load = s.spawn(|| -> anyhow::Result<()> {
                for sub in (0..n).cycle() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let request = http::Request::post(format!("{frontend}/fn/acme/{function}/"))
                        .header("authorization", format!("Bearer {key}"))
                        .header("x-stratus-sub-tenant", format!("{function}-{sub}"))
                        .body(Vec::new())?;
                    let mut response = agent.run(request)?;
                    let _ = response.body_mut().read_to_vec()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            });
            std::thread::sleep(Duration::from_secs(3));
            let before = sum(nodes, "stratus_cold_starts_total")?;
            nodes[0].admin(
                key,
                "DELETE",
                &format!("/accounts/acme/functions/{function}/reservations/latest"),
                None,
            )?;
            std::thread::sleep(Duration::from_secs(10));
            let cold = sum(nodes, "stratus_cold_starts_total")? - before;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            load.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
            Ok(cold)
        })
    }

    /// Kills one node under load; the time from the kill to the last failed
    /// call, the failed calls and all calls.
    fn failover(&self, nodes: &mut [Server], key: &str, frontend: &str) -> anyhow::Result<(Duration, usize, usize)> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = AtomicBool::new(false);
        let calls = AtomicUsize::new(0);
        let failures = std::sync::Mutex::new(Vec::<Instant>::new());
        let agent = nodes[0].agent.clone();
        let killed_at = std::thread::scope(|s| -> anyhow::Result<Instant> {
            for t in 0..self.clients {
                let (stop, calls, failures, agent) = (&stop, &calls, &failures, &agent);
                s.spawn(move || {
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let request = http::Request::post(format!("{frontend}/fn/acme/counter/"))
                            .header("authorization", format!("Bearer {key}"))
                            .header("x-stratus-sub-tenant", format!("f{t}-{}", i % 50))
                            .body(Vec::new());
                        let ok = request
                            .ok()
                            .and_then(|r| agent.run(r).ok())
                            .is_some_and(|mut r| r.status() == 200 && r.body_mut().read_to_vec().is_ok());
                        calls.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            failures
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(Instant::now());
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_secs(3));
            let killed_at = Instant::now();
            nodes[2].kill()?;
            std::thread::sleep(Duration::from_secs(7));
            stop.store(true, Ordering::Relaxed);
            Ok(killed_at)
        })?;
        let failures = failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = failures
            .iter()
            .filter(|at| **at >= killed_at)
            .max()
            .map_or(Duration::ZERO, |at| at.duration_since(killed_at));
        Ok((last, failures.len(), calls.into_inner()))
    }

    fn wrk(&self, url: &str, auth: &str) -> anyhow::Result<crate::throughput::Trial> {
        crate::throughput::wrk_run(1, 1, self.duration, url, auth)
    }
}
