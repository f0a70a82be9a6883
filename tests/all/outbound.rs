//! SPEC §7, §8: outbound HTTP only to listed hosts, and never to loopback or
//! private addresses unless the operator exempted them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::credentials::encode;
use crate::harness::*;

fn counting_upstream() -> (Upstream, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let upstream = Upstream::start(move |_, _, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        (200, json!({ "reached": true }))
    });
    (upstream, hits)
}

fn fetch(server: &Server, key: &str, url: &str) -> Reply {
    let path = format!("/fn/acme/fetch/?url={}", encode(url));
    server.request("GET", &path, &[("authorization", &bearer(key))], b"")
}

#[test]
fn loopback_and_private_addresses_are_refused_by_default() {
    let (upstream, hits) = counting_upstream();
    let port = upstream.authority.rsplit(':').next().unwrap().to_string();
    let server = Server::start();
    let key = server.create_account("acme");
    let localhost = format!("localhost:{port}");
    server.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": [upstream.authority, localhost, "169.254.169.254"] }),
    );

    for url in [
        format!("{}/", upstream.origin),
        format!("http://{localhost}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let reply = fetch(&server, &key, &url);
        assert_eq!(reply.status, 502, "{url}: {}", reply.text());
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .contains("loopback, private or link-local address"),
            "{url}: {}",
            reply.text()
        );
    }
    // Not listed at all: denied before any lookup.
    let reply = fetch(&server, &key, &format!("http://127.0.0.2:{port}/"));
    assert_eq!(reply.status, 502);
    assert!(
        reply.text().contains("not in this function's allow-list"),
        "{}",
        reply.text()
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the upstream must not have been reached"
    );
}

#[test]
fn the_operator_may_exempt_a_private_address() {
    let (upstream, hits) = counting_upstream();
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "fetch", FETCH_COMPONENT, json!({}));

    // Exempt, but the version does not list it: still denied.
    let reply = fetch(&server, &key, &format!("{}/", upstream.origin));
    assert_eq!(reply.status, 502);
    assert!(
        reply.text().contains("not in this function's allow-list"),
        "{}",
        reply.text()
    );

    server.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": [upstream.authority] }),
    );
    let reply = fetch(&server, &key, &format!("{}/", upstream.origin));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn an_upstream_that_never_answers_cannot_hold_a_call_past_its_deadline() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || listener.incoming().take(1).map(|c| c.unwrap()).collect::<Vec<_>>());
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let key = server.create_account("acme");
    server.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": [authority], "timeout_ms": 1000 }),
    );
    let started = std::time::Instant::now();
    let reply = fetch(&server, &key, &format!("http://{authority}/"));
    assert!(reply.status == 502 || reply.status == 504, "{}", reply.text());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(held);
    let hello = server.request("GET", "/healthz", &[], b"");
    assert_eq!(hello.status, 200);
}

/// A name is resolved once: the host checks the addresses and, for plain
/// HTTP, connects to the one it checked (so a name that changes its answer
/// afterwards cannot redirect the call), keeping the name in `Host`. Whether
/// the connection used the checked address rather than a second lookup is
/// covered by `runtime::state` unit tests; this shows the rewrite keeps the
/// request intact end to end.
#[test]
fn a_named_destination_keeps_its_host_header_when_pinned_to_the_checked_address() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let head = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        );
        String::from_utf8_lossy(&seen).to_lowercase()
    });
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let key = server.create_account("acme");
    let named = format!("localhost:{port}");
    server.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": [named] }),
    );
    let reply = fetch(&server, &key, &format!("http://{named}/pinned?x=1"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], 200);
    let head = head.join().unwrap();
    assert!(head.starts_with("get /pinned?x=1 http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: localhost:{port}\r\n")), "{head}");
}

#[test]
fn addresses_that_embed_or_stand_for_private_ones_are_refused() {
    let server = Server::start();
    let key = server.create_account("acme");
    let hosts = [
        "[::127.0.0.1]",
        "[::ffff:0:127.0.0.1]",
        "[::ffff:0:a00:1]",
        "[2001::1]",
        "[fec0::1]",
        "[100::1]",
        "[64:ff9b::a00:1]",
        "[64:ff9b:1::1]",
    ];
    server.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": hosts }),
    );
    for host in hosts {
        let url = format!("http://{host}/");
        let reply = fetch(&server, &key, &url);
        assert_eq!(reply.status, 502, "{url}: {}", reply.text());
        assert!(
            reply.text().contains("loopback, private or link-local address"),
            "{url}: {}",
            reply.text()
        );
    }
}
