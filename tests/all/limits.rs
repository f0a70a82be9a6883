//! SPEC §7: a guest that loops, eats memory or gets too much input fails only
//! its own call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

#[test]
fn a_request_body_over_the_limit_is_refused_while_streaming() {
    let server = Server::start_with(&["--max-request-body", "65536"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({ "public": true }));

    // A declared length over the limit is refused on the headers alone: the
    // answer arrives although not one byte of the body was sent.
    let declared = raw_exchange(&server.url, "content-length: 200000\r\n", &[]);
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(declared.contains("payload_too_large"), "{declared}");

    // Without a length, the limit bites while the body streams in: nine 8 KiB
    // chunks (72 KiB) cross the 64 KiB limit, and the final chunk never comes.
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "y".repeat(8192));
    let chunks: Vec<&[u8]> = (0..9).map(|_| chunk.as_bytes()).collect();
    let chunked = raw_exchange(&server.url, "transfer-encoding: chunked\r\n", &chunks);
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("payload_too_large"), "{chunked}");

    let big = vec![b'x'; 1000];
    let small = server.request("POST", "/fn/acme/echo/", &[], &big);
    assert_eq!(small.status, 200, "the host keeps serving");
    assert_eq!(small.json()["body"].as_str().unwrap().len(), 1000);
}

/// Sends a POST head and some body bytes over a raw socket, then reads the
/// answer. HTTP clients insist on sending the whole body first, which is not
/// what a host refusing a body early must be tested with.
fn raw_exchange(base: &str, framing: &str, body: &[&[u8]]) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "POST /fn/acme/echo/ HTTP/1.1\r\nhost: {addr}\r\n{framing}connection: close\r\n\r\n"
    )
    .unwrap();
    for part in body {
        stream.write_all(part).unwrap();
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_spinning_guest_times_out_while_others_keep_answering() {
    let server = Arc::new(Server::start());
    let key = server.create_account("acme");
    server.deploy(
        &key,
        "acme",
        "busy",
        BUSY_COMPONENT,
        json!({ "public": true, "timeout_ms": 1500 }),
    );
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "public": true }));

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let background = {
        let (server, stop, served) = (server.clone(), stop.clone(), served.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let reply = server.request("GET", "/fn/acme/hello/", &[], b"");
                assert_eq!(reply.status, 200, "hello failed while a guest spun: {}", reply.text());
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let reply = server.request("GET", "/fn/acme/busy/", &[], b"");
                (reply.status, reply.code(), started.elapsed())
            })
        })
        .collect();
    for spinner in spinners {
        let (status, code, elapsed) = spinner.join().unwrap();
        assert_eq!(status, 504);
        assert_eq!(code, "timeout");
        assert!(elapsed < Duration::from_millis(1500 + 1000), "took {elapsed:?}");
        assert!(elapsed >= Duration::from_millis(1400), "ended early: {elapsed:?}");
    }
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    assert!(
        served.load(Ordering::Relaxed) >= 5,
        "only {} hello calls during the spin",
        served.load(Ordering::Relaxed)
    );

    let finite = server.request("GET", "/fn/acme/busy/?ms=20", &[], b"");
    assert_eq!(finite.status, 200);
    assert!(finite.text().starts_with("spun"));
}

#[test]
fn a_guest_that_eats_memory_fails_only_its_own_call() {
    let (server, key) = Server::with_function("hog", HOG_COMPONENT, json!({ "public": true, "memory_mb": 32 }));
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "public": true }));

    assert_eq!(server.request("GET", "/fn/acme/hello/", &[], b"").status, 200);
    let before = server.rss_kib();
    for _ in 0..3 {
        let reply = server.request("GET", "/fn/acme/hog/", &[], b"");
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert_eq!(reply.code(), "guest_error");
        assert_eq!(server.request("GET", "/fn/acme/hello/", &[], b"").status, 200);
    }
    // Eight at once: 256 MiB of guest memory asked for in all.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| assert_eq!(server.request("GET", "/fn/acme/hog/", &[], b"").status, 502));
        }
    });
    // The budget: a hog's memory is given back once its slot's decommit
    // batch is flushed (the next calls fill it), so the host ends up within
    // 48 MiB of where it started.
    for _ in 0..64 {
        assert_eq!(server.request("GET", "/fn/acme/hello/", &[], b"").status, 200);
    }
    let after = server.rss_kib();
    eprintln!("host RSS {before} KiB before the hogs, {after} KiB after");
    assert!(
        after < before + 48 * 1024,
        "host RSS grew from {before} KiB to {after} KiB"
    );
    // Every environment was given back.
    server.await_metric(
        "stratus_live_instances",
        Duration::from_secs(5),
        |n| n == 0.0,
        "environments leaked",
    );
}

#[test]
fn a_pool_of_twenty_thousand_slots_fits_the_address_space() {
    let server = Server::start_with(&["--pool-slots", "20000", "--warm-max-idle", "20000"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "hog", HOG_COMPONENT, json!({ "memory_mb": 16 }));
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let auth = bearer(&key);
    assert_eq!(server.get("/fn/acme/hello/", &auth).status, 200);
    // Bounds-checked memories still stop at their limit.
    assert_eq!(server.get("/fn/acme/hog/", &auth).status, 502);
    assert!(server.log().contains("large pool"), "{}", server.log());
}

#[test]
fn the_kv_limits_are_the_operators_to_set() {
    let server = Server::start_with(&["--kv-max-key-bytes", "3"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
    let reply = server.get("/fn/acme/counter/", &bearer(&key));
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("keys are at most 3 bytes"),
        "the counter's key `count` is over the limit: {}",
        reply.text()
    );
}
