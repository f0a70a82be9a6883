//! A `stratus serve` child process on a free port with a temporary data dir.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

pub const OPERATOR_KEY: &str = "op_benchmark-operator-key-0001";

pub struct Server {
    child: Child,
    pub url: String,
    data: TempDir,
    stratus: std::path::PathBuf,
    args: Vec<String>,
    pub agent: ureq::Agent,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// Starts `stratus serve` on a fresh data dir of its own: servers of one
    /// run never share a database or a code cache.
    pub fn start(stratus: &Path, args: &[&str]) -> anyhow::Result<Self> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let data = std::env::temp_dir().join(format!("stratus-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let (child, url) = spawn(stratus, &data, args).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&data);
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        Ok(Self {
            child,
            url,
            data: TempDir(data),
            stratus: stratus.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            agent,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data.0
    }

    /// Kills the process without warning, as a crash or an OOM kill would,
    /// and returns once it is gone; the data dir stays.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the server again on the same data dir and flags, after
    /// [`Server::kill`]; returns once it announces its (new) address.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (child, url) = spawn(&self.stratus, &self.data.0, &args)?;
        self.child = child;
        self.url = url;
        Ok(())
    }

    pub fn admin(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}/admin/v1{path}", self.url))
            .header("authorization", format!("Bearer {key}"))
            .body(body.map(|b| b.to_string()).unwrap_or_default())?;
        let mut response = self.agent.run(request)?;
        let text = response.body_mut().read_to_string()?;
        anyhow::ensure!(response.status().is_success(), "{method} {path}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates `account` and deploys `component` as `function`; returns the key.
    pub fn setup(&self, account: &str, function: &str, component: &Path, config: Value) -> anyhow::Result<String> {
        let key = self.create_account(account)?;
        self.deploy(&key, account, function, component, config)?;
        Ok(key)
    }

    /// Creates `account`; returns its key.
    pub fn create_account(&self, account: &str) -> anyhow::Result<String> {
        let created = self.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": account })))?;
        Ok(created["key"].as_str().unwrap_or_default().to_string())
    }

    /// Uploads `component` and makes it the next version of `function`.
    pub fn deploy(
        &self,
        key: &str,
        account: &str,
        function: &str,
        component: &Path,
        config: Value,
    ) -> anyhow::Result<()> {
        let bytes = std::fs::read(component)?;
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let request = http::Request::builder()
            .method("PUT")
            .uri(format!("{}/admin/v1/accounts/{account}/blobs/{sha}", self.url))
            .header("authorization", format!("Bearer {key}"))
            .body(bytes)?;
        let response = self.agent.run(request)?;
        anyhow::ensure!(response.status().is_success(), "upload failed: {}", response.status());
        let mut body = config;
        body["blob"] = json!(sha);
        self.admin(
            key,
            "POST",
            &format!("/accounts/{account}/functions/{function}/versions"),
            Some(body),
        )?;
        Ok(())
    }

    /// A counter or gauge from `GET /metrics` (operator key), summed over its
    /// label sets; 0 while it has never been set.
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        metric_in(&self.metrics()?, name, "")
    }

    /// The text of `GET /metrics` (operator key): read once, several
    /// figures from it are from the same instant.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let request = http::Request::builder()
            .uri(format!("{}/metrics", self.url))
            .header("authorization", format!("Bearer {OPERATOR_KEY}"))
            .body(())?;
        let mut response = self.agent.run(request)?;
        let text = response.body_mut().read_to_string()?;
        anyhow::ensure!(response.status().is_success(), "GET /metrics: {text}");
        Ok(text)
    }

    /// One call; returns the status.
    pub fn call(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<u16> {
        let mut builder = http::Request::builder().uri(format!("{}{path}", self.url));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut response = self.agent.run(builder.body(())?)?;
        let _ = response.body_mut().read_to_vec()?;
        Ok(response.status().as_u16())
    }
}

/// Spawns `stratus serve` on `data`; returns once it prints its address.
fn spawn(stratus: &Path, data: &Path, args: &[&str]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(stratus)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env("STRATUS_OPERATOR_KEY", OPERATOR_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let Some(line) = lines.next() else {
            // It said why on stderr (warnings and errors only).
            let mut why = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut why);
            let _ = child.wait();
            anyhow::bail!("the server exited: {}", why.trim().replace('\n', " "));
        };
        if let Some(url) = line?.strip_prefix("stratus listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    Ok((child, url))
}

/// A counter or gauge in a `/metrics` text, summed over the label sets that
/// contain `label` (all of them when it is empty); 0 when absent.
pub fn metric_in(text: &str, name: &str, label: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let labelled = rest.starts_with('{') && rest.contains(label);
        if !label.is_empty() && !labelled {
            continue;
        }
        let rest = match rest.strip_prefix('{') {
            Some(labelled) => labelled.rsplit_once('}').map_or("", |(_, after)| after),
            None if rest.starts_with(' ') => rest,
            None => continue,
        };
        let value = rest.split_whitespace().next().unwrap_or_default();
        total += value
            .parse::<f64>()
            .map_err(|e| anyhow::anyhow!("{name}: {value:?}: {e}"))?;
    }
    Ok(total)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median of `values` (the mean of the middle two for an even count);
/// NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs `op` `n` times; nanoseconds per run.
pub fn ns_per_op(n: usize, op: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    for _ in 0..n {
        op()?;
    }
    Ok(started.elapsed().as_nanos() as f64 / n as f64)
}

/// Percentile of sorted samples, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// A short description of this machine and commit, for the results file.
pub fn provenance() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    // Dirty only for changes to what is measured: the results file itself
    // grows with every benchmark of a run.
    let changed = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!bench/RESULTS.md",
    ]);
    let commit = format!(
        "{}{}",
        git(&["describe", "--always"]),
        if changed.is_empty() { "" } else { "-dirty" }
    );
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date} · commit {commit} · {cpus} × {model}")
}
