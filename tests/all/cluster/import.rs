//! `stratus cluster import`: a single node's data directory into a cluster.

use serde_json::json;

use super::{Cluster, within_5s};
use crate::harness::{COUNTER_COMPONENT, HELLO_COMPONENT, OPERATOR_KEY, Server, bearer, stratus_bin};

#[test]
fn an_imported_single_node_keeps_its_accounts_keys_versions_tokens_and_kv() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let single = Server::spawn(&data, &[]);
    let key = single.create_account("acme");
    single.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    single.deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi" }),
    );
    single.deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi" }),
    );
    let count = |server: &Server| {
        let reply = server.request(
            "POST",
            "/fn/acme/counter",
            &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "alice")],
            b"",
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["kv"].as_u64().unwrap()
    };
    for _ in 0..3 {
        count(&single);
    }
    let token = single.admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "bob", "ttl_s": 600 })),
    );
    assert_eq!(token.status, 201, "{}", token.text());
    let token = token.json()["token"].as_str().unwrap().to_string();
    let mut single = single;
    single.terminate();
    assert!(single.wait_exit(std::time::Duration::from_secs(10)).is_some());

    let mut cluster = Cluster::start(0);
    let out = std::process::Command::new(stratus_bin())
        .args(["cluster", "import", "--data"])
        .arg(&data)
        .args(["--cluster", &cluster.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("components"), "{said}");
    // A second import would mix two hosts' data: refused.
    let again = std::process::Command::new(stratus_bin())
        .args(["cluster", "import", "--data"])
        .arg(&data)
        .args(["--cluster", &cluster.url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let a = cluster.spawn(&[], Some(OPERATOR_KEY));
    let b = cluster.spawn(&[], Some(OPERATOR_KEY));
    for node in [&a, &b] {
        within_5s("the imported function answers", || {
            (node.get("/fn/acme/hello", &bearer(&key)).status == 200).then_some(())
        });
    }
    // Version numbers, KV and the signing keys came along.
    let versions = b
        .admin(&key, "GET", "/accounts/acme/functions/counter/versions", None)
        .json();
    let numbers: Vec<u64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2], "{versions}");
    assert_eq!(count(&a), 4);
    assert_eq!(count(&b), 5);
    let reply = b.get("/fn/acme/hello", &bearer(&token));
    assert_eq!(reply.status, 200, "a token signed before the import: {}", reply.text());
    let next = a.deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi" }),
    );
    assert_eq!(next["version"], 3);
}
