//! SPEC §6 and §10: uploads, validation, deploys and versions.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// A component importing an interface no host provides.
fn component_with_unknown_import() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "acme:ledger/accounts@1.0.0" (instance))
            (import "wasi:keyvalue/store@0.2.0-draft" (instance))
        )"#,
    )
    .unwrap()
}

fn functions_of(server: &Server, key: &str, account: &str) -> Vec<serde_json::Value> {
    let reply = server.admin(key, "GET", &format!("/accounts/{account}/functions"), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["functions"].as_array().unwrap().clone()
}

#[test]
fn a_file_that_is_not_a_component_is_refused_and_nothing_is_stored() {
    let server = Server::start();
    let key = server.create_account("acme");

    for bytes in [b"definitely not wasm".to_vec(), b"\0asm\x01\0\0\0".to_vec()] {
        let reply = server.upload(&key, "acme", &bytes);
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert_eq!(reply.code(), "invalid_component");
        // Nothing stored: a deploy naming those bytes finds no blob.
        let deploy = server.admin(
            &key,
            "POST",
            "/accounts/acme/functions/f/versions",
            Some(json!({ "blob": sha256(&bytes) })),
        );
        assert_eq!(deploy.status, 404, "{}", deploy.text());
    }
    assert!(functions_of(&server, &key, "acme").is_empty());
}

#[test]
fn unknown_imports_are_listed_and_nothing_is_stored() {
    let server = Server::start();
    let key = server.create_account("acme");
    let bytes = component_with_unknown_import();

    let reply = server.upload(&key, "acme", &bytes);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.code(), "unknown_imports");
    let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("acme:ledger/accounts@1.0.0"), "{message}");
    assert!(message.contains("wasi:keyvalue/store@0.2.0-draft"), "{message}");
    assert_eq!(reply.json()["error"]["imports"].as_array().unwrap().len(), 2);

    let deploy = server.admin(
        &key,
        "POST",
        "/accounts/acme/functions/f/versions",
        Some(json!({ "blob": sha256(&bytes) })),
    );
    assert_eq!(deploy.status, 404);
    assert!(functions_of(&server, &key, "acme").is_empty());
}

#[test]
fn uploads_are_content_addressed_and_idempotent() {
    let server = Server::start();
    let key = server.create_account("acme");
    let bytes = std::fs::read(HELLO_COMPONENT).unwrap();

    let first = server.upload(&key, "acme", &bytes);
    assert_eq!(first.status, 201, "{}", first.text());
    let second = server.upload(&key, "acme", &bytes);
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["created"], false);

    let wrong = server.request(
        "PUT",
        &format!("/admin/v1/accounts/acme/blobs/{}", "0".repeat(64)),
        &[("authorization", &bearer(&key))],
        &bytes,
    );
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.code(), "bad_request");
}

#[test]
fn versions_are_numbered_and_latest_moves_after_compiling() {
    let server = Server::start();
    let key = server.create_account("acme");
    let v1 = server.deploy(&key, "acme", "svc", HELLO_COMPONENT, json!({ "public": true }));
    assert_eq!(v1["version"], 1);
    assert!(v1["compile_ms"].is_u64());
    assert_eq!(v1["sha256"], sha256(&std::fs::read(HELLO_COMPONENT).unwrap()));

    // Deploy without waiting: 202 now, latest moves once compiled.
    let bytes = std::fs::read(ECHO_COMPONENT).unwrap();
    assert!(server.upload(&key, "acme", &bytes).status < 300);
    let accepted = server.admin(
        &key,
        "POST",
        "/accounts/acme/functions/svc/versions?wait=false",
        Some(json!({ "blob": sha256(&bytes), "public": true })),
    );
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert_eq!(accepted.json()["version"], 2);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = server.request("GET", "/fn/acme/svc/", &[], b"");
        if reply.header("x-stratus-version") == Some("2") {
            assert!(reply.text().contains("\"method\""), "version 2 is echo");
            break;
        }
        assert_eq!(
            reply.text(),
            "hello from stratus",
            "until version 2 is ready, version 1 serves"
        );
        assert!(Instant::now() < deadline, "version 2 never became latest");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Version 1 stays invocable by number.
    assert_eq!(
        server.request("GET", "/fn/acme/svc:1/", &[], b"").text(),
        "hello from stratus"
    );

    let versions = server
        .admin(&key, "GET", "/accounts/acme/functions/svc/versions", None)
        .json();
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().all(|v| v["state"] == "ready"));

    let show = server.admin(&key, "GET", "/accounts/acme/functions/svc", None).json();
    assert_eq!(show["latest"], 2);

    assert_eq!(
        server
            .admin(&key, "DELETE", "/accounts/acme/functions/svc/versions/1", None)
            .status,
        204
    );
    assert_eq!(server.request("GET", "/fn/acme/svc:1/", &[], b"").status, 404);
    assert_eq!(
        server
            .admin(&key, "DELETE", "/accounts/acme/functions/svc/versions/1", None)
            .status,
        404
    );
}

#[test]
fn deploy_settings_are_checked() {
    let server = Server::start_with(&["--max-memory-mb", "64"]);
    let key = server.create_account("acme");
    let bytes = std::fs::read(HELLO_COMPONENT).unwrap();
    assert!(server.upload(&key, "acme", &bytes).status < 300);
    let sha = sha256(&bytes);
    let path = "/accounts/acme/functions/f/versions";

    let too_big = server.admin(
        &key,
        "POST",
        path,
        Some(json!({ "blob": sha, "memory_mb": 65, "public": true })),
    );
    assert_eq!(too_big.status, 400, "{}", too_big.text());
    assert_eq!(too_big.code(), "bad_request");
    assert!(too_big.text().contains("64"));

    let unknown_field = server.admin(&key, "POST", path, Some(json!({ "blob": sha, "colour": "blue" })));
    assert_eq!(unknown_field.status, 400);

    let bad_tenancy = server.admin(&key, "POST", path, Some(json!({ "blob": sha, "tenancy": "some" })));
    assert_eq!(bad_tenancy.status, 400);

    let not_json = server.admin(&key, "POST", path, None);
    assert_eq!(not_json.status, 400);
    assert!(
        functions_of(&server, &key, "acme").is_empty(),
        "refused deploys store nothing"
    );

    let ok = server.admin(
        &key,
        "POST",
        path,
        Some(json!({ "blob": sha, "memory_mb": 64, "public": true })),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
}

/// `component` with a custom section appended: the same code under another
/// SHA-256, so the host has to compile it afresh.
pub fn with_custom_section(component: &[u8], payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Section as _;
    let mut out = component.to_vec();
    wasm_encoder::CustomSection {
        name: "stratus-test".into(),
        data: payload.into(),
    }
    .append_to(&mut out);
    out
}

#[test]
fn a_deploy_under_load_switches_once_and_fails_no_call() {
    let (server, key) = Server::with_function("heavy", HEAVY_COMPONENT, json!({}));
    // Unique bytes each run: the code cache is shared between test runs, and
    // a cached artifact would make the deploy instant.
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let next = with_custom_section(&std::fs::read(HEAVY_COMPONENT).unwrap(), stamp.as_bytes());
    let auth = bearer(&key);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // (sent, answered, status, version) per client, in the order sent.
    let (calls, deploy_started, deploy_done, compile_ms) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let sent = Instant::now();
                        let reply = server.get("/fn/acme/heavy/", &auth);
                        let version = reply
                            .header("x-stratus-version")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        seen.push((sent, Instant::now(), reply.status, version));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let deploy_started = Instant::now();
        assert_eq!(server.upload(&key, "acme", &next).status, 201);
        let deployed = server.admin(
            &key,
            "POST",
            "/accounts/acme/functions/heavy/versions",
            Some(json!({ "blob": sha256(&next) })),
        );
        let deploy_done = Instant::now();
        assert_eq!(deployed.status, 201, "{}", deployed.text());
        let compile_ms = deployed.json()["compile_ms"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let calls: Vec<Vec<(Instant, Instant, u16, u32)>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (calls, deploy_started, deploy_done, compile_ms)
    });

    let all: Vec<_> = calls.iter().flatten().collect();
    let failed: Vec<_> = all.iter().filter(|c| c.2 != 200).collect();
    assert!(failed.is_empty(), "{} of {} calls failed", failed.len(), all.len());
    for client in &calls {
        let versions: Vec<u32> = client.iter().map(|c| c.3).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "a client went back to the old version: {versions:?}"
        );
    }
    for (sent, answered, _, version) in &all {
        if *answered < deploy_started {
            assert_eq!(*version, 1, "the new version served before its deploy began");
        }
        if *sent > deploy_done {
            assert_eq!(*version, 2, "the old version served after the deploy was acknowledged");
        }
    }
    let during: Vec<_> = all
        .iter()
        .filter(|(sent, answered, ..)| *sent >= deploy_started && *answered <= deploy_done)
        .collect();
    let window = deploy_done - deploy_started;
    eprintln!(
        "{} calls answered while the deploy ({} ms, compile {compile_ms} ms) ran: {:.0}/s",
        during.len(),
        window.as_millis(),
        during.len() as f64 / window.as_secs_f64()
    );
    assert!(
        during.iter().any(|c| c.3 == 1),
        "the old version kept answering while the new one compiled"
    );
    // Once any client has seen the new version, the switch is behind us:
    // a call sent after that never reaches the old one.
    let first_new = all.iter().filter(|c| c.3 == 2).map(|c| c.1).min().unwrap();
    assert!(
        all.iter().filter(|c| c.0 > first_new).all(|c| c.3 == 2),
        "a call sent after the switch was served by the old version"
    );
    // The one-off artifact would only grow the shared cache.
    let sha = sha256(&next);
    for entry in std::fs::read_dir(shared_code_cache()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&sha) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[test]
fn a_component_whose_stored_bytes_changed_is_never_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::spawn(&data, &[]);
    let key = server.create_account("acme");
    let bytes = crate::isolation::fresh(COUNTER_COMPONENT);
    let sha = sha256(&bytes);
    let upload = server.upload(&key, "acme", &bytes);
    assert_eq!(upload.status, 201, "{}", upload.text());
    // The disk (or someone with access to it) changes the stored file.
    let stored = data.join("blobs").join(&sha[..2]).join(&sha);
    let mut rotten = std::fs::read(&stored).unwrap();
    rotten[100] ^= 0xff;
    std::fs::write(&stored, rotten).unwrap();
    let deploy = server.admin(
        &key,
        "POST",
        "/accounts/acme/functions/counter/versions",
        Some(json!({ "blob": sha })),
    );
    assert_eq!(deploy.status, 500, "{}", deploy.text());
    assert!(
        server.log().contains("corrupt"),
        "the operator's log says why: {}",
        server.log()
    );
}
