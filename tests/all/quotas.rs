//! SPEC §7: concurrency caps per sub-tenant and account, bounded queues,
//! 429 for a caller's own cap, 503 when the host itself is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

fn call_busy(server: &Server, key: &str, sub: Option<&str>, ms: u64) -> Reply {
    let auth = bearer(key);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(sub) = sub {
        headers.push(("x-stratus-sub-tenant", sub));
    }
    server.request("GET", &format!("/fn/acme/busy/?ms={ms}"), &headers, b"")
}

/// Runs `n` calls at once and returns their replies.
fn burst(server: &Arc<Server>, key: &str, sub: Option<&'static str>, n: usize, ms: u64) -> Vec<Reply> {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (server, key) = (server.clone(), key.to_string());
            std::thread::spawn(move || call_busy(&server, &key, sub, ms))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_sub_tenant_cap_of_n_runs_exactly_n_calls_at_once() {
    let server = Arc::new(Server::start_with(&["--queue-wait", "300ms"]));
    let key = server.create_account("acme");
    server.deploy(
        &key,
        "acme",
        "busy",
        BUSY_COMPONENT,
        json!({ "tenancy": "multi", "max_concurrency_per_sub_tenant": 2 }),
    );

    let sampler = {
        let server = server.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            server.metric("stratus_live_instances")
        })
    };
    let replies = burst(&server, &key, Some("x"), 6, 1000);
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok,
        2,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 4);
    for reply in refused {
        assert_eq!(reply.code(), "quota_exceeded");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert_eq!(sampler.join().unwrap(), 2.0, "exactly two environments ran at once");
    assert!(server.metric("stratus_quota_rejections_total{scope=\"sub_tenant\"}") >= 4.0);
}

#[test]
fn a_flooding_sub_tenant_does_not_hold_up_the_others() {
    let server = Arc::new(Server::start());
    let key = server.create_account("acme");
    server.deploy(
        &key,
        "acme",
        "busy",
        BUSY_COMPONENT,
        json!({ "tenancy": "multi", "max_concurrency_per_sub_tenant": 2 }),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..16)
        .map(|_| {
            let (server, key, stop) = (server.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(call_busy(&server, &key, Some("flood"), 200).status);
                }
                statuses
            })
        })
        .collect();
    // Wait until the flooder is past its cap and its queue is full.
    server.await_metric(
        "stratus_quota_rejections_total{scope=\"sub_tenant\"}",
        Duration::from_secs(30),
        |n| n >= 1.0,
        "the flood never reached its cap",
    );
    for _ in 0..5 {
        let reply = call_busy(&server, &key, Some("quiet"), 10);
        assert_eq!(reply.status, 200, "the quiet sub-tenant was refused: {}", reply.text());
    }
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = flooders.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(statuses.contains(&200) && statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // Nobody ever queued at the account level: the flood stayed in its own queue.
    assert_eq!(server.metric("stratus_queued_calls_total{scope=\"account\"}"), 0.0);
    assert!(server.metric("stratus_queued_calls_total{scope=\"sub_tenant\"}") >= 1.0);
    assert!(server.metric("stratus_queue_wait_seconds_count{scope=\"sub_tenant\"}") >= 1.0);
}

#[test]
fn an_account_cap_applies_to_calls_without_a_sub_tenant() {
    let server = Arc::new(Server::start_with(&[
        "--max-concurrency-per-account",
        "1",
        "--queue-wait",
        "200ms",
    ]));
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "busy", BUSY_COMPONENT, json!({}));
    let replies = burst(&server, &key, None, 3, 800);
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 429, 429]);
}

#[test]
fn a_full_host_answers_503_with_retry_after() {
    let server = Arc::new(Server::start_with(&["--pool-slots", "1", "--queue-wait", "200ms"]));
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "busy", BUSY_COMPONENT, json!({}));
    let replies = burst(&server, &key, None, 2, 800);
    let full: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        full.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(full[0].code(), "unavailable");
    assert_eq!(full[0].header("retry-after"), Some("1"));
    assert!(replies.iter().any(|r| r.status == 200));
}

#[test]
fn spinning_calls_wait_for_a_core_behind_another_account_and_still_end_at_their_deadline() {
    let server = Server::start();
    let noisy = server.create_account("noisy");
    server.deploy(&noisy, "noisy", "busy", BUSY_COMPONENT, json!({ "timeout_ms": 1500 }));
    let quiet = server.create_account("quiet");
    server.deploy(&quiet, "quiet", "busy", BUSY_COMPONENT, json!({}));
    // More spinning guests than the host has cores (it runs as many guests
    // at once as it has cores).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        let runaways: Vec<_> = (0..cores * 4)
            .map(|_| {
                scope.spawn(|| {
                    let started = std::time::Instant::now();
                    let reply = server.get("/fn/noisy/busy/", &bearer(&noisy));
                    (reply.status, started.elapsed())
                })
            })
            .collect();
        // Once some runaways queue for a core, the other account's calls
        // still go through.
        server.await_metric(
            "stratus_core_waits_total",
            Duration::from_secs(10),
            |n| n >= 1.0,
            "no call ever waited for a core",
        );
        for _ in 0..5 {
            let reply = server.get("/fn/quiet/busy/?ms=5", &bearer(&quiet));
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert!(reply.text().starts_with("spun "), "{}", reply.text());
        }
        for runaway in runaways {
            let (status, took) = runaway.join().unwrap();
            // Waiting for a core does not stop the deadline: each ends with
            // 504 at its 1.5 s, give or take a loaded machine.
            assert_eq!(status, 504);
            assert!(took < Duration::from_millis(3500), "a runaway took {took:?}");
        }
    });
    assert!(crate::hostile::settles_at(&server, "stratus_live_instances", 0.0));
}
