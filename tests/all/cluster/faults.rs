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

/// `component` with a custom section of `size` bytes from `seed`: the same
/// code under another SHA-256.
fn padded(component: &[u8], seed: u8, size: usize) -> Vec<u8> {
    let name = b"pad";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend((0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    let mut out = component.to_vec();
    out.push(0);
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend(payload);
    out
}

#[test]
fn a_full_etcd_is_named_in_the_refusals_and_in_cluster_status() {
    // etcd with a tiny quota, and nodes told it is large: the bound that
    // would keep one account from filling it is out of the way.
    let etcd = Etcd::start_with(&["--quota-backend-bytes", "8388608"]);
    let cluster = Cluster::start_on(
        &etcd.endpoint,
        1,
        &[
            "--cluster-store-bytes",
            "68719476736",
            "--max-blob-bytes-per-account",
            "1073741824",
        ],
    );
    let node = cluster.node(0);
    let key = node.create_account("acme");
    let hello = std::fs::read(crate::harness::HELLO_COMPONENT).unwrap();
    let mut refused = None;
    for seed in 0..20u8 {
        let reply = node.upload(&key, "acme", &padded(&hello, seed, 1 << 20));
        if reply.status != 201 && reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("etcd never filled up");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("full"), "{}", refused.text());
    let status = node.admin(OPERATOR_KEY, "GET", "/cluster", None).json();
    assert_eq!(status["etcd"]["healthy"], false, "{status}");
    assert!(status["etcd"]["errors"].to_string().contains("NOSPACE"), "{status}");
    // Reads and calls of what is there keep working.
    assert_eq!(node.admin(&key, "GET", "/accounts/acme/functions", None).status, 200);
}

#[test]
fn a_node_whose_id_was_taken_while_it_was_cut_off_stops() {
    let mut cluster = Cluster::start(1);
    let paused = cluster.nodes.remove(0);
    let stop = |signal: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([signal, &paused.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    stop("-STOP");
    // Its lease runs out (5 s); a new node takes the id.
    let taker = cluster.spawn_as("n0", &[], Some(OPERATOR_KEY));
    stop("-CONT");
    let mut paused = paused;
    let exited = paused.wait_exit(Duration::from_secs(10));
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the node with a taken id kept running"
    );
    assert_eq!(taker.request("GET", "/readyz", &[], b"").status, 200);
}
