//! CLUSTER.md §5–6: frontends on a consistent hash ring.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Cluster, Etcd, FrontendProcess, within_5s};
use crate::harness::{COUNTER_COMPONENT, HELLO_COMPONENT, bearer, call_url};

/// Calls `counter` through `frontend` as thread `t` (its own 30 sub-tenants)
/// until `stop`, counting the calls and recording each failure.
fn call_loop(
    frontend: &FrontendProcess,
    key: &str,
    t: usize,
    stop: &AtomicBool,
    failures: &Mutex<Vec<(Instant, String)>>,
    calls: &AtomicUsize,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let reply = call_url(
            "POST",
            &format!("{}/fn/acme/counter/", frontend.url),
            &[
                ("authorization", &bearer(key)),
                ("x-stratus-sub-tenant", &format!("t{t}-{}", i % 30)),
            ],
            b"",
        );
        calls.fetch_add(1, Ordering::Relaxed);
        if reply.status != 200 {
            failures
                .lock()
                .unwrap()
                .push((Instant::now(), format!("{} {}", reply.status, reply.text())));
        }
    }
}

/// `nodes` nodes with `counter` deployed multi-tenant and warm; the key.
pub(super) fn counter_cluster(nodes: usize) -> (Cluster, String) {
    let cluster = Cluster::start(nodes);
    let key = cluster.node(0).create_account("acme");
    cluster.node(0).deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi", "reuse": "warm" }),
    );
    (cluster, key)
}

#[test]
fn through_two_frontends_partitions_stay_warm_on_stable_nodes_spread_over_all() {
    let (cluster, key) = counter_cluster(3);
    let frontends = [
        FrontendProcess::start(&cluster.url, &[]),
        FrontendProcess::start(&cluster.url, &[]),
    ];
    for frontend in &frontends {
        within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    }
    let call = |round: usize, sub: usize| {
        let frontend = &frontends[(round + sub) % 2];
        call_url(
            "POST",
            &format!("{}/fn/acme/counter/", frontend.url),
            &[
                ("authorization", &bearer(&key)),
                ("x-stratus-sub-tenant", &format!("s{sub}")),
            ],
            b"",
        )
    };
    // Each partition's first call, then rounds through both frontends.
    let mut nodes_of: HashMap<usize, HashSet<String>> = HashMap::new();
    for sub in 0..200 {
        let reply = call(0, sub);
        assert_eq!(reply.status, 200, "{}", reply.text());
        nodes_of
            .entry(sub)
            .or_default()
            .insert(reply.header("x-stratus-node").unwrap().to_string());
    }
    let hits_before = cluster.sum("stratus_warm_hits_total");
    let colds_before = cluster.sum("stratus_cold_starts_total");
    let rounds = 3;
    for round in 1..=rounds {
        for sub in 0..200 {
            let reply = call(round, sub);
            assert_eq!(reply.status, 200, "{}", reply.text());
            nodes_of
                .entry(sub)
                .or_default()
                .insert(reply.header("x-stratus-node").unwrap().to_string());
        }
    }
    let calls = (rounds * 200) as f64;
    let hits = cluster.sum("stratus_warm_hits_total") - hits_before;
    let colds = cluster.sum("stratus_cold_starts_total") - colds_before;
    assert!(hits / calls >= 0.99, "{hits} warm hits of {calls} calls ({colds} cold)");
    // Each partition on one node; each node with at least 20 % of them.
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for (sub, nodes) in &nodes_of {
        assert_eq!(nodes.len(), 1, "partition s{sub} went to {nodes:?}");
        *per_node.entry(nodes.iter().next().unwrap().clone()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    for (node, partitions) in &per_node {
        assert!(
            *partitions >= 40,
            "node {node} serves only {partitions} of 200 partitions: {per_node:?}"
        );
    }
}

#[test]
fn a_node_killed_under_load_fails_only_its_calls_in_flight_and_is_avoided_within_a_second() {
    let (mut cluster, key) = counter_cluster(3);
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    let victim = cluster.nodes.remove(1);
    let concurrency = 6;
    let stop = AtomicBool::new(false);
    let killed_at: Mutex<Option<Instant>> = Mutex::new(None);
    let failures: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());
    let calls = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..concurrency {
            let (stop, failures, calls, key, frontend) = (&stop, &failures, &calls, &key, &frontend);
            scope.spawn(move || call_loop(frontend, key, t, stop, failures, calls));
        }
        std::thread::sleep(Duration::from_millis(1500));
        *killed_at.lock().unwrap() = Some(Instant::now());
        assert!(
            std::process::Command::new("kill")
                .args(["-9", &victim.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.len() <= concurrency,
        "{} calls failed, more than the {concurrency} that can have been in flight on the killed node: {failures:?}",
        failures.len()
    );
    // The frontend stopped choosing it within a second: no failure later.
    let killed = killed_at.into_inner().unwrap().unwrap();
    for (at, _) in &failures {
        assert!(
            *at - killed < Duration::from_secs(1),
            "a call failed {:?} after the kill",
            *at - killed
        );
    }
    // And the calls after that all went to the other nodes.
    let reply = call_url(
        "POST",
        &format!("{}/fn/acme/counter/", frontend.url),
        &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "after")],
        b"",
    );
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("x-stratus-node"), Some("n1"));
    drop(victim);
}

#[test]
fn calls_keep_answering_through_frontends_while_etcd_is_down() {
    let mut etcd = Etcd::start();
    let cluster = Cluster::start_on(&etcd.endpoint, 2, &[]);
    let key = cluster.node(0).create_account("acme");
    cluster
        .node(0)
        .deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the nodes", || frontend.sees(2).then_some(()));
    etcd.stop();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let reply = call_url(
            "GET",
            &format!("{}/fn/acme/hello/", frontend.url),
            &[("authorization", &bearer(&key))],
            b"",
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    etcd.resume();
}

#[test]
fn a_node_stopped_with_sigterm_under_load_fails_no_call() {
    let (mut cluster, key) = counter_cluster(3);
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    let stopping = cluster.nodes.remove(2);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());
    let calls = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (stop, failures, calls, key, frontend) = (&stop, &failures, &calls, &key, &frontend);
            scope.spawn(move || call_loop(frontend, key, t, stop, failures, calls));
        }
        std::thread::sleep(Duration::from_millis(1000));
        stopping.terminate();
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.into_inner() > 100);
    assert_eq!(failures.into_inner().unwrap(), Vec::<(Instant, String)>::new());
}

#[test]
fn a_key_created_through_one_frontend_calls_at_once_through_the_other() {
    let cluster = Cluster::start(3);
    let key = cluster.node(0).create_account("acme");
    cluster
        .node(0)
        .deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let frontends = [
        FrontendProcess::start(&cluster.url, &[]),
        FrontendProcess::start(&cluster.url, &[]),
    ];
    for frontend in &frontends {
        within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    }
    for _ in 0..20 {
        let created = call_url(
            "POST",
            &format!("{}/admin/v1/accounts/acme/keys", frontends[0].url),
            &[("authorization", &bearer(&key))],
            b"",
        );
        assert_eq!(created.status, 201, "{}", created.text());
        assert!(
            created
                .header("x-stratus-revision")
                .is_some_and(|r| r.parse::<u64>().is_ok()),
            "a write answer carries its revision"
        );
        let fresh = created.json()["key"].as_str().unwrap().to_string();
        let call = call_url(
            "GET",
            &format!("{}/fn/acme/hello/", frontends[1].url),
            &[("authorization", &bearer(&fresh))],
            b"",
        );
        assert_eq!(
            call.status,
            200,
            "a key acknowledged through one frontend: {}",
            call.text()
        );
        let id = created.json()["id"].as_str().unwrap().to_string();
        let revoked = call_url(
            "DELETE",
            &format!("{}/admin/v1/accounts/acme/keys/{id}", frontends[1].url),
            &[("authorization", &bearer(&key))],
            b"",
        );
        assert_eq!(revoked.status, 204);
    }
}

#[test]
fn a_request_the_frontend_cannot_forward_is_refused_there_and_marks_no_node_down() {
    use std::io::{Read as _, Write as _};
    let cluster = Cluster::start(2);
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the nodes", || frontend.sees(2).then_some(()));
    let authority = frontend.url.strip_prefix("http://").unwrap().to_string();
    for target in ["*", "http://elsewhere/fn/acme/hello/"] {
        let mut stream = std::net::TcpStream::connect(&authority).unwrap();
        write!(
            stream,
            "OPTIONS {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
    }
    assert!(frontend.sees(2), "no node was marked down");
    let metrics = call_url("GET", &format!("{}/metrics", frontend.url), &[], b"").text();
    assert!(!metrics.contains("stratus_frontend_skipped_total{"), "{metrics}");
}

#[test]
fn an_invocation_token_goes_to_its_node_only_when_its_signature_holds() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let cluster = Cluster::start_with(3, &["--allow-private-outbound", "127.0.0.1"]);
    let key = cluster.node(0).create_account("acme");
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    // A name the ring puts off n0, where the token is minted, so that
    // reaching n0 says the token was followed.
    let ids: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
    let ring = stratus::bench::Ring::new(&ids, stratus::bench::VNODES);
    let name = (0..)
        .map(|i| format!("whoami{i}"))
        .find(|name| ring.arc(format!("acme/{name}").as_bytes(), 1)[0] != "n0")
        .unwrap();
    cluster
        .node(0)
        .deploy(&key, "acme", &name, crate::harness::WHOAMI_COMPONENT, json!({}));
    // Where the ring puts it: a forged token must not move it.
    let ring_node = call_url(
        "GET",
        &format!("{}/fn/acme/{name}/", frontend.url),
        &[("authorization", &bearer(&key))],
        b"",
    )
    .header("x-stratus-node")
    .unwrap()
    .to_string();
    assert_ne!(ring_node, "n0");
    let forged_node = ["n1", "n2"].into_iter().find(|n| *n != ring_node).unwrap();

    // While `fetch` runs on n0, its upstream calls whoami through the
    // frontend with the invocation token it was given, and with a copy
    // whose `node` claim was changed (so its signature no longer holds).
    let via = frontend.url.clone();
    let called = name.clone();
    let upstream = crate::harness::Upstream::start(move |_origin, _path, auth| {
        let name = &called;
        let token = auth
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let node_of = |token: &str| {
            call_url(
                "GET",
                &format!("{via}/fn/acme/{name}/"),
                &[("authorization", &format!("Bearer {token}"))],
                b"",
            )
            .header("x-stratus-node")
            .map(str::to_string)
        };
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["node"] = json!(forged_node);
        let forged = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
        (200, json!({ "genuine": node_of(&token), "forged": node_of(&forged) }))
    });
    cluster.node(0).deploy(
        &key,
        "acme",
        "fetch",
        crate::harness::FETCH_COMPONENT,
        json!({ "allow_outbound": [upstream.authority], "timeout_ms": 10_000 }),
    );
    let reply = cluster.node(0).get(
        &format!("/fn/acme/fetch/?url={}", crate::credentials::encode(&upstream.origin)),
        &bearer(&key),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: serde_json::Value = serde_json::from_str(reply.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["genuine"], "n0", "a verified token goes to its node: {body}");
    assert_eq!(
        body["forged"],
        ring_node.as_str(),
        "a forged one goes where the ring says: {body}"
    );
}

#[test]
fn a_client_that_breaks_off_its_body_is_not_counted_against_the_node() {
    use std::io::Write as _;
    let (cluster, key) = counter_cluster(2);
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the 2 nodes", || frontend.sees(2).then_some(()));
    let authority = frontend.url.trim_start_matches("http://").to_string();
    for _ in 0..20 {
        let mut stream = std::net::TcpStream::connect(&authority).unwrap();
        write!(
            stream,
            "POST /fn/acme/counter/ HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\nx-stratus-sub-tenant: a\r\ncontent-length: 100000\r\n\r\nsome"
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(stream);
    }
    let metric = |name: &str| -> f64 {
        call_url("GET", &format!("{}/metrics", frontend.url), &[], b"")
            .text()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    within_5s("the aborts are counted as the client's", || {
        (metric("stratus_frontend_client_aborted_total") > 0.0).then_some(())
    });
    assert_eq!(metric("stratus_frontend_failed_total"), 0.0, "no node is blamed");
    let reply = call_url(
        "POST",
        &format!("{}/fn/acme/counter/", frontend.url),
        &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "a")],
        b"",
    );
    assert_eq!(reply.status, 200, "the nodes still serve: {}", reply.text());
}

#[test]
fn a_frontend_started_before_any_node_waits_for_the_first_one() {
    let mut cluster = Cluster::start(0);
    let url = cluster.url.clone();
    let started = std::thread::spawn(move || FrontendProcess::start(&url, &[]));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!started.is_finished(), "no settings yet: the frontend waits");
    let node = cluster.spawn(&[], Some(crate::harness::OPERATOR_KEY));
    let frontend = started.join().unwrap();
    within_5s("the frontend sees the node", || frontend.sees(1).then_some(()));
    let key = node.create_account("acme");
    node.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let reply = call_url(
        "GET",
        &format!("{}/fn/acme/hello/", frontend.url),
        &[("authorization", &bearer(&key))],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}
