//! Function logs: each line a guest prints, tagged with its invocation, kept
//! per function within a bound, readable (and followable) by the owner only.

use std::io::{BufRead as _, BufReader, Write as _};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Reads a function's logs until `done` holds (lines are recorded when
/// their invocation ends, just after its answer), for up to 5 s.
fn read_until(server: &Server, key: &str, path: &str, done: impl Fn(&[Value]) -> bool) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = server.admin(key, "GET", path, None);
        if done(&lines(&reply)) || std::time::Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(reply: &Reply) -> Vec<Value> {
    reply.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn printed_lines_are_tagged_filtered_and_shown_to_the_owner_only() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({}));
    let other = server.create_account("globex");
    let auth = bearer(&key);
    let mut ids = Vec::new();
    for (sub, path) in [("alice", "/a"), ("bob", "/b"), ("alice", "/c")] {
        let reply = server.request(
            "GET",
            &format!("/fn/acme/echo{path}"),
            &[("authorization", &auth), ("x-stratus-sub-tenant", sub)],
            b"",
        );
        assert_eq!(reply.status, 200);
        ids.push(reply.header("x-stratus-invocation-id").unwrap().to_string());
    }
    let all = read_until(&server, &key, "/accounts/acme/functions/echo/logs", |l| l.len() == 3);
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(all.header("content-type"), Some("application/x-ndjson"));
    let all = lines(&all);
    assert_eq!(
        all.iter().map(|e| e["line"].as_str().unwrap()).collect::<Vec<_>>(),
        vec!["echo GET /a", "echo GET /b", "echo GET /c"]
    );
    let first = &all[0];
    assert_eq!(first["invocation_id"], ids[0].as_str());
    assert_eq!(
        (first["owner"].as_str(), first["caller"].as_str()),
        (Some("acme"), Some("acme"))
    );
    assert_eq!(
        (first["function"].as_str(), first["version"].as_u64()),
        (Some("echo"), Some(1))
    );
    assert_eq!(
        (first["sub_tenant"].as_str(), first["status"].as_u64()),
        (Some("alice"), Some(200))
    );
    assert!(first["duration_ms"].is_u64() && first["time_ms"].is_u64());

    let alice = lines(&server.admin(&key, "GET", "/accounts/acme/functions/echo/logs?sub_tenant=alice", None));
    assert_eq!(alice.len(), 2);
    // The last line may have been recorded a moment ago: let a few ms pass.
    std::thread::sleep(Duration::from_millis(10));
    let recent = server.admin(&key, "GET", "/accounts/acme/functions/echo/logs?since=1ms", None);
    assert_eq!(lines(&recent).len(), 0, "nothing ended in the last millisecond");
    assert_eq!(
        server
            .admin(&key, "GET", "/accounts/acme/functions/echo/logs?since=soon", None)
            .status,
        400
    );
    // Another account sees nothing of them, not even that they exist.
    assert_eq!(
        server
            .admin(&other, "GET", "/accounts/acme/functions/echo/logs", None)
            .status,
        404
    );

    // The CLI prints them for people.
    let out = server.cli(&key, &["logs", "echo", "--sub-tenant", "bob"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("[bob]") && printed.contains("echo GET /b"),
        "{printed}"
    );
    assert!(!printed.contains("/a"), "{printed}");
}

#[test]
fn following_streams_new_lines_as_they_come() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({}));
    let (status, mut reader) = follow(&server, &key, "echo");
    assert_eq!(status, 200);
    let auth = bearer(&key);
    assert_eq!(server.get("/fn/acme/echo/followed", &auth).status, 200);
    let mut seen = String::new();
    while !seen.contains("echo GET /followed") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early: {seen}"
        );
        seen.push_str(&line);
    }
}

#[test]
fn the_log_of_a_function_is_bounded_and_says_what_it_dropped() {
    let server = Server::start_with(&["--function-log-bytes", "200"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
    let auth = bearer(&key);
    for n in 0..40 {
        let path = format!("/fn/acme/echo/{n:03}");
        assert_eq!(server.get(&path, &auth).status, 200);
    }
    let reply = read_until(&server, &key, "/accounts/acme/functions/echo/logs", |l| {
        l.last().is_some_and(|e| e["line"] == "echo GET /039")
    });
    let kept = lines(&reply);
    let bytes: usize = kept.iter().map(|e| e["line"].as_str().unwrap().len()).sum();
    assert!(bytes <= 200, "{bytes} bytes kept");
    assert_eq!(kept.last().unwrap()["line"], "echo GET /039", "the newest lines stay");
    let dropped: u64 = reply.header("x-stratus-dropped-lines").unwrap().parse().unwrap();
    assert_eq!(dropped as usize + kept.len(), 40);
}

#[test]
fn a_failed_call_keeps_what_it_printed() {
    let (server, key) = Server::with_function("hostile", HOSTILE_COMPONENT, json!({}));
    let reply = server.request(
        "GET",
        "/fn/acme/hostile/?do=panic",
        &[("authorization", &bearer(&key))],
        b"",
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    let id = reply.header("x-stratus-invocation-id").unwrap_or_default().to_string();
    let found = read_until(&server, &key, "/accounts/acme/functions/hostile/logs", |l| {
        !l.is_empty()
    });
    let found = lines(&found);
    let panic = found
        .iter()
        .find(|e| e["line"].as_str().is_some_and(|l| l.contains("asked to panic")))
        .unwrap_or_else(|| panic!("the panic message is not in the logs: {found:?}"));
    assert_eq!(panic["status"], 502);
    assert_eq!(panic["invocation_id"], id.as_str());
}

/// Opens `logs?follow=true` on a raw socket and reads the status line.
fn follow(server: &Server, key: &str, function: &str) -> (u16, BufReader<std::net::TcpStream>) {
    let authority = server.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /admin/v1/accounts/acme/functions/{function}/logs?follow=true HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).unwrap();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, reader)
}

#[test]
fn followers_leave_with_their_clients_and_are_bounded_per_account() {
    let server = Server::start_with(&["--max-log-followers-per-account", "2"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
    const FOLLOWING: &str = "stratus_log_followers";

    let (first, a) = follow(&server, &key, "echo");
    let (second, b) = follow(&server, &key, "echo");
    assert_eq!((first, second), (200, 200));
    assert_eq!(server.settle(FOLLOWING, |n| n == 2.0), 2.0);
    let (third, mut c) = follow(&server, &key, "echo");
    assert_eq!(third, 409, "a third follower of the account is refused");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut c, &mut rest);
    assert!(rest.contains("--max-log-followers-per-account"), "{rest}");

    // Clients that go away take their followers with them, with no line
    // printed in between to notice it by.
    drop((a, b));
    assert_eq!(
        server.settle(FOLLOWING, |n| n == 0.0),
        0.0,
        "followers outlived their clients"
    );
    for _ in 0..20 {
        let (status, reader) = follow(&server, &key, "echo");
        assert_eq!(status, 200);
        drop(reader);
        assert_eq!(server.settle(FOLLOWING, |n| n == 0.0), 0.0);
    }
}
