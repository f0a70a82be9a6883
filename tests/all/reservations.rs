//! SPEC §7, §11: reservations keep environments instantiated, unbound until
//! a call takes one.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn reserve(server: &Server, key: &str, function: &str, qualifier: &str, body: Value) -> Reply {
    server.admin(
        key,
        "PUT",
        &format!("/accounts/acme/functions/{function}/reservations/{qualifier}"),
        Some(body),
    )
}

const RESERVED: &str = "stratus_reserved_instances";
const HITS: &str = "stratus_reserved_hits_total";

#[test]
fn reserved_environments_are_ready_taken_first_and_replaced() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    let reply = reserve(&server, &key, "hello", "latest", json!({ "min": 2, "target": 4 }));
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        server.settle(RESERVED, |n| n == 4.0),
        4.0,
        "min at once, then up to target"
    );
    assert_eq!(server.metric("stratus_live_instances"), 4.0);

    let auth = bearer(&key);
    let reply = server.get("/fn/acme/hello/", &auth);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.metric(HITS), 1.0, "the call took a reserved environment");
    assert_eq!(
        server.settle(RESERVED, |n| n == 4.0),
        4.0,
        "the single-use one was replaced"
    );

    // Invalid sizes are refused.
    for (body, status) in [
        (json!({ "min": 3, "target": 2 }), 400),
        (json!({ "min": 1, "target": 100000 }), 400),
        (json!({ "min": 1 }), 400),
    ] {
        assert_eq!(
            reserve(&server, &key, "hello", "latest", body.clone()).status,
            status,
            "{body}"
        );
    }
    assert_eq!(
        reserve(&server, &key, "nope", "latest", json!({ "min": 1, "target": 1 })).status,
        404
    );
    assert_eq!(
        reserve(&server, &key, "hello", "9", json!({ "min": 1, "target": 1 })).status,
        404
    );
}

#[test]
fn a_reservation_for_a_sub_tenant_serves_only_it_and_binds_to_the_caller() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({ "reuse": "warm" }));
    let reply = reserve(
        &server,
        &key,
        "counter",
        "latest",
        json!({ "min": 1, "target": 1, "sub_tenant": "alice" }),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(server.settle(RESERVED, |n| n == 1.0), 1.0);
    let auth = bearer(&key);
    let call = |sub: &str| {
        server
            .request(
                "GET",
                "/fn/acme/counter/",
                &[("authorization", &auth), ("x-stratus-sub-tenant", sub)],
                b"",
            )
            .json()
    };
    assert_eq!(call("bob"), json!({ "memory": 1, "kv": 1 }));
    assert_eq!(server.metric(HITS), 0.0, "bob's call does not take alice's environment");
    assert_eq!(call("alice"), json!({ "memory": 1, "kv": 1 }));
    assert_eq!(server.metric(HITS), 1.0);
    // Bound to alice's partition now: warm reuse continues there.
    assert_eq!(call("alice"), json!({ "memory": 2, "kv": 2 }));
    assert_eq!(call("bob"), json!({ "memory": 2, "kv": 2 }));
    assert_eq!(
        server.settle(RESERVED, |n| n == 1.0),
        1.0,
        "topped up for the next call"
    );
}

#[test]
fn reserved_environments_outlive_the_idle_ttl() {
    let server = Server::start_with(&["--warm-idle-ttl", "1s"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "reuse": "warm" }));
    assert_eq!(
        reserve(&server, &key, "hello", "1", json!({ "min": 2, "target": 2 })).status,
        201
    );
    assert_eq!(server.settle(RESERVED, |n| n == 2.0), 2.0);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.metric(RESERVED), 2.0, "an idle TTL of 1 s did not take them");
    assert_eq!(server.metric("stratus_live_instances"), 2.0);
}

#[test]
fn deleting_a_reservation_never_fails_a_call_in_flight() {
    let (server, key) = Server::with_function("busy", BUSY_COMPONENT, json!({}));
    assert_eq!(
        reserve(&server, &key, "busy", "latest", json!({ "min": 3, "target": 3 })).status,
        201
    );
    assert_eq!(server.settle(RESERVED, |n| n == 3.0), 3.0);
    let auth = bearer(&key);
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| server.get("/fn/acme/busy/?ms=800", &auth)))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let lowered = reserve(&server, &key, "busy", "latest", json!({ "min": 0, "target": 1 }));
        assert_eq!(lowered.status, 200, "{}", lowered.text());
        let deleted = server.admin(
            &key,
            "DELETE",
            "/accounts/acme/functions/busy/reservations/latest",
            None,
        );
        assert_eq!(deleted.status, 204, "{}", deleted.text());
        for call in calls {
            let reply = call.join().unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    });
    assert!(server.metric(HITS) >= 1.0);
    assert_eq!(server.settle(RESERVED, |n| n == 0.0), 0.0);
    assert_eq!(
        server.settle("stratus_live_instances", |n| n == 0.0),
        0.0,
        "every slot came back"
    );
}

#[test]
fn min_is_not_held_to_the_instantiation_rate_but_the_rest_is() {
    let server = Server::start_with(&["--max-instantiations-per-second", "0.1"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    assert_eq!(
        reserve(&server, &key, "hello", "latest", json!({ "min": 3, "target": 8 })).status,
        201
    );
    assert!(
        server.settle(RESERVED, |n| n >= 3.0) >= 3.0,
        "min at once despite 0.1/s"
    );
    std::thread::sleep(Duration::from_millis(1500));
    // One token to start with, then one every ten seconds.
    assert!(server.metric(RESERVED) <= 4.0, "{} reserved", server.metric(RESERVED));
}

#[test]
fn the_cli_manages_reservations() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    let cli = |args: &[&str]| server.cli_ok(&key, args);
    cli(&["reserve", "hello", "--min", "1", "--target", "2"]);
    assert!(cli(&["reserve", "list"]).contains("hello:latest"));
    assert_eq!(server.settle(RESERVED, |n| n == 2.0), 2.0);
    cli(&["reserve", "delete", "hello"]);
    assert_eq!(server.settle(RESERVED, |n| n == 0.0), 0.0);
    let listed: Value = serde_json::from_str(&cli(&["reserve", "list", "--json"])).unwrap();
    assert_eq!(listed["reservations"], json!([]));
}
