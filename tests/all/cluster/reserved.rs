//! CLUSTER.md §5: reserved arcs. A reservation is split over the nodes of
//! its arc (placed by the elected leader), its calls go there through a
//! flood of unreserved ones, and lowering it keeps its partitions where
//! their warm environments are.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Cluster, FrontendProcess, within_5s};
use crate::harness::{COUNTER_COMPONENT, HELLO_COMPONENT, OPERATOR_KEY, bearer, call_url};

fn reserve(cluster: &Cluster, key: &str, function: &str, min: u32, target: u32) {
    let reply = cluster.node(0).admin(
        key,
        "PUT",
        &format!("/accounts/acme/functions/{function}/reservations/latest"),
        Some(json!({ "min": min, "target": target })),
    );
    assert!(reply.status == 200 || reply.status == 201, "{}", reply.text());
}

fn status(cluster: &Cluster) -> Value {
    cluster.node(1).admin(OPERATOR_KEY, "GET", "/cluster", None).json()
}

/// The placed reservation of `acme/function`, once the leader placed it.
fn placed(cluster: &Cluster, function: &str) -> Value {
    within_5s("the reservation is placed", || {
        status(cluster)["placement"]["reservations"]
            .as_array()?
            .iter()
            .find(|r| r["function"] == function)
            .cloned()
    })
}

/// The nodes of a placed reservation's arc.
fn arc_of(placement: &Value) -> Vec<String> {
    placement["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_reservation_is_split_over_its_arc_and_its_calls_find_it_through_a_flood() {
    let cluster = Cluster::start(3);
    let acme = cluster.node(0).create_account("acme");
    let noisy = cluster.node(0).create_account("noisy");
    cluster
        .node(0)
        .deploy(&acme, "acme", "hello", HELLO_COMPONENT, json!({ "tenancy": "multi" }));
    cluster
        .node(0)
        .deploy(&noisy, "noisy", "hello", HELLO_COMPONENT, json!({ "tenancy": "multi" }));
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));

    reserve(&cluster, &acme, "hello", 4, 4);
    let placement = placed(&cluster, "hello");
    let arc = arc_of(&placement);
    assert_eq!(arc.len(), 2, "an arc of the cluster's 2 nodes: {placement}");
    for share in placement["nodes"].as_array().unwrap() {
        assert_eq!(
            (share["min"].as_u64(), share["target"].as_u64()),
            (Some(2), Some(2)),
            "{placement}"
        );
    }
    // Each node keeps its share, and only the arc's nodes keep any.
    within_5s("every node keeps its share", || {
        let kept: Vec<f64> = (0..3)
            .map(|i| cluster.node(i).metric("stratus_reserved_instances"))
            .collect();
        let expected: Vec<f64> = (0..3)
            .map(|i| if arc.contains(&format!("n{i}")) { 2.0 } else { 0.0 })
            .collect();
        (kept == expected).then_some(())
    });
    // The operator sees it through any node (once that node's view of the
    // placement, read twice a second, has it), with each node's part of the
    // ring.
    let (shown, line) = within_5s("node 2 shows the placement", || {
        let shown = cluster.node(2).cli_ok(OPERATOR_KEY, &["cluster", "status"]);
        let line = shown.lines().find(|l| l.contains("acme/hello"))?.to_string();
        Some((shown, line))
    });
    assert!(shown.contains("RING"), "{shown}");
    assert!(
        arc.iter().all(|node| line.contains(&format!("{node} min 2 target 2"))),
        "{line}"
    );

    // The frontend reads the placement twice a second too.
    std::thread::sleep(Duration::from_secs(1));
    // Another account floods its unreserved function through the same
    // frontend; the reserved one's calls still go to its arc and find its
    // environments, never a 429 or 503.
    let stop = AtomicBool::new(false);
    let flooded = AtomicUsize::new(0);
    let hits_before = cluster.sum("stratus_reserved_hits_total");
    let (served, statuses) = std::thread::scope(|s| {
        for t in 0..8 {
            let (stop, flooded, frontend, noisy) = (&stop, &flooded, &frontend, &noisy);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    call_url(
                        "GET",
                        &format!("{}/fn/noisy/hello", frontend.url),
                        &[
                            ("authorization", &bearer(noisy)),
                            ("x-stratus-sub-tenant", &format!("f{t}-{i}")),
                        ],
                        b"",
                    );
                    flooded.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut statuses = Vec::new();
        let mut served = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        let mut i = 0;
        while Instant::now() < until {
            i += 1;
            let reply = call_url(
                "GET",
                &format!("{}/fn/acme/hello", frontend.url),
                &[
                    ("authorization", &bearer(&acme)),
                    ("x-stratus-sub-tenant", &format!("c{}", i % 16)),
                ],
                b"",
            );
            statuses.push(reply.status);
            served.push(reply.header("x-stratus-node").unwrap_or_default().to_string());
            // A steady client, not a flood of its own: its reservation is
            // topped up between calls.
            std::thread::sleep(Duration::from_millis(25));
        }
        stop.store(true, Ordering::Relaxed);
        (served, statuses)
    });
    let calls = statuses.len();
    assert!(
        flooded.load(Ordering::Relaxed) > calls,
        "the flood outnumbers the reserved calls"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(served.iter().all(|n| arc.contains(n)), "{served:?} outside {arc:?}");
    let hits = cluster.sum("stratus_reserved_hits_total") - hits_before;
    assert!(
        hits >= 0.9 * calls as f64,
        "{hits} of {calls} reserved calls found a reserved environment"
    );
}

/// Steady calls of `function` through `frontend`, one partition after the
/// other, until `stop`.
fn steady(frontend: &FrontendProcess, key: &str, function: &str, partitions: &[String], stop: &AtomicBool) -> usize {
    let mut failed = 0;
    for sub in partitions.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let reply = call_url(
            "POST",
            &format!("{}/fn/acme/{function}/", frontend.url),
            &[("authorization", &bearer(key)), ("x-stratus-sub-tenant", sub)],
            b"",
        );
        failed += usize::from(reply.status != 200);
        std::thread::sleep(Duration::from_millis(10));
    }
    failed
}

/// Reserves 8 environments of a fresh `--reuse warm` function, keeps 8
/// partitions busy through `frontend`, deletes the reservation and counts
/// the cold starts of the next 10 s.
fn cold_starts_after_reduction(cluster: &Cluster, key: &str, frontend: &FrontendProcess, function: &str) -> f64 {
    cluster.node(0).deploy(
        key,
        "acme",
        function,
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi", "reuse": "warm" }),
    );
    reserve(cluster, key, function, 8, 8);
    let placement = placed(cluster, function);
    let arc = arc_of(&placement);
    within_5s("the nodes keep the 8", || {
        (cluster.sum("stratus_reserved_instances") == 8.0).then_some(())
    });
    // The partitions a reduction can make cold: those whose place on the
    // frontends' ring is off the reserved arc (the others land on the same
    // node either way).
    let ids: Vec<String> = (0..cluster.nodes.len()).map(|i| format!("n{i}")).collect();
    let ring = stratus::bench::Ring::new(&ids, stratus::bench::VNODES);
    let partitions: Vec<String> = (0..)
        .map(|i| format!("p{i}"))
        .filter(|sub| {
            let home = ring.arc(format!("acme/{function}/{sub}").as_bytes(), 1)[0];
            !arc.iter().any(|n| n == home)
        })
        .take(8)
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let load = s.spawn(|| steady(frontend, key, function, &partitions, &stop));
        // Every partition has taken its environment and called it warm.
        std::thread::sleep(Duration::from_secs(2));
        let before = cluster.sum("stratus_cold_starts_total");
        let reply = cluster.node(0).admin(
            key,
            "DELETE",
            &format!("/accounts/acme/functions/{function}/reservations/latest"),
            None,
        );
        assert_eq!(reply.status, 204, "{}", reply.text());
        std::thread::sleep(Duration::from_secs(10));
        let cold = cluster.sum("stratus_cold_starts_total") - before;
        stop.store(true, Ordering::Relaxed);
        assert_eq!(load.join().unwrap(), 0, "no call failed");
        assert!(
            status(cluster)["placement"]["reservations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["function"] != function),
            "the reservation left the placement"
        );
        cold
    })
}

#[test]
fn a_reduced_reservation_keeps_its_partitions_on_their_warm_nodes_unlike_an_immediate_rehash() {
    let cluster = Cluster::start(3);
    let key = cluster.node(0).create_account("acme");
    let rehashing = FrontendProcess::start(&cluster.url, &["--rehash-at-once"]);
    let graceful = FrontendProcess::start(&cluster.url, &[]);
    for frontend in [&rehashing, &graceful] {
        within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    }
    let immediate = cold_starts_after_reduction(&cluster, &key, &rehashing, "rehashed");
    let kept = cold_starts_after_reduction(&cluster, &key, &graceful, "kept");
    assert!(
        immediate >= 4.0,
        "an immediate rehash moves the partitions: {immediate} cold starts"
    );
    assert!(
        kept <= immediate / 4.0,
        "{kept} cold starts after a graceful reduction, {immediate} after an immediate rehash"
    );
}

#[test]
fn a_lowered_reservation_leaves_its_partitions_on_the_warm_nodes_its_arc_dropped() {
    let (cluster, key) = super::frontends::counter_cluster(3);
    let frontend = FrontendProcess::start(&cluster.url, &[]);
    within_5s("the frontend sees the 3 nodes", || frontend.sees(3).then_some(()));
    reserve(&cluster, &key, "counter", 4, 6);
    let wide = placed(&cluster, "counter");
    assert_eq!(wide["nodes"].as_array().unwrap().len(), 2, "{wide}");
    within_5s("the nodes keep the 6", || {
        (cluster.sum("stratus_reserved_instances") == 6.0).then_some(())
    });
    // The frontend reads the placement twice a second too.
    std::thread::sleep(Duration::from_secs(1));
    let call = |sub: &str| {
        let reply = call_url(
            "POST",
            &format!("{}/fn/acme/counter/", frontend.url),
            &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", sub)],
            b"",
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.header("x-stratus-node").unwrap().to_string()
    };
    let partitions: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    let before: Vec<String> = partitions.iter().map(|p| call(p)).collect();
    assert_eq!(partitions.iter().map(|p| call(p)).collect::<Vec<_>>(), before);

    // Down to one environment: an arc of one node.
    reserve(&cluster, &key, "counter", 1, 1);
    let narrow = within_5s("the arc narrows", || {
        let placed = placed(&cluster, "counter");
        (placed["nodes"].as_array()?.len() == 1).then_some(placed)
    });
    let left = narrow["nodes"][0]["node"].as_str().unwrap().to_string();
    assert!(
        before.iter().any(|node| *node != left),
        "some partitions were on the node the arc dropped: {before:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let cold = cluster.sum("stratus_cold_starts_total");
    let after: Vec<String> = partitions.iter().map(|p| call(p)).collect();
    assert_eq!(after, before, "every partition stays where its environment is warm");
    assert_eq!(cluster.sum("stratus_cold_starts_total"), cold, "no cold start");
}

#[test]
fn the_cluster_reserves_what_its_nodes_hold_together_and_no_node_keeps_more_than_its_own() {
    let cluster = Cluster::start_with(3, &["--max-reserved-slots", "4"]);
    let key = cluster.node(0).create_account("acme");
    cluster
        .node(0)
        .deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "tenancy": "multi" }));
    // One node's 4, but the three nodes' 12 together (once the node asked
    // has seen the others join).
    within_5s("10 are accepted", || {
        let reply = cluster.node(0).admin(
            &key,
            "PUT",
            "/accounts/acme/functions/hello/reservations/latest",
            Some(json!({ "min": 10, "target": 10 })),
        );
        (reply.status == 201).then_some(())
    });
    let reply = cluster.node(0).admin(
        &key,
        "PUT",
        "/accounts/acme/functions/hello/reservations/1",
        Some(json!({ "min": 1, "target": 3 })),
    );
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("12 environments on the cluster's 3 live nodes"),
        "{}",
        reply.text()
    );
    // Its arc of 2 would take 5 each; each keeps its own 4.
    placed(&cluster, "hello");
    within_5s("each arc node keeps its ceiling", || {
        let kept: Vec<f64> = (0..3)
            .map(|i| cluster.node(i).metric("stratus_reserved_instances"))
            .collect();
        (kept.iter().filter(|k| **k == 4.0).count() == 2 && kept.iter().sum::<f64>() == 8.0).then_some(())
    });
}
