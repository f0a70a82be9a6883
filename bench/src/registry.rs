//! Registry: what finding the caller and the version costs per call, and
//! whether it grows with the registry.
//!
//! In process, on registries of different sizes (accounts, each with one
//! function and one ready version), the three steps the trigger takes before
//! it runs anything: take the snapshot, authenticate an account key (its
//! SHA-256, one map lookup), resolve `account/function` to its latest
//! version. The baseline is the SHA-256 of the key alone. Filling the
//! registry is timed too, and the writes of its last 100 accounts on their
//! own: a write re-reads only the account it touched, so its cost should not
//! grow with the registry (calls never do).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use sha2::Digest as _;
use stratus::bench::{Presented, Registry, Reuse, Snapshot, Tenancy, Tokens, VersionConfig, VersionState};
use stratus::names::{AccountName, FunctionName, Qualifier};

use crate::server::{median, ns_per_op, provenance};

/// Options of the registry benchmark.
#[derive(Debug, clap::Args)]
pub struct RegistryBench {
    /// Registry sizes to measure, in accounts (each with one function).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,30000")]
    accounts: Vec<usize>,
    /// Lookups in each timed batch.
    #[arg(long, default_value_t = 200_000)]
    iterations: usize,
    /// Timed batches per step, interleaved; the median is reported.
    #[arg(long, default_value_t = 5)]
    batches: usize,
}

/// Nanoseconds per operation for one registry size.
struct Row {
    accounts: usize,
    fill_s: f64,
    /// Milliseconds per write over the last accounts created.
    write_ms: f64,
    sha256: f64,
    snapshot: f64,
    authenticate: f64,
    resolve: f64,
    all: f64,
}

impl RegistryBench {
    /// Runs every size and formats the report.
    pub fn run(&self) -> anyhow::Result<String> {
        anyhow::ensure!(self.iterations > 0 && self.batches > 0, "nothing to time");
        let rows = self
            .accounts
            .iter()
            .map(|&n| self.measure(n.max(1)))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let mut out = format!(
            "### registry — {}\n\n`stratus-bench registry --accounts {} --iterations {} --batches {}`\n\n\
             In process, on a registry (sled in a temporary directory) holding N accounts with one function and \
             one ready version each, the steps a trigger call takes before it runs anything, timed on the last \
             account created; median of {} interleaved batches of {} (ns per call):\n\n\
             | N accounts | filled in s | ms per write (last 100 accounts) | SHA-256 of the key | snapshot | authenticate the key | resolve the version | all three | all three vs SHA-256 |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            provenance(),
            self.accounts.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
            self.iterations,
            self.batches,
            self.batches,
            self.iterations,
        );
        for row in &rows {
            out.push_str(&format!(
                "| {} | {:.1} | {:.3} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× |\n",
                row.accounts,
                row.fill_s,
                row.write_ms,
                row.sha256,
                row.snapshot,
                row.authenticate,
                row.resolve,
                row.all,
                row.all / row.sha256
            ));
        }
        // Writes are compared from 1,000 accounts up: at one account there
        // is no "last 100".
        if let (Some(small), Some(last)) = (rows.iter().find(|r| r.accounts >= 1000), rows.last()) {
            out.push_str(&format!(
                "\nms per write, {} accounts vs {}: {:.2}× (goal: at most 1.5×).\n",
                last.accounts,
                small.accounts,
                last.write_ms / small.write_ms
            ));
        }
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            out.push_str(&format!(
                "\nall three, {} accounts vs {}: {:.2}× · \"authenticate\" includes the key's SHA-256; \
                 \"snapshot\" is one `Arc` clone under a read lock.\n",
                last.accounts,
                first.accounts,
                last.all / first.all
            ));
        }
        Ok(out)
    }

    fn measure(&self, accounts: usize) -> anyhow::Result<Row> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let dir = tempfile::tempdir()?;
        let registry = Arc::new(runtime.block_on(Registry::open(dir.path()))?);
        let keys = runtime.block_on(Tokens::load_or_create(&registry, "stratus"))?;
        let function = FunctionName::parse("hello")?;
        let config = VersionConfig {
            public: false,
            tenancy: Tenancy::Single,
            reuse: Reuse::SingleUse,
            timeout_ms: 10_000,
            memory_mb: 128,
            env: Default::default(),
            allow_outbound: Vec::new(),
            max_concurrency_per_sub_tenant: None,
        };
        let sha = "0".repeat(64);
        let filling = Instant::now();
        let timed_from = accounts.saturating_sub(100);
        let mut last_writes = None;
        let (account, key) = runtime.block_on(async {
            let mut last = None;
            for i in 0..accounts {
                if i == timed_from {
                    last_writes = Some(Instant::now());
                }
                let account = AccountName::parse(&format!("account-{i}"))?;
                let (_, key) = registry.create_account(&account).await?;
                let version = registry
                    .create_version(&account, &function, &sha, 1, config.clone(), BOUNDS)
                    .await?;
                registry
                    .finish_version(&account, &function, version.number, VersionState::Ready, Some(1))
                    .await?;
                last = Some((account, key.secret.expose().to_string()));
            }
            last.ok_or_else(|| anyhow::anyhow!("no account"))
        })?;
        let fill_s = filling.elapsed().as_secs_f64();
        // Three writes per account: the account, its version, its compile.
        let timed_writes = (3 * (accounts - timed_from)) as f64;
        let write_ms = last_writes.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0 / timed_writes);

        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {key}").parse()?);
        let operator = [0u8; 32];
        let snapshot = registry.snapshot();
        // Check once that the path timed is the one a call takes.
        anyhow::ensure!(
            matches!(
                stratus::bench::authenticate(&headers, &snapshot, &operator, &keys, |_| None)?,
                Presented::Stratus { .. }
            ),
            "the key did not authenticate"
        );
        snapshot
            .resolve(&account, &function, &Qualifier::Latest, None)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;

        let n = self.iterations;
        let timed = |op: &mut dyn FnMut() -> anyhow::Result<()>| ns_per_op(n, op);
        let mut sha256 = || {
            black_box(sha2::Sha256::digest(black_box(key.as_bytes())));
            Ok(())
        };
        let mut take = || {
            black_box(registry.snapshot());
            Ok(())
        };
        let authenticate_on = |snapshot: &Snapshot| -> anyhow::Result<()> {
            let presented = stratus::bench::authenticate(black_box(&headers), snapshot, &operator, &keys, |_| None)?;
            black_box(presented);
            Ok(())
        };
        let resolve_on = |snapshot: &Snapshot| -> anyhow::Result<()> {
            let resolved = snapshot.resolve(black_box(&account), &function, &Qualifier::Latest, None);
            black_box(resolved.is_ok());
            Ok(())
        };
        let mut authenticate = || authenticate_on(&snapshot);
        let mut resolve = || resolve_on(&snapshot);
        // What a call does: its own snapshot, then both steps on it.
        let mut all = || {
            let snapshot = registry.snapshot();
            authenticate_on(&snapshot)?;
            resolve_on(&snapshot)
        };
        let mut figures: [Vec<f64>; 5] = Default::default();
        for batch in 0..=self.batches {
            let run = [
                timed(&mut sha256)?,
                timed(&mut take)?,
                timed(&mut authenticate)?,
                timed(&mut resolve)?,
                timed(&mut all)?,
            ];
            // The first round only warms up.
            if batch > 0 {
                for (column, value) in figures.iter_mut().zip(run) {
                    column.push(value);
                }
            }
        }
        let [sha256, snapshot, authenticate, resolve, all] = figures.map(median);
        Ok(Row {
            accounts,
            fill_s,
            write_ms,
            sha256,
            snapshot,
            authenticate,
            resolve,
            all,
        })
    }
}

/// The host's default bounds on a version's configuration.
const BOUNDS: stratus::bench::VersionBounds = stratus::bench::VersionBounds {
    max_timeout_ms: 15 * 60 * 1000,
    max_memory_mb: 256,
};
