//! Fairness: a quiet sub-tenant's latency while a flood of long calls comes
//! from another sub-tenant of its account, or from another account, against
//! the same quiet calls with no flood. Rounds take turns; medians of rounds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, median, percentile, provenance};

/// Options of the fairness benchmark.
#[derive(Debug, clap::Args)]
pub struct Fairness {
    /// Calls the quiet sub-tenant makes in each phase of a round.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// Concurrent flooding clients.
    #[arg(long, default_value_t = 32)]
    flooders: usize,
    /// How long each flooding call spins, ms.
    #[arg(long, default_value_t = 50)]
    flood_ms: u64,
    /// A per-sub-tenant cap for the flooded functions (default: the host's
    /// default caps).
    #[arg(long)]
    cap: Option<u32>,
    /// Rounds of (alone, beside a sub-tenant's flood, beside an account's).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Where a flood comes from.
#[derive(Clone, Copy)]
enum Flood {
    /// Another sub-tenant of the quiet one's account, same function.
    SubTenant,
    /// Another account, its own function.
    Account,
}

/// Latency percentiles of one phase, ms.
#[derive(Clone, Copy)]
struct Phase {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Fairness {
    pub fn run(&self, stratus: &Path, busy: &Path) -> anyhow::Result<String> {
        let server = Arc::new(Server::start(stratus, &[])?);
        let mut config = json!({ "tenancy": "multi" });
        if let Some(cap) = self.cap {
            config["max_concurrency_per_sub_tenant"] = json!(cap);
        }
        let quiet_key = server.setup("quiet", "busy", busy, config.clone())?;
        let noisy_key = server.setup("noisy", "busy", busy, config)?;

        // Warm the code cache and the path before measuring.
        self.quiet(&server, &quiet_key, "warm-up")?;
        let mut alone = Vec::new();
        let mut beside_sub = Vec::new();
        let mut beside_account = Vec::new();
        let mut answered = [(0, 0); 2];
        for _ in 0..self.rounds {
            alone.push(self.quiet(&server, &quiet_key, "alone")?);
            for (flood, phases, key) in [
                (Flood::SubTenant, &mut beside_sub, &quiet_key),
                (Flood::Account, &mut beside_account, &noisy_key),
            ] {
                let (phase, ok, refused) = self.flooded(&server, &quiet_key, key, flood)?;
                phases.push(phase);
                let slot = &mut answered[flood as usize];
                *slot = (slot.0 + ok, slot.1 + refused);
            }
        }

        let summary = |phases: &[Phase]| Phase {
            p50: median(phases.iter().map(|p| p.p50).collect()),
            p99: median(phases.iter().map(|p| p.p99).collect()),
            max: median(phases.iter().map(|p| p.max).collect()),
        };
        let by_round = |phases: &[Phase]| {
            phases
                .iter()
                .map(|p| format!("{:.2}/{:.2}", p.p50, p.p99))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (base, sub, account) = (summary(&alone), summary(&beside_sub), summary(&beside_account));
        let row = |name: &str, p: Phase, rounds: &[Phase]| {
            format!(
                "| {name} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2}× | {} |",
                p.p50,
                p.p99,
                p.max,
                p.p50 / base.p50,
                p.p99 / base.p99,
                by_round(rounds)
            )
        };
        let caps = match self.cap {
            Some(cap) => format!("--cap {cap}"),
            None => "the default caps".to_string(),
        };
        Ok(format!(
            "### fairness — {}\n\n`stratus-bench fairness --calls {} --flooders {} --flood-ms {} --rounds {}{}`\n\n\
             A quiet sub-tenant calls `busy?ms=1`, one call at a time; the flood is {} clients on `busy?ms={}`, \
             {caps}. Medians of {} rounds, the phases taking turns in each.\n\n\
             | quiet sub-tenant | p50 ms | p99 ms | max ms | p50 ÷ alone | p99 ÷ alone | p50/p99 by round |\n\
             |---|---|---|---|---|---|---|\n{}\n{}\n{}\n\n\
             Goals: p50 ≤ 2×, p99 ≤ 3× alone. Flood answered: from a sub-tenant {} × 200 and {} refused, \
             from an account {} × 200 and {} refused.\n",
            provenance(),
            self.calls,
            self.flooders,
            self.flood_ms,
            self.rounds,
            self.cap.map(|cap| format!(" --cap {cap}")).unwrap_or_default(),
            self.flooders,
            self.flood_ms,
            self.rounds,
            row("alone (baseline)", base, &alone),
            row("beside another sub-tenant's flood", sub, &beside_sub),
            row("beside another account's flood", account, &beside_account),
            answered[0].0,
            answered[0].1,
            answered[1].0,
            answered[1].1,
        ))
    }

    /// The quiet sub-tenant's calls, one at a time.
    fn quiet(&self, server: &Server, key: &str, label: &str) -> anyhow::Result<Phase> {
        let auth = format!("Bearer {key}");
        let mut samples = Vec::with_capacity(self.calls);
        for _ in 0..self.calls {
            let started = Instant::now();
            let status = server.call(
                "/fn/quiet/busy/?ms=1",
                &[("authorization", &auth), ("x-stratus-sub-tenant", "quiet")],
            )?;
            anyhow::ensure!(status == 200, "{label}: a quiet call answered {status}");
            samples.push(started.elapsed());
        }
        samples.sort();
        Ok(Phase {
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            max: percentile(&samples, 1.0),
        })
    }

    /// The quiet calls beside a flood; with what the flood was answered.
    fn flooded(
        &self,
        server: &Arc<Server>,
        quiet_key: &str,
        flood_key: &str,
        flood: Flood,
    ) -> anyhow::Result<(Phase, u64, u64)> {
        let account = match flood {
            Flood::SubTenant => "quiet",
            Flood::Account => "noisy",
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let flooders: Vec<_> = (0..self.flooders)
            .map(|_| {
                let (server, stop) = (server.clone(), stop.clone());
                let auth = format!("Bearer {flood_key}");
                let (ok, refused) = (ok.clone(), refused.clone());
                let path = format!("/fn/{account}/busy/?ms={}", self.flood_ms);
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
        let phase = self.quiet(server, quiet_key, "flooded");
        stop.store(true, Ordering::Relaxed);
        for flooder in flooders {
            let _ = flooder.join();
        }
        Ok((phase?, ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed)))
    }
}
