//! CLUSTER.md §6: a node killed, etcd stopped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Cluster, Etcd, within_5s};
use crate::harness::{HELLO_COMPONENT, OPERATOR_KEY, bearer};

#[test]
fn every_write_acknowledged_before_a_node_is_killed_is_there_afterwards() {
    let mut cluster = Cluster::start(2);
    let acknowledged = Mutex::new(Vec::new());
    let writing = cluster.nodes.remove(0);
    let survivor = cluster.node(0);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0.. {
                let name = format!("acct{i}");
                match writing.try_request(
                    "POST",
                    "/admin/v1/accounts",
                    &[
                        ("authorization", &bearer(OPERATOR_KEY)),
                        ("content-type", "application/json"),
                    ],
                    Some(json!({ "name": name })),
                ) {
                    Some(reply) if reply.status == 201 => acknowledged.lock().unwrap().push(name),
                    // Killed: what was not acknowledged may or may not be there.
                    _ => break,
                }
            }
        });
        // Kill -9 in the middle of the writes.
        within_5s("some writes were acknowledged", || {
            (acknowledged.lock().unwrap().len() >= 20).then_some(())
        });
        let killed = std::process::Command::new("kill")
            .args(["-9", &writing.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        writer.join().unwrap();
    });
    writing.kill();
    let acknowledged = acknowledged.into_inner().unwrap();
    let listed = survivor.admin(OPERATOR_KEY, "GET", "/accounts", None).json();
    let names: Vec<&str> = listed
        .as_array()
        .or_else(|| listed["accounts"].as_array())
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    for name in &acknowledged {
        assert!(names.contains(&name.as_str()), "{name} was acknowledged but is gone");
    }
}

#[test]
fn with_etcd_stopped_calls_keep_answering_writes_say_503_and_nothing_acknowledged_is_lost() {
    let mut etcd = Etcd::start();
    let cluster = Cluster::start_on(&etcd.endpoint, 2, &[]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let key = a.create_account("acme");
    a.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let token = a.admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "alice", "ttl_s": 600 })),
    );
    assert_eq!(token.status, 201, "{}", token.text());
    let token = token.json()["token"].as_str().unwrap().to_string();
    for node in [a, b] {
        within_5s("hello answers on both nodes", || {
            (node.get("/fn/acme/hello", &bearer(&key)).status == 200).then_some(())
        });
    }

    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for node in [a, b] {
            let (stop, failures, key, token) = (&stop, &failures, &key, &token);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for auth in [key, token] {
                        let reply = node.get("/fn/acme/hello", &bearer(auth));
                        if reply.status != 200 {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{} {}", reply.status, reply.text()));
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        etcd.stop();

        // Writes are refused, quickly and with a hint to retry.
        let started = Instant::now();
        let refused = b.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": "during" })));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a write took {:?}",
            started.elapsed()
        );
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(refused.header("retry-after").is_some());
        // Reads, introspection and the readiness probe keep working.
        assert_eq!(b.admin(&key, "GET", "/accounts/acme/functions", None).status, 200);
        let introspected = a.request(
            "POST",
            "/v1/introspect",
            &[
                ("authorization", &bearer(&key)),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            format!("token={token}").as_bytes(),
        );
        assert_eq!(introspected.status, 200, "{}", introspected.text());
        assert_eq!(introspected.json()["active"], true);
        assert_eq!(a.request("GET", "/readyz", &[], b"").status, 200);
        std::thread::sleep(Duration::from_secs(2));

        etcd.resume();
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        failures.into_inner().unwrap(),
        Vec::<String>::new(),
        "calls failed while etcd was down"
    );

    // Back: writes land and every node sees them.
    let after = within_5s("a write lands once etcd is back", || {
        let reply = a.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": "after" })));
        (reply.status == 201).then_some(reply)
    });
    let after_key = after.json()["key"].as_str().unwrap().to_string();
    within_5s("the other node's watch resumed", || {
        (b.admin(&after_key, "GET", "/accounts/after/functions", None).status == 200).then_some(())
    });
    assert_eq!(b.get("/fn/acme/hello", &bearer(&key)).status, 200);
}
