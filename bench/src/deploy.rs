//! Deploy: what callers see while a new version of the function they call is
//! uploaded and compiled, against the same load a moment before.
//!
//! A deploy must cost callers nothing but CPU: no call fails, every call is
//! answered by the old version until the new one is compiled, and none by the
//! old one once the deploy is acknowledged. The `heavy` example is built
//! unoptimised so its compile takes the host long enough (a second or more)
//! for calls to land inside it. Each deploy is the same code under another
//! SHA-256 — a custom section appended to the component — so the host compiles
//! it afresh instead of finding it in its cache, and the figures do not hang on
//! one sample: several deploys, with load between them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;

use crate::server::{Server, percentile, provenance};

/// Options of the deploy benchmark.
#[derive(Debug, clap::Args)]
pub struct Deploy {
    /// Concurrent clients calling the function in a loop.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Untimed load first, to warm the instances and connections, ms.
    #[arg(long, default_value_t = 1_000)]
    warmup_ms: u64,
    /// The baseline: load with no deploy, ms.
    #[arg(long, default_value_t = 3_000)]
    before_ms: u64,
    /// New versions deployed one after another under the same load.
    #[arg(long, default_value_t = 3)]
    deploys: usize,
    /// Load with no deploy after each one, before the next, ms.
    #[arg(long, default_value_t = 1_000)]
    pause_ms: u64,
}

/// One call as a client saw it.
struct Call {
    sent: Instant,
    answered: Instant,
    /// 0 when the request failed before any answer.
    status: u16,
    /// `x-stratus-version` of the answer; 0 when it had none.
    version: u64,
}

impl Call {
    fn latency(&self) -> Duration {
        self.answered - self.sent
    }

    fn failed(&self) -> bool {
        self.status != 200 || self.version == 0
    }
}

/// One deploy: from the start of the upload to the `201`.
struct Window {
    started: Instant,
    acknowledged: Instant,
    version: u64,
    compile_ms: u64,
}

impl Window {
    fn holds(&self, call: &Call) -> bool {
        call.sent >= self.started && call.answered <= self.acknowledged
    }

    fn overlaps(&self, call: &Call) -> bool {
        call.sent < self.acknowledged && call.answered > self.started
    }

    fn length(&self) -> Duration {
        self.acknowledged - self.started
    }
}

/// Calls, throughput and latency of one slice of the run.
struct Figures {
    calls: usize,
    per_second: f64,
    sorted: Vec<Duration>,
}

impl Figures {
    fn of<'a>(calls: impl Iterator<Item = &'a Call>, length: Duration) -> Self {
        let mut sorted: Vec<Duration> = calls.map(Call::latency).collect();
        sorted.sort();
        Self {
            calls: sorted.len(),
            per_second: sorted.len() as f64 / length.as_secs_f64(),
            sorted,
        }
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.sorted, q)
    }

    fn cells(&self) -> String {
        format!(
            "{} | {:.1} | {:.2} | {:.2} | {:.2}",
            self.calls,
            self.per_second,
            self.p(0.5),
            self.p(0.99),
            self.p(1.0)
        )
    }
}

/// `component` with a custom section named `stratus-bench` carrying
/// `payload` appended: the same code under another SHA-256 (a custom section
/// is valid at the end of a component as of a core module).
pub fn with_custom_section(component: &[u8], payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Section as _;
    let mut out = component.to_vec();
    wasm_encoder::CustomSection {
        name: "stratus-bench".into(),
        data: payload.into(),
    }
    .append_to(&mut out);
    out
}

impl Deploy {
    pub fn run(&self, stratus: &Path, heavy: &Path) -> anyhow::Result<String> {
        anyhow::ensure!(self.clients > 0 && self.before_ms > 0, "nothing to call");
        anyhow::ensure!(self.deploys > 0, "nothing to deploy");
        let component = std::fs::read(heavy).map_err(|e| anyhow::anyhow!("{}: {e}", heavy.display()))?;
        let server = Server::start(stratus, &[])?;
        let key = server.create_account("acme")?;
        let first = Instant::now();
        server.deploy(&key, "acme", "heavy", heavy, json!({}))?;
        let first_deploy = first.elapsed();
        let auth = format!("Bearer {key}");
        let url = format!("{}/fn/acme/heavy/", server.url);

        let stop = AtomicBool::new(false);
        let (clients, before, windows) = std::thread::scope(|scope| -> anyhow::Result<_> {
            let clients: Vec<_> = (0..self.clients)
                .map(|_| scope.spawn(|| client(&url, &auth, &stop)))
                .collect();
            let load = || -> anyhow::Result<_> {
                std::thread::sleep(Duration::from_millis(self.warmup_ms));
                let before = (Instant::now(), Instant::now() + Duration::from_millis(self.before_ms));
                std::thread::sleep(Duration::from_millis(self.before_ms));
                let mut windows = Vec::with_capacity(self.deploys);
                for n in 0..self.deploys {
                    let payload = format!("deploy {n} of {}, process {}", self.deploys, std::process::id());
                    windows.push(self.deploy_once(
                        &server,
                        &key,
                        &with_custom_section(&component, payload.as_bytes()),
                    )?);
                    std::thread::sleep(Duration::from_millis(self.pause_ms));
                }
                Ok((before, windows))
            };
            let loaded = load();
            stop.store(true, Ordering::Relaxed);
            let clients: Vec<Vec<Call>> = clients
                .into_iter()
                .map(|c| c.join().map_err(|_| anyhow::anyhow!("a client panicked")))
                .collect::<anyhow::Result<_>>()?;
            let (before, windows) = loaded?;
            Ok((clients, before, windows))
        })?;
        Ok(self.report(component.len(), first_deploy, &clients, before, &windows))
    }

    /// Uploads `bytes` and makes them the next version, waiting for the
    /// compile; the window runs from the start of the upload to the `201`.
    fn deploy_once(&self, server: &Server, key: &str, bytes: &[u8]) -> anyhow::Result<Window> {
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        let started = Instant::now();
        let request = http::Request::builder()
            .method("PUT")
            .uri(format!("{}/admin/v1/accounts/acme/blobs/{sha}", server.url))
            .header("authorization", format!("Bearer {key}"))
            .body(bytes.to_vec())?;
        let response = server.agent.run(request)?;
        anyhow::ensure!(response.status().is_success(), "upload failed: {}", response.status());
        let request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "{}/admin/v1/accounts/acme/functions/heavy/versions",
                server.url
            ))
            .header("authorization", format!("Bearer {key}"))
            .body(json!({ "blob": sha }).to_string())?;
        let mut response = server.agent.run(request)?;
        let acknowledged = Instant::now();
        let text = response.body_mut().read_to_string()?;
        anyhow::ensure!(
            response.status() == 201,
            "deploy answered {}: {text}",
            response.status()
        );
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        let field = |name: &str| {
            answer[name]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("deploy answered without {name}: {text}"))
        };
        Ok(Window {
            started,
            acknowledged,
            version: field("version")?,
            compile_ms: field("compile_ms")?,
        })
    }

    fn report(
        &self,
        component_bytes: usize,
        first_deploy: Duration,
        clients: &[Vec<Call>],
        before: (Instant, Instant),
        windows: &[Window],
    ) -> String {
        let all = || clients.iter().flatten();
        let before = Figures::of(
            all().filter(|c| c.sent >= before.0 && c.answered <= before.1),
            before.1 - before.0,
        );
        let inside = |c: &&Call| windows.iter().any(|w| w.holds(c));
        let during = Figures::of(all().filter(inside), windows.iter().map(Window::length).sum());
        // After each acknowledgement until the next deploy begins (or the end).
        let ends: Vec<Option<Instant>> = windows.iter().skip(1).map(|w| Some(w.started)).chain([None]).collect();
        let after_windows: Vec<(Instant, Option<Instant>)> = windows
            .iter()
            .zip(&ends)
            .map(|(w, end)| (w.acknowledged, *end))
            .collect();
        let last_answer = all().map(|c| c.answered).max().unwrap_or_else(Instant::now);
        let after_length: Duration = after_windows
            .iter()
            .map(|(from, to)| to.unwrap_or(last_answer).saturating_duration_since(*from))
            .sum();
        let after = Figures::of(
            all().filter(|c| {
                after_windows
                    .iter()
                    .any(|(from, to)| c.sent >= *from && to.is_none_or(|to| c.answered <= to))
            }),
            after_length,
        );

        let total = all().count();
        let failed = all().filter(|c| c.failed()).count();
        let statuses = {
            let mut statuses: Vec<(u16, usize)> = Vec::new();
            for call in all().filter(|c| c.failed()) {
                match statuses.iter_mut().find(|(s, _)| *s == call.status) {
                    Some((_, n)) => *n += 1,
                    None => statuses.push((call.status, 1)),
                }
            }
            statuses
                .iter()
                .map(|(status, n)| format!("{n} × {status}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Per client, in send order, among the answered calls.
        let went_back: usize = clients
            .iter()
            .map(|calls| {
                let versions: Vec<u64> = calls.iter().filter(|c| !c.failed()).map(|c| c.version).collect();
                versions.windows(2).filter(|pair| pair[1] < pair[0]).count()
            })
            .sum();
        // The newest version acknowledged before a call was sent is the
        // oldest that may answer it.
        let stale = all()
            .filter(|c| !c.failed())
            .filter(|c| {
                let floor = windows
                    .iter()
                    .filter(|w| w.acknowledged < c.sent)
                    .map(|w| w.version)
                    .max();
                floor.is_some_and(|floor| c.version < floor)
            })
            .count();
        // And no call answered before a deploy began may be on its version.
        let early = all()
            .filter(|c| !c.failed())
            .filter(|c| windows.iter().any(|w| c.answered < w.started && c.version >= w.version))
            .count();
        let inside_old = all()
            .filter(inside)
            .filter(|c| windows.iter().any(|w| w.holds(c) && c.version < w.version))
            .count();
        // The new version is ready just before the `201` is written, so a call
        // may be answered by it a moment before the deployer hears back.
        let ahead_of_201 = all()
            .filter_map(|c| {
                windows
                    .iter()
                    .find(|w| w.holds(c) && c.version >= w.version)
                    .map(|w| (c, w))
            })
            .map(|(c, w)| w.acknowledged - c.answered)
            .max();
        let overlapping_max = all()
            .filter(|c| windows.iter().any(|w| w.overlaps(c)))
            .map(Call::latency)
            .max()
            .unwrap_or_default();

        let deploy_rows: Vec<String> = windows
            .iter()
            .map(|w| {
                let calls = Figures::of(all().filter(|c| w.holds(c)), w.length());
                format!(
                    "| {} | {} | {} | {} |",
                    w.version,
                    w.length().as_millis(),
                    w.compile_ms,
                    calls.cells()
                )
            })
            .collect();
        let ratio = |q: f64| during.p(q) / before.p(q);
        let never = |n: usize, of: &str| {
            if n == 0 {
                "never".to_string()
            } else {
                format!("{n} times {of}")
            }
        };

        format!(
            "### deploy — {}\n\n\
             `stratus-bench deploy --clients {} --warmup-ms {} --before-ms {} --deploys {} --pause-ms {}`\n\n\
             {} clients call `GET /fn/acme/heavy/` in a loop; `heavy.wasm` is {} KiB (its first deploy took {} ms). \
             After {} ms of warm-up and {} ms of baseline, {} new versions (the same code plus a custom section) are \
             uploaded and deployed one after another, with {} ms of load after each; a deploy window runs from the \
             start of the upload to the `201`, and a call counts in a slice when it was sent and answered inside it.\n\n\
             | slice | calls | calls/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n\
             | before (baseline), {:.1} s | {} |\n\
             | during the {} deploys, {:.1} s in all | {} |\n\
             | after each deploy until the next, {:.1} s in all | {} |\n\n\
             ratio during/before: calls/s {:.2}×, p50 {:.2}×, p99 {:.2}×, max {:.2}× · the slowest call that \
             overlapped a window at all took {:.2} ms\n\n\
             | deploy: version | window ms | compile_ms | calls | calls/s | p50 ms | p99 ms | max ms |\n\
             |---|---|---|---|---|---|---|---|\n{}\n\n\
             Checks, over {} calls:\n\n\
             - failed calls: {}{}\n\
             - went back (a client answered by an older version than before, in send order): {}\n\
             - the old version after a deploy was acknowledged (calls sent after the `201`): {}\n\
             - a new version before its deploy began: {}\n\
             - calls inside a window answered by the old version: {} of {}{}\n",
            provenance(),
            self.clients,
            self.warmup_ms,
            self.before_ms,
            self.deploys,
            self.pause_ms,
            self.clients,
            component_bytes / 1024,
            first_deploy.as_millis(),
            self.warmup_ms,
            self.before_ms,
            self.deploys,
            self.pause_ms,
            self.before_ms as f64 / 1000.0,
            before.cells(),
            self.deploys,
            windows.iter().map(Window::length).sum::<Duration>().as_secs_f64(),
            during.cells(),
            after_length.as_secs_f64(),
            after.cells(),
            during.per_second / before.per_second,
            ratio(0.5),
            ratio(0.99),
            ratio(1.0),
            overlapping_max.as_secs_f64() * 1000.0,
            deploy_rows.join("\n"),
            total,
            failed,
            if failed == 0 {
                String::new()
            } else {
                format!(" ({statuses}; 0 is a request that got no answer)")
            },
            never(went_back, "by some client"),
            never(stale, "in all"),
            never(early, "in all"),
            inside_old,
            during.calls,
            ahead_of_201.map_or(String::new(), |ahead| format!(
                " (the others by the new one, at most {:.2} ms before the `201` reached the deployer)",
                ahead.as_secs_f64() * 1000.0
            )),
        )
    }
}

/// Calls `url` in a loop until `stop`; every call, in the order sent.
fn client(url: &str, auth: &str, stop: &AtomicBool) -> Vec<Call> {
    // An agent of its own: a shared one keeps few idle connections, and a
    // client reconnecting now and then would add noise of its own.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let mut calls = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let answer = agent
            .get(url)
            .header("authorization", auth)
            .call()
            .and_then(|mut response| {
                let version = response
                    .headers()
                    .get("x-stratus-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                response.body_mut().read_to_vec()?;
                Ok((response.status().as_u16(), version))
            });
        let (status, version) = answer.unwrap_or((0, 0));
        calls.push(Call {
            sent,
            answered: Instant::now(),
            status,
            version,
        });
    }
    calls
}
