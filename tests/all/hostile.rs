//! SPEC §7: a guest that traps, loops, eats memory or floods the host fails
//! only its own call, and leaves nothing behind.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

pub(crate) fn settles_at(server: &Server, metric: &str, want: f64) -> bool {
    server.settle(metric, |n| n == want) == want
}

fn hostile(timeout_ms: u64) -> (Server, String) {
    let (server, key) = Server::with_function(
        "hostile",
        HOSTILE_COMPONENT,
        json!({ "timeout_ms": timeout_ms, "memory_mb": 64 }),
    );
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    (server, key)
}

#[test]
fn traps_fail_only_their_call_and_free_their_environment() {
    let (server, key) = hostile(5000);
    let auth = bearer(&key);
    for what in ["unreachable", "overflow", "panic", "resources"] {
        let reply = server.request(
            "GET",
            &format!("/fn/acme/hostile/?do={what}"),
            &[("authorization", &auth)],
            b"",
        );
        assert_eq!(reply.status, 502, "{what}: {}", reply.text());
        assert_eq!(reply.code(), "guest_error", "{what}");
        let hello = server.get("/fn/acme/hello/", &auth);
        assert_eq!(hello.status, 200, "after {what}");
    }
    assert!(settles_at(&server, "stratus_live_instances", 0.0), "a pool slot leaked");

    // A header flood stops at the host's field-size limit: the guest is
    // refused, the host goes on.
    let reply = server.request(
        "GET",
        "/fn/acme/hostile/?do=headers&n=40000",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(reply.text().contains("fields exceeds limit"), "{}", reply.text());
    assert_eq!(server.get("/fn/acme/hello/", &auth).status, 200);

    // One memory.fill over all the memory it may have.
    let reply = server.get("/fn/acme/hostile/?do=fill", &auth);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("filled "), "{}", reply.text());
    assert!(settles_at(&server, "stratus_live_instances", 0.0));
}

#[test]
fn runaway_guests_end_at_their_deadline_while_others_are_served() {
    let (server, key) = Server::with_function("busy", BUSY_COMPONENT, json!({ "timeout_ms": 1000 }));
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let auth = bearer(&key);
    std::thread::scope(|scope| {
        let runaways: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let started = Instant::now();
                    let reply = server.get("/fn/acme/busy/", &auth);
                    (reply.status, started.elapsed())
                })
            })
            .collect();
        let mut served = 0;
        let until = Instant::now() + Duration::from_millis(900);
        while Instant::now() < until {
            let hello = server.get("/fn/acme/hello/", &auth);
            assert_eq!(hello.status, 200, "{}", hello.text());
            served += 1;
        }
        assert!(served > 0);
        for runaway in runaways {
            let (status, took) = runaway.join().unwrap();
            assert_eq!(status, 504);
            // Timeout + one epoch tick + 1 s of slack for a loaded machine.
            assert!(took < Duration::from_millis(2100), "a runaway took {took:?}");
        }
    });
    assert!(settles_at(&server, "stratus_live_instances", 0.0));
}

#[test]
fn a_client_that_goes_away_ends_its_invocation() {
    let (server, key) = Server::with_function("busy", BUSY_COMPONENT, json!({ "timeout_ms": 60000 }));
    let authority = server.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "GET /fn/acme/busy/ HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    assert!(settles_at(&server, "stratus_live_instances", 1.0), "the call started");
    drop(stream);
    assert!(
        settles_at(&server, "stratus_live_instances", 0.0),
        "the spinning guest was stopped long before its 60 s deadline"
    );
}

#[test]
fn an_endless_body_ends_at_the_deadline() {
    let (server, key) = hostile(1000);
    let authority = server.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET /fn/acme/hostile/?do=body HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total > 4096, "the body streamed ({total} bytes)");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the body ended with the deadline"
    );
    assert!(settles_at(&server, "stratus_live_instances", 0.0));
    let auth = bearer(&key);
    assert_eq!(server.get("/fn/acme/hello/", &auth).status, 200);
}
