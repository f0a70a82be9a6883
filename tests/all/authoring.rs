//! What a function author meets: `stratus new` templates that build and test
//! outside this repository, `stratus up` settings, errors that name the cause
//! and the fix, and logs that say what happened.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// Runs `cargo ARGS` in `dir` with the examples' target directory (the
/// templates share it, and the workspace's lockfile, which `stratus new`
/// copies). Panics with cargo's output unless it succeeds.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", WASM_TARGET_DIR)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cargo {args:?} in {}:\n{text}", dir.display());
    text
}

/// `stratus new NAME --template T` in `parent`; the crate's directory.
fn new_crate(parent: &Path, name: &str, template: &str) -> PathBuf {
    let out = Command::new(stratus_bin())
        .args(["new", name, "--template", template])
        .current_dir(parent)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    parent.join(name)
}

/// Builds the crate for wasm32-wasip2; its component.
fn component(dir: &Path, name: &str) -> String {
    cargo(dir, &["build", "--release", "--target", "wasm32-wasip2"]);
    let path = Path::new(WASM_TARGET_DIR)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path.display().to_string()
}

fn as_alice(key: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", bearer(key)), ("x-stratus-sub-tenant", "alice".into())]
}

fn call(server: &Server, method: &str, path: &str, headers: &[(&'static str, String)], body: &[u8]) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    server.request(method, path, &headers, body)
}

#[test]
fn every_template_builds_outside_the_repository_passes_its_own_tests_and_serves_when_deployed() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    assert!(!dir.path().starts_with(env!("CARGO_MANIFEST_DIR")));
    let upstream = Upstream::start(|_, _, _| (200, json!({ "says": "hi" })));
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let key = server.create_account("acme");

    // http: public, a query parameter, a 400 that says what to pass.
    let http = new_crate(dir.path(), "greeter", "http");
    let tests = cargo(&http, &["test"]);
    assert!(tests.contains("test result: ok. 1 passed"), "{tests}");
    let wasm = component(&http, "greeter");
    server.cli_ok(&key, &["function", "deploy", "greeter", &wasm, "--public"]);
    let hello = server.request("GET", "/fn/acme/greeter/?name=ada", &[], b"");
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello, ada\n"));
    let missing = server.request("GET", "/fn/acme/greeter/", &[], b"");
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("?name="), "{}", missing.text());

    // json-api: a todo list per sub-tenant, deployed multi-tenant.
    let api = new_crate(dir.path(), "todos", "json-api");
    let tests = cargo(&api, &["test"]);
    assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
    let wasm = component(&api, "todos");
    server.cli_ok(&key, &["function", "deploy", "acme/todos", &wasm, "--tenancy", "multi"]);
    let alice = as_alice(&key);
    let made = call(&server, "POST", "/fn/acme/todos/", &alice, br#"{"title":"milk"}"#);
    assert_eq!(made.status, 201, "{}", made.text());
    let id = made.json()["id"].as_u64().unwrap();
    let list = call(&server, "GET", "/fn/acme/todos/", &alice, b"");
    assert_eq!(list.json(), json!([{ "id": id, "title": "milk" }]));
    let bob = vec![("authorization", bearer(&key)), ("x-stratus-sub-tenant", "bob".into())];
    assert_eq!(call(&server, "GET", "/fn/acme/todos/", &bob, b"").json(), json!([]));
    assert_eq!(
        call(&server, "GET", &format!("/fn/acme/todos/{id}"), &bob, b"").status,
        404
    );
    let get = call(&server, "GET", "/fn/acme/todos/", &alice, b"");
    let head = call(&server, "HEAD", "/fn/acme/todos/", &alice, b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some(get.body.len().to_string().as_str()));
    let wrong = call(&server, "PUT", "/fn/acme/todos/", &alice, b"");
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET, POST, HEAD")));
    assert_eq!(
        call(&server, "DELETE", &format!("/fn/acme/todos/{id}"), &alice, b"").status,
        204
    );
    assert_eq!(call(&server, "GET", "/fn/acme/todos/", &alice, b"").json(), json!([]));

    // kv: a counter per sub-tenant.
    let kv = new_crate(dir.path(), "visits", "kv");
    cargo(&kv, &["test"]);
    let wasm = component(&kv, "visits");
    server.cli_ok(&key, &["function", "deploy", "visits", &wasm, "--tenancy", "multi"]);
    call(&server, "POST", "/fn/acme/visits/", &alice, b"");
    let two = call(&server, "POST", "/fn/acme/visits/", &alice, b"");
    assert_eq!(two.json(), json!({ "visits": 2 }));
    assert_eq!(
        call(&server, "GET", "/fn/acme/visits/", &bob, b"").json(),
        json!({ "visits": 0 })
    );

    // outbound: a local upstream, allowed by the version and the operator.
    let out = new_crate(dir.path(), "relay", "outbound");
    cargo(&out, &["test"]);
    let wasm = component(&out, "relay");
    let target = upstream.authority.clone();
    let upstream_url = format!("UPSTREAM={}/status", upstream.origin);
    server.cli_ok(
        &key,
        &[
            "function",
            "deploy",
            "relay",
            &wasm,
            "--env",
            &upstream_url,
            "--allow-outbound",
            &target,
        ],
    );
    let relayed = server.get("/fn/acme/relay/", &bearer(&key));
    assert_eq!((relayed.status, relayed.text().as_str()), (200, r#"{"says":"hi"}"#));
    eprintln!(
        "four templates made, tested, built and served in {:?}",
        started.elapsed()
    );
}

#[test]
fn up_takes_the_deploy_settings_from_the_crate_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let api = new_crate(dir.path(), "todo-up", "json-api");
    let mut up = Command::new(stratus_bin())
        .arg("up")
        .arg(&api)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .args(["--env", "MODE=test"])
        .env("CARGO_TARGET_DIR", WASM_TARGET_DIR)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut hint = None;
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        seen.push(line.clone());
        if line.starts_with("try: curl") {
            hint = Some(line);
            break;
        }
    }
    let hint = hint.unwrap_or_else(|| panic!("no hint: {seen:?}"));
    std::thread::spawn(move || for _ in lines {});
    // The crate's metadata says multi: the hint names a sub-tenant, and a
    // call without one is refused.
    assert!(hint.contains("x-stratus-sub-tenant: alice"), "{hint}");
    let url = hint.rsplit(' ').next().unwrap().to_string();
    let key = hint
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let refused = call_url("GET", &url, &[("authorization", &bearer(&key))], b"");
    assert_eq!(refused.status, 400, "{}", refused.text());
    let made = call_url(
        "POST",
        &url,
        &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "alice")],
        br#"{"title":"from up"}"#,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let _ = up.kill();
    let _ = up.wait();
}

#[test]
fn errors_name_the_cause_and_the_fix() {
    let (server, key) = Server::with_function("hostile", HOSTILE_COMPONENT, json!({}));
    let auth = bearer(&key);

    // A panic: the caller learns where to look; the owner sees the message.
    let panicked = server.get("/fn/acme/hostile/?do=panic", &auth);
    assert_eq!(panicked.status, 502);
    let id = panicked.header("x-stratus-invocation-id").unwrap().to_string();
    let message = panicked.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("panicked") && message.contains(&format!("stratus logs acme/hostile --invocation {id}")),
        "{message}"
    );
    assert!(!message.contains("unreachable"), "{message}");
    let logs = server.cli_ok(&key, &["logs", "hostile", "--invocation", &id[..8]]);
    assert!(logs.contains("err| ") && logs.contains("asked to panic"), "{logs}");
    assert!(logs.contains("stratus| the function panicked"), "{logs}");

    // exit(3): the status the guest could send, said plainly.
    let exited = server.get("/fn/acme/hostile/?do=exit&code=3", &auth);
    assert_eq!(exited.status, 502);
    assert!(exited.text().contains("exited with status 1"), "{}", exited.text());

    // Memory: the limit that was hit.
    server.deploy(&key, "acme", "hog", HOG_COMPONENT, json!({ "memory_mb": 16 }));
    let hog = server.get("/fn/acme/hog/", &auth);
    assert_eq!(hog.status, 502);
    assert!(
        hog.text().contains("ran out of memory: its limit is 16 MiB"),
        "{}",
        hog.text()
    );

    // Something that is not a component, and a binary crate.
    let refused = server.upload(&key, "acme", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    assert_eq!(refused.status, 400);
    let text = refused.text();
    assert!(
        text.contains("ELF") && text.contains("wasm32-wasip2") && !text.contains("[0"),
        "{text}"
    );
    let command = server.upload(&key, "acme", &std::fs::read(COMMAND_COMPONENT).unwrap());
    assert_eq!(command.status, 400);
    assert!(
        command.text().contains("binary crate") && command.text().contains("cdylib"),
        "{}",
        command.text()
    );
    // The CLI shows the reason in its table output, not only with --json.
    let out = server.cli(&key, &["function", "deploy", "cmd", COMMAND_COMPONENT]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("binary crate"));
}

#[test]
fn an_outbound_denial_names_the_host_and_the_flag_to_the_caller_and_in_the_log() {
    let upstream = Upstream::start(|_, _, _| (200, json!("never reached")));
    let target = upstream.authority.clone();
    let env = format!("UPSTREAM={}/", upstream.origin);
    let dir = tempfile::tempdir().unwrap();
    let relay = new_crate(dir.path(), "relay", "outbound");
    let wasm = component(&relay, "relay");

    // Allowed by the version, but a private address the operator did not allow.
    let server = Server::start();
    let key = server.create_account("acme");
    server.cli_ok(
        &key,
        &[
            "function",
            "deploy",
            "relay",
            &wasm,
            "--env",
            &env,
            "--allow-outbound",
            &target,
        ],
    );
    let denied = server.get("/fn/acme/relay/", &bearer(&key));
    assert_eq!(denied.status, 502);
    // The caller learns where the details are, not the function's settings.
    let id = denied.header("x-stratus-invocation-id").unwrap().to_string();
    let message = denied.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!("stratus logs acme/relay --invocation {id}")),
        "{message}"
    );
    assert!(!message.contains("127.0.0.1"), "{message}");
    let logs = server.cli_ok(&key, &["logs", "relay", "--invocation", &id]);
    assert!(
        logs.contains(&format!(
            "stratus| outbound request to {target} denied: it resolves to a loopback"
        )) && logs.contains("--allow-private-outbound"),
        "{logs}"
    );

    // Not in the allow-list at all.
    server.cli_ok(&key, &["function", "deploy", "relay", &wasm, "--env", &env]);
    let denied = server.get("/fn/acme/relay/", &bearer(&key));
    let id = denied.header("x-stratus-invocation-id").unwrap().to_string();
    assert_eq!(denied.status, 502);
    // The SDK's error answered 502 with the details only in the log.
    let logs = server.cli_ok(&key, &["logs", "acme/relay", "--invocation", &id]);
    assert!(
        logs.contains(&format!("stratus| outbound request to {target} denied"))
            && logs.contains(&format!("--allow-outbound {target}")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("err| error: the host denied the request to {target}")),
        "{logs}"
    );
}

#[test]
fn logs_mark_streams_and_say_why_a_call_timed_out() {
    let (server, key) = Server::with_function("busy", BUSY_COMPONENT, json!({ "timeout_ms": 300 }));
    let reply = server.get("/fn/acme/busy/", &bearer(&key));
    assert_eq!(reply.status, 504);
    let id = reply.header("x-stratus-invocation-id").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let entries: Vec<Value> = loop {
        let reply = server.admin(
            &key,
            "GET",
            &format!("/accounts/acme/functions/busy/logs?invocation={id}"),
            None,
        );
        let entries: Vec<Value> = reply.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if !entries.is_empty() || Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line = entries
        .iter()
        .find(|e| e["stream"] == "stratus")
        .unwrap_or_else(|| panic!("no host line for the timeout: {entries:?}"));
    assert!(line["line"].as_str().unwrap().contains("deadline"), "{line}");
    assert!(entries.iter().all(|e| e["invocation_id"] == id.as_str()));
}

#[test]
fn logs_into_a_closed_pipe_end_quietly() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({}));
    for i in 0..200 {
        server.get(&format!("/fn/acme/echo/{i}"), &bearer(&key));
    }
    let mut child = Command::new(stratus_bin())
        .args(["logs", "echo"])
        .env("STRATUS_URL", &server.url)
        .env("STRATUS_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then hang up, as `| head -1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let _ = stdout.read(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn invoke_takes_headers_and_the_same_address_forms_as_logs_and_function() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({}));
    let own = server.cli_ok(&key, &["invoke", "echo", "-H", "x-trace: 42", "--path", "/h"]);
    let full = server.cli_ok(
        &key,
        &["invoke", "acme/echo", "--header", "x-trace: 42", "--path", "/h"],
    );
    assert_eq!(own, full);
    assert!(own.contains(r#""x-trace":"42""#), "{own}");
    let shown = server.cli_ok(&key, &["function", "show", "acme/echo"]);
    assert!(shown.contains("acme/echo"), "{shown}");
    for bad in ["a/b/c", "acme/echo?x=1", "acme/../echo"] {
        let out = server.cli(&key, &["invoke", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("ACCOUNT/FN"), "{bad}");
    }
    let mismatch = server.cli(OPERATOR_KEY, &["--account", "globex", "function", "show", "acme/echo"]);
    assert!(!mismatch.status.success());
    assert!(String::from_utf8_lossy(&mismatch.stderr).contains("--account names globex"));
}

#[test]
fn kv_compare_and_set_decides_one_winner_and_a_0_1_0_component_keeps_running() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({}));
    let auth = bearer(&key);
    let first = server.request("POST", "/fn/acme/counter/claim", &[("authorization", &auth)], b"ada");
    let second = server.request("POST", "/fn/acme/counter/claim", &[("authorization", &auth)], b"bob");
    assert_eq!((first.text().as_str(), second.text().as_str()), ("won ada", "lost ada"));

    server.deploy(&key, "acme", "legacy", LEGACY_KV_COMPONENT, json!({}));
    assert_eq!(server.get("/fn/acme/legacy/", &auth).text(), "legacy 1");
    assert_eq!(server.get("/fn/acme/legacy/", &auth).text(), "legacy 2");
}

#[test]
fn a_failed_deploys_reason_is_in_the_table_output() {
    let server = Server::start_with(&["--compile-timeout", "300ms"]);
    let key = server.create_account("acme");
    // Bytes no run has compiled before: the code cache is shared.
    let dir = tempfile::tempdir().unwrap();
    let heavy = dir.path().join("heavy.wasm");
    std::fs::write(&heavy, crate::isolation::fresh(HEAVY_COMPONENT)).unwrap();
    let out = server.cli(&key, &["function", "deploy", "heavy", heavy.to_str().unwrap()]);
    assert!(!out.status.success());
    let shown = server.cli_ok(&key, &["function", "show", "heavy"]);
    assert!(
        shown.contains("version 1 failed:") && shown.contains("--compile-timeout"),
        "{shown}"
    );
}

#[test]
fn stratus_new_refuses_bad_names_and_a_missing_sdk_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(stratus_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let bad = run(&["new", "../escape"]);
    assert!(!bad.status.success());
    assert!(!dir.path().join("../escape").exists());
    let missing = run(&["new", "fine", "--sdk", "/nonexistent/guest-sdk"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("/nonexistent/guest-sdk") && stderr.contains("--sdk"),
        "{stderr}"
    );
    assert!(!dir.path().join("fine").exists(), "nothing is written on a refusal");
    let made = run(&["new", "fine"]);
    assert!(made.status.success());
    let again = run(&["new", "fine"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[test]
fn another_accounts_caller_learns_only_where_the_owner_can_look() {
    let (server, key) = Server::with_function("hostile", HOSTILE_COMPONENT, json!({}));
    let globex = server.create_account("globex");
    server.cli_ok(&key, &["grant", "add", "hostile", "--to", "globex"]);
    server.cli_ok(&globex, &["alias", "create", "h", "--target", "acme/hostile"]);
    let failed = server.get("/fn/globex/h/?do=panic", &bearer(&globex));
    assert_eq!(failed.status, 502);
    let message = failed.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("the function failed:"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    // The owner reads the cause.
    let id = failed.header("x-stratus-invocation-id").unwrap();
    let logs = server.cli_ok(&key, &["logs", "hostile", "--invocation", id]);
    assert!(logs.contains("stratus| the function panicked"), "{logs}");
}

/// The key `stratus up` prints, run on `data` until it prints one.
fn up_key(data: &Path) -> String {
    let mut up = Command::new(stratus_bin())
        .arg("up")
        .arg(HELLO_COMPONENT)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let key = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("account key for dev: ").map(str::to_string));
    let _ = up.kill();
    let _ = up.wait();
    key.unwrap_or_else(|| panic!("up printed no key"))
}

#[test]
fn up_keeps_its_dev_key_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = up_key(dir.path());
    assert_eq!(
        up_key(dir.path()),
        first,
        "a restart reuses the key, rather than piling up new ones"
    );
}

#[test]
fn a_line_without_its_newline_is_in_its_own_calls_log() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({ "reuse": "warm" }));
    let first = server.get("/fn/acme/counter/", &bearer(&key));
    let second = server.get("/fn/acme/counter/", &bearer(&key));
    for (reply, line) in [(first, "out| call 1"), (second, "out| call 2")] {
        let id = reply.header("x-stratus-invocation-id").unwrap().to_string();
        let logs = server.cli_ok(&key, &["logs", "acme/counter", "--invocation", &id]);
        assert!(logs.trim_end().ends_with(line) && logs.lines().count() == 1, "{logs}");
    }
    // Without a key, the CLI says how to give one, whatever the address form.
    for address in ["counter", "acme/counter"] {
        let out = Command::new(stratus_bin())
            .args(["logs", address])
            .env("STRATUS_URL", &server.url)
            .env("STRATUS_KEY", "")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("pass --key or set STRATUS_KEY"), "{address}: {stderr}");
    }
}
