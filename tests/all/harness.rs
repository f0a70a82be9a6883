//! Starts `stratus serve` as a child process and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The operator key every test server uses.
pub const OPERATOR_KEY: &str = "op_integration-tests-operator-key";

/// The `stratus` binary under test.
pub fn stratus_bin() -> &'static str {
    env!("CARGO_BIN_EXE_stratus")
}

/// One compiled-code cache for the whole test run, so each example compiles
/// once however many servers deploy it.
pub fn shared_code_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code-cache");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A running server with its own data directory.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `http://127.0.0.1:PORT` of `--admin-listen`, when given.
    pub admin_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
    log: PathBuf,
    agent: ureq::Agent,
    printed: Vec<String>,
}

/// A response, whatever its status.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The stable error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

impl Server {
    /// A server with default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `serve` flags.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut server = Self::spawn(&data, args);
        server._dir = Some(dir);
        server
    }

    /// A default server with account `acme` and one function deployed in
    /// it; returns the server and the account's key.
    pub fn with_function(function: &str, component: &str, config: Value) -> (Self, String) {
        let server = Self::start();
        let key = server.create_account("acme");
        server.deploy(&key, "acme", function, component, config);
        (server, key)
    }

    /// A server whose operator key is `operator` (any shape a user may pick).
    pub fn start_with_operator_key(operator: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::spawn_as(&dir.path().join("data"), args, operator);
        server._dir = Some(dir);
        server
    }

    /// A server on an existing data directory (for restarts).
    pub fn spawn(data: &Path, args: &[&str]) -> Self {
        Self::spawn_as(data, args, OPERATOR_KEY)
    }

    fn spawn_as(data: &Path, args: &[&str], operator: &str) -> Self {
        Self::spawn_full(data, args, Some(operator), true, &[])
    }

    /// A cluster node: its code cache is its own (the cluster shares
    /// compiled code through etcd), and `operator` may be left to the
    /// cluster to generate.
    pub fn spawn_node(data: &Path, args: &[&str], operator: Option<&str>) -> Self {
        Self::spawn_full(data, args, operator, false, &[])
    }

    /// A cluster node with extra environment variables.
    pub fn spawn_node_with_env(data: &Path, args: &[&str], operator: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_full(data, args, Some(operator), false, env)
    }

    fn spawn_full(
        data: &Path,
        args: &[&str],
        operator: Option<&str>,
        shared_cache: bool,
        env: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = Command::new(stratus_bin());
        command.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data);
        if shared_cache {
            command.arg("--code-cache").arg(shared_code_cache());
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("STRATUS_OPERATOR_KEY");
        if let Some(operator) = operator {
            command.env("STRATUS_OPERATOR_KEY", operator);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        let mut admin_url = None;
        let mut printed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            printed.push(line.clone());
            if let Some(rest) = line.strip_prefix("stratus admin listening on ") {
                admin_url = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("stratus listening on ") {
                url = Some(rest.trim().to_string());
                if !args.contains(&"--admin-listen") {
                    break;
                }
            }
            if url.is_some() && admin_url.is_some() {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = url.unwrap_or_else(|| {
            panic!(
                "the server did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let agent = new_agent();
        Self {
            child,
            url,
            admin_url,
            _dir: None,
            log,
            agent,
            printed,
        }
    }

    /// What the server printed on its standard output while starting.
    pub fn printed(&self) -> &[String] {
        &self.printed
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the `stratus` CLI against this server, acting with `key`.
    pub fn cli(&self, key: &str, args: &[&str]) -> std::process::Output {
        Command::new(stratus_bin())
            .args(args)
            .env("STRATUS_URL", &self.url)
            .env("STRATUS_KEY", key)
            .env_remove("STRATUS_ACCOUNT")
            .output()
            .unwrap()
    }

    /// [`Server::cli`] that must succeed; its standard output.
    pub fn cli_ok(&self, key: &str, args: &[&str]) -> String {
        let out = self.cli(key, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls a metric until `check` holds, for up to 10 s; its last value.
    pub fn settle(&self, metric: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(metric);
            if check(value) || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's resident memory, KiB (from `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends SIGTERM, as an init system stopping the host would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `within` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server (SIGKILL: a crash, as far as the database knows).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a request to `base + path`.
    pub fn request_to(&self, base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        send_with(&self.agent, method, &format!("{base}{path}"), headers, body)
    }

    /// Like [`Server::request`], but `None` when no answer came (e.g. the
    /// server was killed meanwhile).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Option<Reply> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        try_send_with(
            &self.agent,
            method,
            &format!("{}{path}", self.url),
            headers,
            body.as_bytes(),
        )
        .ok()
    }

    /// `GET path` with `Authorization: {authorization}` (e.g. `bearer(&key)`).
    pub fn get(&self, path: &str, authorization: &str) -> Reply {
        self.request("GET", path, &[("authorization", authorization)], b"")
    }

    /// Sends a request to the main listener.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.request_to(&self.url, method, path, headers, body)
    }

    /// Calls an admin route with `key`.
    pub fn admin(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let base = self.admin_url.clone().unwrap_or_else(|| self.url.clone());
        let auth = format!("Bearer {key}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.request_to(
            &base,
            method,
            &format!("/admin/v1{path}"),
            &[("authorization", &auth), ("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    /// Creates an account and returns its key.
    pub fn create_account(&self, name: &str) -> String {
        let reply = self.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": name })));
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["key"].as_str().unwrap().to_string()
    }

    /// Uploads a component and returns its SHA-256.
    pub fn upload(&self, key: &str, account: &str, bytes: &[u8]) -> Reply {
        let sha = sha256(bytes);
        let base = self.admin_url.clone().unwrap_or_else(|| self.url.clone());
        let auth = format!("Bearer {key}");
        self.request_to(
            &base,
            "PUT",
            &format!("/admin/v1/accounts/{account}/blobs/{sha}"),
            &[("authorization", &auth)],
            bytes,
        )
    }

    /// Uploads and deploys a component file; panics unless it worked.
    pub fn deploy(&self, key: &str, account: &str, function: &str, component: &str, config: Value) -> Value {
        let reply = self.deploy_reply(key, account, function, component, config);
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()
    }

    /// Uploads a component file and asks for a deploy; returns the answer.
    pub fn deploy_reply(&self, key: &str, account: &str, function: &str, component: &str, config: Value) -> Reply {
        let bytes = std::fs::read(component).unwrap();
        let upload = self.upload(key, account, &bytes);
        assert!(upload.status == 201 || upload.status == 200, "{}", upload.text());
        let mut body = config;
        body["blob"] = json!(sha256(&bytes));
        self.admin(
            key,
            "POST",
            &format!("/accounts/{account}/functions/{function}/versions"),
            Some(body),
        )
    }

    /// A metric's value from `/metrics`, summed over its label sets; `name`
    /// may include labels, e.g. `x_total{scope="account"}` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        let base = self.admin_url.clone().unwrap_or_else(|| self.url.clone());
        let auth = format!("Bearer {OPERATOR_KEY}");
        let text = self
            .request_to(&base, "GET", "/metrics", &[("authorization", &auth)], b"")
            .text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                *series == name || series.strip_prefix(name).is_some_and(|rest| rest.starts_with('{'))
            })
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .fold(0.0, |sum, v| sum + v)
    }

    /// Polls the metric `name` until `done` holds for its value, for at
    /// most `within`; fails the test saying `what` did not happen.
    pub fn await_metric(&self, name: &str, within: Duration, done: impl Fn(f64) -> bool, what: &str) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let value = self.metric(name);
            if done(value) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what} ({name} is {value})");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

fn send_with(agent: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let (status, headers, body) =
        exchange(agent, method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    // A body cut short reads as what arrived: the tests that poll (metrics,
    // logs) then simply ask again.
    Reply {
        status,
        headers,
        body: body.unwrap_or_default(),
    }
}

/// For a server that may be killed mid-answer: a body cut short is no
/// answer at all.
fn try_send_with(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let (status, headers, body) = exchange(agent, method, url, headers, body)?;
    Ok(Reply {
        status,
        headers,
        body: body?,
    })
}

/// The status and headers of a request's answer, and its body as read.
type Exchanged = (u16, Vec<(String, String)>, Result<Vec<u8>, ureq::Error>);

fn exchange(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Exchanged, ureq::Error> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(body.to_vec()).unwrap();
    let response = match agent.run(request.clone()) {
        // A pooled connection the server closed for idleness just as it was
        // reused: what any HTTP client does, ask again on a new one, when
        // asking twice is harmless.
        Err(ureq::Error::Io(e)) if matches!(method, "GET" | "HEAD") && stale(&e) => agent.run(request)?,
        answer => answer?,
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.into_body().with_config().limit(64 * 1024 * 1024).read_to_vec();
    Ok((status, headers, body))
}

fn stale(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Sends a request to any URL (e.g. from an upstream's own thread).
pub fn call_url(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    send_with(&new_agent(), method, url, headers, body)
}

/// Hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    stratus::bench::sha256_hex(bytes)
}

/// `Authorization: Bearer KEY`.
pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

pub use stratus_fixtures::{
    BUSY_COMPONENT, CANARY_COMPONENT, COMMAND_COMPONENT, COUNTER_COMPONENT, ECHO_COMPONENT, FETCH_COMPONENT,
    HEAVY_COMPONENT, HELLO_COMPONENT, HOG_COMPONENT, HOSTILE_COMPONENT, LEGACY_KV_COMPONENT, PLAIN_PROXY_COMPONENT,
    WASM_TARGET_DIR, WHOAMI_COMPONENT,
};

/// An HTTP server a function may call out to, answering with `handler`
/// (status, JSON body) on a thread of its own.
pub struct Upstream {
    /// `http://127.0.0.1:PORT`, also the audience its tokens must carry.
    pub origin: String,
    /// `127.0.0.1:PORT`, for `allow_outbound`.
    pub authority: String,
    server: std::sync::Arc<tiny_http::Server>,
}

impl Upstream {
    /// Starts on a free loopback port; `handler` gets the origin, the
    /// request path and its `Authorization` header.
    pub fn start(handler: impl Fn(&str, &str, Option<&str>) -> (u16, Value) + Send + 'static) -> Self {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let origin = format!("http://127.0.0.1:{port}");
        let serving = server.clone();
        let own = origin.clone();
        std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let auth = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("authorization"))
                    .map(|h| h.value.as_str().to_string());
                let (status, body) = handler(&own, request.url(), auth.as_deref());
                let header = tiny_http::Header::from_bytes("content-type", "application/json").unwrap();
                let response = tiny_http::Response::from_string(body.to_string())
                    .with_status_code(status)
                    .with_header(header);
                let _ = request.respond(response);
            }
        });
        Self {
            authority: format!("127.0.0.1:{port}"),
            origin,
            server,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
