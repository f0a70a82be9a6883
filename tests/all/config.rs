//! `serve --config FILE`: every flag is also a file key and an environment
//! variable (flags win, then the environment, then the file); bad settings
//! are refused before anything binds, naming the setting.

use std::process::Command;

use serde_json::json;

use crate::harness::*;

fn print_config(file: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stratus.toml");
    std::fs::write(&path, file).unwrap();
    let mut command = Command::new(stratus_bin());
    command
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--print-config")
        .args(args)
        .env_remove("STRATUS_POOL_SLOTS");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn file_settings_apply_and_flags_and_environment_win() {
    let file = "pool-slots = 3\nshutdown-grace = \"5s\"\nallow-private-outbound = [\"127.0.0.1\", \"10.0.0.1\"]\n";
    let out = print_config(file, &[], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    for line in [
        "pool-slots = 3",
        "shutdown-grace = \"5s\"",
        "allow-private-outbound = [\"127.0.0.1\", \"10.0.0.1\"]",
        "listen = \"127.0.0.1:8080\"",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} missing from:\n{printed}");
    }
    // What it prints is itself a valid config file.
    let again = print_config(&printed, &[], &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8_lossy(&again.stdout), printed);

    let flag = print_config(file, &["--pool-slots", "7"], &[]);
    assert!(
        String::from_utf8_lossy(&flag.stdout)
            .lines()
            .any(|l| l == "pool-slots = 7")
    );
    let env = print_config(file, &[], &[("STRATUS_POOL_SLOTS", "9")]);
    assert!(
        String::from_utf8_lossy(&env.stdout)
            .lines()
            .any(|l| l == "pool-slots = 9")
    );
}

#[test]
fn bad_settings_are_refused_naming_the_setting() {
    for (file, expected) in [
        ("pool-slot = 3\n", "unknown key `pool-slot`"),
        ("pool-slots = \"many\"\n", "--pool-slots"),
        ("pool-slots = 0\n", "--pool-slots must be at least 1"),
        ("shutdown-grace = \"soon\"\n", "--shutdown-grace"),
        ("pool-slots = {\n", "not valid TOML"),
    ] {
        let out = print_config(file, &[], &[]);
        assert!(!out.status.success(), "{file:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{file:?}: {stderr}");
    }
}

#[test]
fn a_server_runs_with_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stratus.toml");
    std::fs::write(&path, "max-request-body = 1000\n").unwrap();
    let server = Server::start_with(&["--config", path.to_str().unwrap()]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
    let auth = bearer(&key);
    let small = server.request("POST", "/fn/acme/echo/", &[("authorization", &auth)], &[b'x'; 500]);
    assert_eq!(small.status, 200);
    let big = server.request("POST", "/fn/acme/echo/", &[("authorization", &auth)], &[b'x'; 2000]);
    assert_eq!(big.status, 413, "{}", big.text());
}
