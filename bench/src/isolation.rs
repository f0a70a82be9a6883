//! Isolation: what one account's heavy use of a shared resource costs
//! another account, each figure against the same measurement without that
//! use, in the same run.
//!
//! - uploads: a quiet account's `hello` latency while two large uploads are
//!   hashed and validated (off the async workers), against no uploads;
//! - compiles: a small deploy's time while another account has two slow
//!   compiles queued (it waits behind at most one), against the deploy alone;
//! - queued deploys: the host's RSS while deploys of large components wait
//!   for the compile slot (their blobs are read only once it is theirs),
//!   against the RSS before;
//! - log followers: RSS and the follower gauge after many clients connect
//!   with `?follow=true` and leave, against before.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;

use crate::deploy::with_custom_section;
use crate::server::{Server, percentile, provenance};

/// Options of the isolation benchmark.
#[derive(Debug, clap::Args)]
pub struct Isolation {
    /// Size of each large upload, MiB.
    #[arg(long, default_value_t = 59)]
    upload_mib: usize,
    /// Calls measured per latency figure.
    #[arg(long, default_value_t = 400)]
    calls: usize,
    /// Deploys of large components left queued, per account (3 accounts).
    #[arg(long, default_value_t = 4)]
    queued: usize,
    /// Size of each queued component, MiB.
    #[arg(long, default_value_t = 50)]
    queued_mib: usize,
    /// Clients that follow logs and leave.
    #[arg(long, default_value_t = 2_000)]
    followers: usize,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

/// `component` padded to about `mib` MiB with a custom section, under a
/// SHA-256 of its own (`tag`).
fn padded(component: &[u8], mib: usize, tag: &str) -> Vec<u8> {
    let mut payload = tag.as_bytes().to_vec();
    payload.resize((mib << 20).saturating_sub(component.len()), b'x');
    with_custom_section(component, &payload)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn upload(server: &Server, key: &str, account: &str, bytes: &[u8]) -> anyhow::Result<u16> {
    let request = http::Request::builder()
        .method("PUT")
        .uri(format!(
            "{}/admin/v1/accounts/{account}/blobs/{}",
            server.url,
            sha(bytes)
        ))
        .header("authorization", format!("Bearer {key}"))
        .body(bytes.to_vec())?;
    let mut response = server.agent.run(request)?;
    let _ = response.body_mut().read_to_vec()?;
    Ok(response.status().as_u16())
}

/// Sorted latencies of `n` sequential calls of `path`.
fn latencies(server: &Server, path: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let status = server.call(path, &[])?;
        anyhow::ensure!(status == 200, "{path} answered {status}");
        seen.push(started.elapsed());
    }
    seen.sort();
    Ok(seen)
}

/// Uploads and deploys `bytes` as the next version of `function`; the time
/// from the deploy request to its answer.
fn deploy(
    server: &Server,
    key: &str,
    account: &str,
    function: &str,
    bytes: &[u8],
    wait: bool,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(upload(server, key, account, bytes)? < 300, "upload refused");
    let started = Instant::now();
    let query = if wait { "" } else { "?wait=false" };
    server.admin(
        key,
        "POST",
        &format!("/accounts/{account}/functions/{function}/versions{query}"),
        Some(json!({ "blob": sha(bytes) })),
    )?;
    Ok(started.elapsed())
}

impl Isolation {
    /// Runs the four measurements; a Markdown table.
    pub fn run(&self, stratus: &Path, hello: &Path, heavy: &Path) -> anyhow::Result<String> {
        let hello = std::fs::read(hello)?;
        let heavy = std::fs::read(heavy)?;
        let stamp = format!("{:?}", std::time::SystemTime::now());
        let mut rows = Vec::new();

        // Uploads beside a quiet account's calls.
        {
            let server = Server::start(stratus, &[])?;
            let quiet = server.create_account("quiet")?;
            let loud = server.create_account("loud")?;
            let path = std::env::temp_dir().join(format!("stratus-bench-hello-{}.wasm", std::process::id()));
            std::fs::write(&path, &hello)?;
            server.deploy(&quiet, "quiet", "hello", &path, json!({ "public": true }))?;
            let _ = std::fs::remove_file(&path);
            latencies(&server, "/fn/quiet/hello/", 50)?;
            let alone = latencies(&server, "/fn/quiet/hello/", self.calls)?;
            let big: Vec<Vec<u8>> = (0..2)
                .map(|i| padded(&hello, self.upload_mib, &format!("{stamp}-upload-{i}")))
                .collect();
            let during = std::thread::scope(|scope| -> anyhow::Result<Vec<Duration>> {
                let uploads: Vec<_> = big
                    .iter()
                    .map(|bytes| {
                        let (server, loud) = (&server, &loud);
                        scope.spawn(move || -> anyhow::Result<()> {
                            for _ in 0..3 {
                                upload(server, loud, "loud", bytes)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                let during = latencies(&server, "/fn/quiet/hello/", self.calls)?;
                for upload in uploads {
                    upload
                        .join()
                        .map_err(|_| anyhow::anyhow!("an upload thread panicked"))??;
                }
                Ok(during)
            })?;
            for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
                let (a, d) = (percentile(&alone, p), percentile(&during, p));
                rows.push(format!(
                    "| quiet `hello` {label} during 2 × {} MiB uploads | {d:.2} ms | {a:.2} ms | {:.2}× |",
                    self.upload_mib,
                    d / a
                ));
            }
        }

        // A small deploy behind another account's slow compiles.
        {
            let server = Server::start(stratus, &[])?;
            let small = server.create_account("small")?;
            let big = server.create_account("big")?;
            let fresh = |tag: &str| with_custom_section(&hello, format!("{stamp}-{tag}").as_bytes());
            let alone = deploy(&server, &small, "small", "hello", &fresh("a"), true)?;
            for i in 0..2 {
                deploy(
                    &server,
                    &big,
                    "big",
                    "heavy",
                    &with_custom_section(&heavy, format!("{stamp}-h{i}").as_bytes()),
                    false,
                )?;
            }
            std::thread::sleep(Duration::from_millis(100));
            let behind = deploy(&server, &small, "small", "hello", &fresh("b"), true)?;
            let versions = server.admin(&big, "GET", "/accounts/big/functions/heavy/versions", None)?;
            let still = versions["versions"]
                .as_array()
                .map_or(0, |v| v.iter().filter(|v| v["state"] == "compiling").count());
            rows.push(format!(
                "| small deploy behind 2 queued `heavy` compiles of another account | {:.0} ms | {:.0} ms alone | {:.1}× (heavy compiles still queued or running when it was done: {still}) |",
                behind.as_secs_f64() * 1000.0,
                alone.as_secs_f64() * 1000.0,
                behind.as_secs_f64() / alone.as_secs_f64()
            ));
        }

        // Queued deploys of large components: uploaded first (what that
        // costs is its own figure), then deployed without waiting.
        {
            let server = Server::start(stratus, &[])?;
            let before = rss_kib(server.pid())?;
            let mut uploaded = Vec::new();
            for a in 0..3 {
                let account = format!("queue{a}");
                let key = server.create_account(&account)?;
                for i in 0..self.queued {
                    let bytes = padded(&heavy, self.queued_mib, &format!("{stamp}-q{a}-{i}"));
                    anyhow::ensure!(upload(&server, &key, &account, &bytes)? < 300, "upload refused");
                    uploaded.push((key.clone(), account.clone(), sha(&bytes)));
                }
            }
            // Freed memory settles back before the deploys.
            std::thread::sleep(Duration::from_secs(3));
            let after_uploads = rss_kib(server.pid())?;
            for (key, account, sha) in &uploaded {
                server.admin(
                    key,
                    "POST",
                    &format!("/accounts/{account}/functions/heavy/versions?wait=false"),
                    Some(json!({ "blob": sha })),
                )?;
            }
            let queued = rss_kib(server.pid())?;
            let mib = |kib: u64| kib as f64 / 1024.0;
            rows.push(format!(
                "| RSS with {} deploys of {} MiB queued for the compile slot | {:.0} MiB | {:.0} MiB after their uploads ({:.0} MiB before them) | {:+.0} MiB |",
                uploaded.len(),
                self.queued_mib,
                mib(queued),
                mib(after_uploads),
                mib(before),
                mib(queued) - mib(after_uploads)
            ));
        }

        // Log followers that leave.
        {
            let server = Server::start(stratus, &[])?;
            let key = server.create_account("acme")?;
            let path = std::env::temp_dir().join(format!("stratus-bench-logs-{}.wasm", std::process::id()));
            std::fs::write(&path, &hello)?;
            server.deploy(&key, "acme", "hello", &path, json!({}))?;
            let _ = std::fs::remove_file(&path);
            let before = rss_kib(server.pid())?;
            let authority = server.url.trim_start_matches("http://").to_string();
            for _ in 0..self.followers {
                let mut stream = std::net::TcpStream::connect(&authority)?;
                write!(
                    stream,
                    "GET /admin/v1/accounts/acme/functions/hello/logs?follow=true HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\n\r\n"
                )?;
                let mut head = [0u8; 12];
                stream.read_exact(&mut head)?;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut following = server.metric("stratus_log_followers")?;
            while following > 0.0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                following = server.metric("stratus_log_followers")?;
            }
            let after = rss_kib(server.pid())?;
            rows.push(format!(
                "| RSS after {} log followers connected and left | {:.1} MiB (followers left: {following}) | {:.1} MiB before | {:+.1} MiB |",
                self.followers,
                after as f64 / 1024.0,
                before as f64 / 1024.0,
                (after as f64 - before as f64) / 1024.0
            ));
        }

        Ok(format!(
            "### isolation — {}\n\n`bash bench/run.sh isolation`\n\n| figure | with the other account's load | baseline | ratio |\n|---|---|---|---|\n{}\n",
            provenance(),
            rows.join("\n")
        ))
    }
}
