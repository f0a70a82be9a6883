//! SPEC §6: the CLI is a client of the admin API with readable errors.

use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;

fn stratus(server: &Server, key: &str, args: &[&str]) -> Output {
    server.cli(key, args)
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn account_deploy_and_invoke_through_the_cli() {
    let server = Server::start();
    let created = json_of(&stratus(
        &server,
        OPERATOR_KEY,
        &["account", "create", "acme", "--json"],
    ));
    let key = created["key"].as_str().unwrap().to_string();

    let deployed = json_of(&stratus(
        &server,
        &key,
        &["function", "deploy", "echo", ECHO_COMPONENT, "--env", "A=1", "--json"],
    ));
    assert_eq!(deployed["version"], 1);

    let listed = json_of(&stratus(&server, &key, &["function", "list", "--json"]));
    assert_eq!(listed["functions"][0]["name"], "echo");
    let table = stratus(&server, &key, &["function", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("echo"));

    let invoked = stratus(
        &server,
        &key,
        &["invoke", "acme/echo", "--path", "/p?q=1", "--data", "payload"],
    );
    assert!(invoked.status.success(), "{}", String::from_utf8_lossy(&invoked.stderr));
    let seen: Value = serde_json::from_slice(&invoked.stdout).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/p");
    assert_eq!(seen["body"], "payload");
    assert_eq!(seen["env"]["A"], "1");

    // The operator names the account explicitly.
    let as_operator = json_of(&stratus(
        &server,
        OPERATOR_KEY,
        &["--account", "acme", "function", "versions", "echo", "--json"],
    ));
    assert_eq!(as_operator["versions"].as_array().unwrap().len(), 1);
}

#[test]
fn cli_errors_are_readable_and_exit_non_zero() {
    let server = Server::start();
    let key = server.create_account("acme");

    let missing = stratus(&server, &key, &["function", "show", "nothing"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no function nothing") && stderr.contains("not_found"),
        "{stderr}"
    );

    let bad_file = stratus(&server, &key, &["function", "deploy", "f", "/no/such/file.wasm"]);
    assert!(!bad_file.status.success());
    assert!(String::from_utf8_lossy(&bad_file.stderr).contains("cannot read /no/such/file.wasm"));

    let failing_call = stratus(&server, &key, &["invoke", "acme/nothing"]);
    assert!(!failing_call.status.success());

    let unreachable = Command::new(stratus_bin())
        .args(["account", "list", "--url", "http://127.0.0.1:9", "--key", OPERATOR_KEY])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
}

#[test]
fn serve_refuses_a_bad_configuration_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(stratus_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("STRATUS_OPERATOR_KEY", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATUS_OPERATOR_KEY"));

    // A database that cannot be opened fails with a message, not a panic.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(stratus_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&file)
        .env("STRATUS_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error:") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sub_tenants_through_the_cli() {
    let server = Server::start();
    let key = server.create_account("acme");
    let deployed = stratus(
        &server,
        &key,
        &[
            "function",
            "deploy",
            "counter",
            COUNTER_COMPONENT,
            "--tenancy",
            "multi",
            "--reuse",
            "warm",
        ],
    );
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );

    let call = |sub: &str| {
        let out = stratus(&server, &key, &["invoke", "acme/counter", "--sub-tenant", sub]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(call("alice")["kv"], 1);
    assert_eq!(call("alice")["memory"], 2);
    assert_eq!(call("bob")["memory"], 1);

    let issued = stratus(
        &server,
        &key,
        &["token", "issue", "--sub-tenant", "alice", "--ttl", "15m"],
    );
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_string();
    let reply = server.request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&token))], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["kv"], 3, "the token acts as alice");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef stratus"),
        ("fish", "complete -c stratus"),
    ] {
        let out = Command::new(stratus_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["alias", "grant", "reserve", "rotate-signing"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
    }
    let bad = Command::new(stratus_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let server = Server::start();
    server.create_account("acme");
    for args in [&["--json", "account", "list"][..], &["account", "list"][..]] {
        let mut child = Command::new(stratus_bin())
            .args(args)
            .env("STRATUS_URL", &server.url)
            .env("STRATUS_KEY", OPERATOR_KEY)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before anything is written (`| head -c 0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
