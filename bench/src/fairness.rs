//! Fairness: a quiet sub-tenant's latency while another sub-tenant floods far
//! past its concurrency cap, against the same quiet calls with no flood.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, percentile, provenance};

/// Options of the fairness benchmark.
#[derive(Debug, clap::Args)]
pub struct Fairness {
    /// Calls the quiet sub-tenant makes in each phase.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// Concurrent flooding clients.
    #[arg(long, default_value_t = 32)]
    flooders: usize,
    /// How long each flooding call spins, ms.
    #[arg(long, default_value_t = 50)]
    flood_ms: u64,
    /// The per-sub-tenant cap of the function.
    #[arg(long, default_value_t = 2)]
    cap: u32,
}

impl Fairness {
    pub fn run(&self, stratus: &Path, busy: &Path) -> anyhow::Result<String> {
        let server = Arc::new(Server::start(stratus, &[])?);
        let config = json!({ "tenancy": "multi", "max_concurrency_per_sub_tenant": self.cap });
        let key = server.setup("bench", "busy", busy, config)?;
        let auth = format!("Bearer {key}");

        let quiet = |label: &str| -> anyhow::Result<Vec<Duration>> {
            let mut samples = Vec::with_capacity(self.calls);
            for _ in 0..self.calls {
                let started = Instant::now();
                let status = server.call(
                    "/fn/bench/busy/?ms=1",
                    &[("authorization", &auth), ("x-stratus-sub-tenant", "quiet")],
                )?;
                anyhow::ensure!(status == 200, "{label}: a quiet call answered {status}");
                samples.push(started.elapsed());
            }
            samples.sort();
            Ok(samples)
        };

        // Warm the code cache and the path before measuring.
        quiet("warm-up")?;
        let baseline = quiet("baseline")?;

        let stop = Arc::new(AtomicBool::new(false));
        let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let flooders: Vec<_> = (0..self.flooders)
            .map(|_| {
                let (server, auth, stop) = (server.clone(), auth.clone(), stop.clone());
                let (ok, refused) = (ok.clone(), refused.clone());
                let path = format!("/fn/bench/busy/?ms={}", self.flood_ms);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.call(&path, &[("authorization", &auth), ("x-stratus-sub-tenant", "flood")]) {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(_) => refused.fetch_add(1, Ordering::Relaxed),
                            Err(_) => 0,
                        };
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let flooded = quiet("flooded");
        stop.store(true, Ordering::Relaxed);
        for flooder in flooders {
            let _ = flooder.join();
        }
        let flooded = flooded?;

        let row = |name: &str, s: &[Duration]| {
            format!(
                "| {name} | {:.2} | {:.2} | {:.2} |",
                percentile(s, 0.5),
                percentile(s, 0.99),
                percentile(s, 1.0)
            )
        };
        let ratio = |p: f64| percentile(&flooded, p) / percentile(&baseline, p);
        Ok(format!(
            "### fairness — {}\n\n`stratus-bench fairness --calls {} --flooders {} --flood-ms {} --cap {}`\n\n\
             | quiet sub-tenant, `busy?ms=1` | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n{}\n{}\n\n\
             ratio flooded/baseline: p50 {:.2}×, p99 {:.2}× · flood answered {} × 200 and {} × 429 (cap {})\n",
            provenance(),
            self.calls,
            self.flooders,
            self.flood_ms,
            self.cap,
            row("alone (baseline)", &baseline),
            row(&format!("beside a flood of {} clients", self.flooders), &flooded),
            ratio(0.5),
            ratio(0.99),
            ok.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            self.cap,
        ))
    }
}
