//! Tokens: what per-invocation credentials cost.
//!
//! In process, signing and verifying one EdDSA invocation token, against the
//! two things the hot path does per call instead: the SHA-256 an account-key
//! lookup costs, and the cache hit a sub-tenant token costs after its first
//! verification. End to end, a function that reads its claims but never asks
//! for a token, against the smallest function and against the same function
//! asking for one token or two; the host's mint counter shows the first signs
//! nothing.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;
use stratus::bench::{Invocation, Registry, Tokens as SigningKeys};
use stratus::names::{AccountName, SubTenantId};

use crate::server::{Server, median, ns_per_op, percentile, provenance};

/// Options of the tokens benchmark.
#[derive(Debug, clap::Args)]
pub struct Tokens {
    /// Operations in each in-process batch.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// In-process batches of each operation, interleaved; the median is
    /// reported (one more runs first, untimed, as a warm-up).
    #[arg(long, default_value_t = 5)]
    batches: usize,
    /// Timed sequential calls of each kind, end to end.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// Untimed calls of each kind first, to compile and warm every path.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Calls of one kind before switching to the next: the kinds take turns,
    /// so the machine's drift over the run falls on all of them alike.
    #[arg(long, default_value_t = 20)]
    round: usize,
}

/// Median time per operation, in nanoseconds, of each operation's batches.
struct InProcess {
    token_bytes: usize,
    sha256: f64,
    cached: f64,
    sign: f64,
    verify: f64,
}

/// The end-to-end calls, and the mint counter around all the timed ones.
struct EndToEnd {
    kinds: Vec<Kind>,
    minted_before: f64,
    minted_after: f64,
}

/// One kind of end-to-end call.
struct Kind {
    label: &'static str,
    path: &'static str,
    samples: Vec<Duration>,
    /// How far `stratus_tokens_minted_total` moved during this kind's timed
    /// calls (read before and after each of its rounds).
    minted: f64,
}

const MINTED: &str = "stratus_tokens_minted_total";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Tokens {
    pub fn run(&self, stratus: &Path, hello: &Path, whoami: &Path) -> anyhow::Result<String> {
        anyhow::ensure!(self.iterations > 0 && self.batches > 0, "nothing to time");
        anyhow::ensure!(self.calls > 0 && self.round > 0, "nothing to call");
        let in_process = self.in_process()?;
        let end_to_end = self.end_to_end(stratus, hello, whoami)?;
        Ok(self.report(&in_process, &end_to_end))
    }

    /// Signs and verifies with the host's own key store, on a database in a
    /// temporary directory, exactly as the runtime does for a guest.
    fn in_process(&self) -> anyhow::Result<InProcess> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let dir = tempfile::tempdir()?;
        let registry = Arc::new(runtime.block_on(Registry::open(dir.path()))?);
        let keys = runtime.block_on(SigningKeys::load_or_create(&registry, "stratus"))?;

        let invocation = Invocation {
            id: "4f1c2a9e8b7d6c5a4f1c2a9e8b7d6c5a".into(),
            owner: "acme".into(),
            caller: "acme".into(),
            sub_tenant: Some("bob".into()),
            function: "whoami".into(),
            version: 1,
            alias: None,
            scopes: vec!["invoke".into(), "kv:rw".into()],
            // Long enough to outlive the timing: verification allows no leeway.
            expires_at: unix_now() + 600,
        };
        // The first signature writes the key's lease to the database; the
        // ones after it, within the lease, only sign.
        let token = runtime.block_on(keys.mint_invocation(&invocation, None))?;
        keys.verify_invocation(&token)?;
        let (sub_tenant, _) = runtime.block_on(keys.issue_sub_tenant(
            &AccountName::parse("acme")?,
            "5f0c2a9d3e7b41c8a6d2e9f1b3c5a7d9",
            &SubTenantId::parse("bob")?,
            "k1",
            3600,
        ))?;
        keys.verify_sub_tenant(&sub_tenant)?;

        let n = self.iterations;
        let timed = |op: &mut dyn FnMut() -> anyhow::Result<()>| ns_per_op(n, op);
        let mut sha256 = || {
            black_box(sha2::Sha256::digest(black_box(token.as_str()).as_bytes()));
            Ok(())
        };
        let mut cached = || {
            black_box(keys.verify_sub_tenant(black_box(&sub_tenant))?);
            Ok(())
        };
        let mut verify = || {
            black_box(keys.verify_invocation(black_box(&token))?);
            Ok(())
        };
        let sign = || -> anyhow::Result<f64> {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..n {
                    black_box(keys.mint_invocation(black_box(&invocation), None).await?);
                }
                Ok(started.elapsed().as_nanos() as f64 / n as f64)
            })
        };

        let (mut sha256s, mut cacheds, mut signs, mut verifies) = (vec![], vec![], vec![], vec![]);
        for batch in 0..=self.batches {
            let figures = [timed(&mut sha256)?, timed(&mut cached)?, sign()?, timed(&mut verify)?];
            if batch > 0 {
                sha256s.push(figures[0]);
                cacheds.push(figures[1]);
                signs.push(figures[2]);
                verifies.push(figures[3]);
            }
        }
        drop(keys);
        drop(registry);
        Ok(InProcess {
            token_bytes: token.len(),
            sha256: median(sha256s),
            cached: median(cacheds),
            sign: median(signs),
            verify: median(verifies),
        })
    }

    /// Sequential calls of each kind through a real server, taking turns.
    fn end_to_end(&self, stratus: &Path, hello: &Path, whoami: &Path) -> anyhow::Result<EndToEnd> {
        let server = Server::start(stratus, &[])?;
        let key = server.create_account("acme")?;
        server.deploy(&key, "acme", "hello", hello, json!({}))?;
        server.deploy(&key, "acme", "whoami", whoami, json!({}))?;
        let auth = format!("Bearer {key}");

        let mut kinds: Vec<Kind> = [
            ("hello (baseline)", "/fn/acme/hello/"),
            ("whoami, no token", "/fn/acme/whoami/"),
            ("whoami `?token=1`", "/fn/acme/whoami/?token=1"),
            (
                "whoami `?token=1&aud=…`",
                "/fn/acme/whoami/?token=1&aud=https%3A%2F%2Fx.example",
            ),
        ]
        .into_iter()
        .map(|(label, path)| Kind {
            label,
            path,
            samples: Vec::with_capacity(self.calls),
            minted: 0.0,
        })
        .collect();

        let call = |kind: &Kind| -> anyhow::Result<Duration> {
            let started = Instant::now();
            let status = server.call(kind.path, &[("authorization", &auth)])?;
            let elapsed = started.elapsed();
            anyhow::ensure!(status == 200, "{}: answered {status}", kind.path);
            Ok(elapsed)
        };
        for kind in &kinds {
            for _ in 0..self.warmup {
                call(kind)?;
            }
        }
        let minted_before = server.metric(MINTED)?;
        while kinds[0].samples.len() < self.calls {
            for kind in &mut kinds {
                let before = server.metric(MINTED)?;
                for _ in 0..self.round.min(self.calls - kind.samples.len()) {
                    let elapsed = call(kind)?;
                    kind.samples.push(elapsed);
                }
                kind.minted += server.metric(MINTED)? - before;
            }
        }
        let minted_after = server.metric(MINTED)?;
        for kind in &mut kinds {
            kind.samples.sort();
        }
        Ok(EndToEnd {
            kinds,
            minted_before,
            minted_after,
        })
    }

    fn report(&self, p: &InProcess, e: &EndToEnd) -> String {
        let kinds = &e.kinds;
        let us = |ns: f64| ns / 1000.0;
        let in_process = format!(
            "| per token | µs/op | ratio |\n|---|---|---|\n\
             | SHA-256 of the token (what an account-key lookup costs) | {:.3} | 1 |\n\
             | sub-tenant token, already verified (cache hit) | {:.3} | {:.1}× SHA-256 |\n\
             | sign an invocation token (EdDSA) | {:.2} | {:.0}× SHA-256 |\n\
             | verify an invocation token (EdDSA) | {:.2} | {:.0}× SHA-256, {:.0}× cached verify |",
            us(p.sha256),
            us(p.cached),
            p.cached / p.sha256,
            us(p.sign),
            p.sign / p.sha256,
            us(p.verify),
            p.verify / p.sha256,
            p.verify / p.cached,
        );

        let (hello, plain) = (&kinds[0].samples, &kinds[1].samples);
        let ratio = |s: &[Duration], base: &[Duration], q: f64| percentile(s, q) / percentile(base, q);
        let rows: Vec<String> = kinds
            .iter()
            .map(|kind| {
                let s = &kind.samples;
                format!(
                    "| {} | {:.3} | {:.3} | {:.2}× / {:.2}× | {:.2}× / {:.2}× | {:+.0} | {} |",
                    kind.label,
                    percentile(s, 0.5),
                    percentile(s, 0.99),
                    ratio(s, hello, 0.5),
                    ratio(s, plain, 0.5),
                    ratio(s, hello, 0.99),
                    ratio(s, plain, 0.99),
                    (percentile(s, 0.5) - percentile(plain, 0.5)) * 1000.0,
                    kind.minted,
                )
            })
            .collect();

        format!(
            "### tokens — {}\n\n\
             `stratus-bench tokens --iterations {} --batches {} --calls {} --warmup {} --round {}`\n\n\
             In process, median of {} interleaved batches of {} (an invocation token is {} bytes):\n\n{}\n\n\
             ratios: sign/sha256 {:.0}×, verify/sha256 {:.0}×, verify/cached-verify {:.0}×\n\n\
             End to end, {} sequential calls of each kind after {} to warm up, taking turns in rounds of {}:\n\n\
             | call | p50 ms | p99 ms | p50 vs hello / whoami | p99 vs hello / whoami | p50 − whoami µs | tokens minted |\n\
             |---|---|---|---|---|---|---|\n{}\n\n\
             In process one signature takes {:.0} µs; the p50 − whoami column is what one token and two cost end \
             to end, the signature, the host call and the longer answer together.\n\n\
             `{MINTED}` read before and after every round: it moved by {} over the {} whoami calls that asked \
             for no token (at {} when the timed calls began, {} when they ended).\n",
            provenance(),
            self.iterations,
            self.batches,
            self.calls,
            self.warmup,
            self.round,
            self.batches,
            self.iterations,
            p.token_bytes,
            in_process,
            p.sign / p.sha256,
            p.verify / p.sha256,
            p.verify / p.cached,
            self.calls,
            self.warmup,
            self.round,
            rows.join("\n"),
            us(p.sign),
            kinds[1].minted,
            self.calls,
            e.minted_before,
            e.minted_after,
        )
    }
}
