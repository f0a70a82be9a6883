//! Graceful shutdown: SIGTERM stops new connections, lets the calls in
//! flight finish within the grace period, flushes and exits 0.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

fn started(server: &Server, calls: f64) -> bool {
    server.settle("stratus_live_instances", |n| n >= calls) >= calls
}

#[test]
fn sigterm_lets_the_calls_in_flight_finish_then_exits_cleanly() {
    let (mut server, key) = Server::with_function("busy", BUSY_COMPONENT, json!({}));
    let auth = bearer(&key);
    let replies = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| server.try_request("GET", "/fn/acme/busy/?ms=1500", &[("authorization", &auth)], None))
            })
            .collect();
        assert!(started(&server, 4.0), "the calls are running");
        server.terminate();
        calls.into_iter().map(|c| c.join().unwrap()).collect::<Vec<_>>()
    });
    for reply in replies {
        let reply = reply.expect("a call accepted before the signal is answered");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("the host exits");
    assert!(status.success(), "{status:?}");
    assert!(
        server.log().contains("every call in flight finished"),
        "{}",
        server.log()
    );
}

#[test]
fn the_grace_period_bounds_how_long_shutdown_waits() {
    let mut server = Server::start_with(&["--shutdown-grace", "300ms"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "busy", BUSY_COMPONENT, json!({ "timeout_ms": 60000 }));
    let auth = bearer(&key);
    std::thread::scope(|scope| {
        let call = scope.spawn(|| server.try_request("GET", "/fn/acme/busy/", &[("authorization", &auth)], None));
        assert!(started(&server, 1.0));
        let signalled = Instant::now();
        server.terminate();
        let reply = call.join().unwrap().expect("a cut-off call is answered");
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert_eq!(reply.code(), "timeout");
        assert!(reply.text().contains("shutdown grace"), "{}", reply.text());
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "shutdown waited {:?}",
            signalled.elapsed()
        );
    });
    let status = server.wait_exit(Duration::from_secs(10)).expect("the host exits");
    assert!(status.success(), "{status:?}");
    assert!(server.log().contains("grace period is over"), "{}", server.log());
}
