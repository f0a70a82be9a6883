//! SPEC §1, §3, §5: partitions and the KV namespace of (owner, caller, sub-tenant).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::harness::*;

fn count(server: &Server, key: &str, sub_tenant: Option<&str>) -> Value {
    let auth = bearer(key);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(sub) = sub_tenant {
        headers.push(("x-stratus-sub-tenant", sub));
    }
    let reply = server.request("GET", "/fn/acme/counter/", &headers, b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[test]
fn single_use_environments_start_fresh_and_kv_counts_per_sub_tenant() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({ "tenancy": "multi" }));

    let subs = ["cust-a", "cust-b", "cust-c"];
    let mut expected: HashMap<&str, i64> = HashMap::new();
    for i in 0..20 {
        let sub = subs[i % subs.len()];
        let seen = count(&server, &key, Some(sub));
        assert_eq!(
            seen["memory"], 1,
            "a single-use environment saw a previous call: {seen}"
        );
        let n = expected.entry(sub).or_insert(0);
        *n += 1;
        assert_eq!(seen["kv"], *n, "sub-tenant {sub}: {seen}");
    }
}

#[test]
fn concurrent_increments_are_never_lost() {
    let server = Arc::new(Server::start());
    let key = server.create_account("acme");
    server.deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi" }),
    );

    let subs = ["t1", "t2", "t3"];
    let threads: Vec<_> = subs
        .iter()
        .flat_map(|sub| (0..8).map(move |_| *sub))
        .map(|sub| {
            let (server, key) = (server.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    count(&server, &key, Some(sub));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for sub in subs {
        // 8 callers × 5 calls each, plus this one.
        assert_eq!(count(&server, &key, Some(sub))["kv"], 41, "sub-tenant {sub}");
    }
}

#[test]
fn callers_and_sub_tenants_have_separate_namespaces() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({ "public": true }));

    for _ in 0..3 {
        count(&server, &key, None);
    }
    assert_eq!(
        count(&server, &key, None)["kv"],
        4,
        "the account's own calls without a sub-tenant"
    );
    assert_eq!(
        count(&server, &key, Some("x"))["kv"],
        1,
        "a sub-tenant given on a single-tenant function is used"
    );
    let anonymous = server.request("GET", "/fn/acme/counter/", &[], b"");
    assert_eq!(anonymous.json()["kv"], 1, "anonymous callers have their own namespace");
    assert_eq!(count(&server, &key, None)["kv"], 5);
}

#[test]
fn warm_environments_are_reused_only_inside_their_partition() {
    let server = Server::start();
    let acme = server.create_account("acme");
    server.deploy(
        &acme,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "public": true, "reuse": "warm" }),
    );

    // Sequential calls of one partition reuse one environment.
    for expected in 1..=4 {
        assert_eq!(count(&server, &acme, Some("a"))["memory"], expected);
    }
    // Every other partition starts from a fresh instance.
    assert_eq!(
        count(&server, &acme, Some("b"))["memory"],
        1,
        "another sub-tenant saw a grown counter"
    );
    assert_eq!(
        count(&server, &acme, None)["memory"],
        1,
        "no sub-tenant is a partition of its own"
    );
    let anonymous = server.request("GET", "/fn/acme/counter/", &[], b"");
    assert_eq!(anonymous.json()["memory"], 1, "another caller saw a grown counter");
    assert_eq!(
        count(&server, &acme, Some("a"))["memory"],
        5,
        "sub-tenant a keeps its environment"
    );
    assert_eq!(count(&server, &acme, Some("b"))["memory"], 2);
    assert!(server.metric("stratus_warm_hits_total") >= 5.0);
    assert!(server.metric("stratus_idle_instances") >= 3.0);

    // A new version is a new partition.
    server.deploy(
        &acme,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "public": true, "reuse": "warm" }),
    );
    assert_eq!(count(&server, &acme, Some("a"))["memory"], 1);
}

#[test]
fn idle_warm_environments_expire_and_give_back_their_slots() {
    let server = Server::start_with(&["--warm-idle-ttl", "300ms", "--pool-slots", "2"]);
    let acme = server.create_account("acme");
    server.deploy(&acme, "acme", "counter", COUNTER_COMPONENT, json!({ "reuse": "warm" }));
    server.deploy(&acme, "acme", "hello", HELLO_COMPONENT, json!({ "public": true }));

    // Two partitions hold both slots while idle; a third call still gets one,
    // by evicting the least recently used idle environment.
    count(&server, &acme, Some("a"));
    count(&server, &acme, Some("b"));
    assert_eq!(server.metric("stratus_idle_instances"), 2.0);
    assert_eq!(server.request("GET", "/fn/acme/hello/", &[], b"").status, 200);
    assert_eq!(
        count(&server, &acme, Some("b"))["memory"],
        2,
        "the most recently used partition stayed warm"
    );

    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(
        server.metric("stratus_idle_instances"),
        0.0,
        "idle environments outlived their TTL"
    );
    assert_eq!(server.metric("stratus_live_instances"), 0.0);
    assert_eq!(count(&server, &acme, Some("b"))["memory"], 1);
}

fn issue_token(server: &Server, key: &str, sub: &str, ttl_s: u64) -> String {
    let reply = server.admin(
        key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": sub, "ttl_s": ttl_s })),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["token"].as_str().unwrap().to_string()
}

#[test]
fn a_sub_tenant_token_acts_for_its_sub_tenant_only() {
    let server = Server::start();
    let key = server.create_account("acme");
    server.create_account("globex");
    server.deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi" }),
    );
    let token = issue_token(&server, &key, "alice", 3600);
    let auth = bearer(&token);

    let first = server.get("/fn/acme/counter/", &auth);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["kv"], 1);
    // Same partition and namespace as the account key naming alice.
    assert_eq!(count(&server, &key, Some("alice"))["kv"], 2);
    let same = server.request(
        "GET",
        "/fn/acme/counter/",
        &[("authorization", &auth), ("x-stratus-sub-tenant", "alice")],
        b"",
    );
    assert_eq!(same.status, 200);

    let other = server.request(
        "GET",
        "/fn/acme/counter/",
        &[("authorization", &auth), ("x-stratus-sub-tenant", "globex")],
        b"",
    );
    assert_eq!(other.status, 403, "{}", other.text());
    assert_eq!(other.code(), "forbidden");

    // It can invoke, not administer.
    for path in ["/accounts/acme/functions", "/accounts/acme/keys", "/whoami"] {
        assert_eq!(server.admin(&token, "GET", path, None).status, 401, "{path}");
    }
    // It acts for acme: another account's private function is not there.
    let foreign = server.get("/fn/globex/anything/", &auth);
    assert_eq!(foreign.status, 404);

    // A token altered in any byte is refused.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let reply = server.request(
        "GET",
        "/fn/acme/counter/",
        &[("authorization", &bearer(&tampered))],
        b"",
    );
    assert_eq!(reply.status, 401, "{}", reply.text());

    // The JWKS publishes the key the token names.
    let jwks = server.request("GET", "/.well-known/jwks.json", &[], b"").json();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "stratus-sub-tenant+jwt");
}

#[test]
fn sub_tenant_tokens_expire_and_die_with_their_key() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({ "tenancy": "multi" }));

    let too_long = server.admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "a", "ttl_s": 86401 })),
    );
    assert_eq!(too_long.status, 400);
    let bad_id = server.admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "a b" })),
    );
    assert_eq!(bad_id.code(), "invalid_sub_tenant");

    let short = issue_token(&server, &key, "bob", 1);
    assert_eq!(
        server
            .request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&short))], b"")
            .status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let expired = server.request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&short))], b"");
    assert_eq!(expired.status, 401, "{}", expired.text());

    // Issued with a second key; revoking that key kills the token at once,
    // although it was verified (and cached) a moment before.
    let second = server.admin(&key, "POST", "/accounts/acme/keys", None).json();
    let token = issue_token(&server, second["key"].as_str().unwrap(), "carol", 3600);
    assert_eq!(
        server
            .request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&token))], b"")
            .status,
        200
    );
    let id = second["id"].as_str().unwrap();
    assert_eq!(
        server
            .admin(&key, "DELETE", &format!("/accounts/acme/keys/{id}"), None)
            .status,
        204
    );
    assert_eq!(
        server
            .request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&token))], b"")
            .status,
        401
    );

    // Deleting the account kills tokens issued under it.
    let kept = issue_token(&server, &key, "dave", 3600);
    assert_eq!(
        server
            .request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&kept))], b"")
            .status,
        200
    );
    assert_eq!(server.admin(OPERATOR_KEY, "DELETE", "/accounts/acme", None).status, 204);
    assert_eq!(
        server
            .request("GET", "/fn/acme/counter/", &[("authorization", &bearer(&kept))], b"")
            .status,
        401
    );
}

#[test]
fn a_pool_slot_holds_nothing_of_the_previous_tenant() {
    // One slot: every environment reuses the same memory of the pool.
    let server = Server::start_with(&["--pool-slots", "1"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "canary", CANARY_COMPONENT, json!({ "tenancy": "multi" }));
    let auth = bearer(&key);
    let pattern: String = (0..16).map(|i| format!("{:02x}", (i * 37 + 11) as u8 ^ 0x5a)).collect();
    let call = |sub: &str, query: &str| {
        let reply = server.request(
            "GET",
            &format!("/fn/acme/canary/?{query}"),
            &[("authorization", &auth), ("x-stratus-sub-tenant", sub)],
            b"",
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    };

    // The scan finds what a write leaves, within one environment.
    let control = call("a", &format!("write={pattern}&scan={pattern}"));
    assert!(control["found"].as_u64().unwrap() > 1000, "{control}");

    // Tenant a fills 4 MiB of fresh memory with the canary; tenant b, in the
    // same slot next, grows its memory over the same pages and finds none.
    assert_eq!(call("a", &format!("write={pattern}"))["wrote"], 4 * 1024 * 1024);
    assert_eq!(call("b", &format!("scan={pattern}"))["found"], 0);
}
