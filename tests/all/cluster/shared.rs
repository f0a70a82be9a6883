//! What the nodes share: signing keys and settings.

use serde_json::{Value, json};

use super::{Cluster, within_5s};
use crate::harness::{OPERATOR_KEY, Server};

fn kids(node: &Server) -> Vec<Value> {
    node.request("GET", "/.well-known/jwks.json", &[], b"").json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect()
}

#[test]
fn every_node_serves_the_same_jwks_also_after_a_rotation_on_one() {
    let cluster = Cluster::start(3);
    let first = kids(cluster.node(0));
    assert_eq!(first.len(), 1);
    for node in &cluster.nodes {
        assert_eq!(kids(node), first);
    }
    let rotated = cluster
        .node(1)
        .admin(OPERATOR_KEY, "POST", "/signing-keys/rotate", None);
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let kid = rotated.json()["kid"].clone();
    for node in &cluster.nodes {
        within_5s("every node serves the rotated key", || {
            (kids(node).last() == Some(&kid)).then_some(())
        });
    }
    // Tokens signed on one node verify on every other.
    let key = cluster.node(0).create_account("acme");
    let token = cluster.node(2).admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "bob", "ttl_s": 60 })),
    );
    assert_eq!(token.status, 201, "{}", token.text());
    let token = token.json()["token"].as_str().unwrap().to_string();
    for node in &cluster.nodes {
        let reply = node.request(
            "POST",
            "/v1/introspect",
            &[
                ("authorization", &format!("Bearer {key}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            format!("token={token}").as_bytes(),
        );
        assert_eq!(reply.json()["active"], true, "{}", reply.text());
    }
}

/// Starts a node of `cluster` with `args` that must refuse to start; what
/// it said on stderr.
fn refused(cluster: &Cluster, args: &[&str], operator: &str) -> String {
    let out = std::process::Command::new(crate::harness::stratus_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--cluster", &cluster.url])
        .args(args)
        .arg("--data")
        .arg(cluster.data_of("refused"))
        .env("STRATUS_OPERATOR_KEY", operator)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the node started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_with_another_setting_refuses_to_start_and_names_it() {
    let mut cluster = Cluster::start(1);
    let err = refused(
        &cluster,
        &["--node-id", "odd", "--issuer", "https://elsewhere"],
        OPERATOR_KEY,
    );
    assert!(err.contains("--issuer"), "{err}");
    // Limits under which one account could fill etcd are refused.
    let err = refused(
        &cluster,
        &["--node-id", "odd", "--max-blob-bytes-per-account", "2147483648"],
        OPERATOR_KEY,
    );
    assert!(
        err.contains("--cluster-store-bytes") && err.contains("--max-blob-bytes-per-account"),
        "{err}"
    );
    // Another operator key is refused too.
    let err = refused(&cluster, &["--node-id", "odd"], "a-different-operator-key");
    assert!(err.contains("STRATUS_OPERATOR_KEY"), "{err}");
    // Without one, a node takes the cluster's.
    let keyless = cluster.spawn(&[], None);
    assert_eq!(keyless.admin(OPERATOR_KEY, "GET", "/accounts", None).status, 200);
    // Its id is its own: a second node with a live node's id is refused.
    let err = refused(&cluster, &["--node-id", "n0"], OPERATOR_KEY);
    assert!(err.contains("--node-id n0"), "{err}");
}

#[test]
fn the_first_node_without_an_operator_key_generates_one_for_the_cluster() {
    let mut cluster = Cluster::start(0);
    let first = cluster.spawn(&[], None);
    let shown = first
        .printed()
        .iter()
        .find_map(|line| line.strip_prefix("operator key (shown once, keep it): "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no operator key printed: {:?}", first.printed()));
    let second = cluster.spawn(&[], None);
    assert!(
        !second.printed().iter().any(|l| l.contains("operator key")),
        "only the first node generates it"
    );
    for node in [&first, &second] {
        assert_eq!(node.admin(&shown, "GET", "/accounts", None).status, 200);
    }
    let status = second.admin(&shown, "GET", "/cluster", None).json();
    let ids: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids, ["n0", "n1"], "{status}");
    assert_eq!(status["etcd"]["healthy"], true, "{status}");
}

#[test]
fn tokens_minted_on_a_node_whose_clock_is_half_a_second_ahead_are_never_refused() {
    let cluster = Cluster::start(1);
    // Debian's libfaketime, preloaded into the node itself (the `faketime`
    // wrapper would leave it behind when killed).
    let library = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("libfaketime is not installed: apt-get install faketime"));
    let library = library.display().to_string();
    let ahead = Server::spawn_node_with_env(
        &cluster.data_of("ahead"),
        &["--cluster", &cluster.url, "--node-id", "ahead"],
        OPERATOR_KEY,
        &[
            ("LD_PRELOAD", &library),
            ("FAKETIME", "+0.5s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let on_time = cluster.node(0);
    let key = on_time.create_account("acme");
    within_5s("the account reaches the skewed node", || {
        (ahead.admin(&key, "GET", "/accounts/acme/functions", None).status == 200).then_some(())
    });
    // Over two seconds, so that some are minted while the skewed clock has
    // already passed the next second and the other has not.
    let started = std::time::Instant::now();
    let mut checked = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let issued = ahead.admin(
            &key,
            "POST",
            "/accounts/acme/sub-tenant-tokens",
            Some(json!({ "sub_tenant": "bob", "ttl_s": 60 })),
        );
        assert_eq!(issued.status, 201, "{}", issued.text());
        let token = issued.json()["token"].as_str().unwrap().to_string();
        let reply = on_time.request(
            "POST",
            "/v1/introspect",
            &[
                ("authorization", &format!("Bearer {key}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            format!("token={token}").as_bytes(),
        );
        assert_eq!(
            reply.json()["active"],
            true,
            "a fresh token from the node ahead was refused: {}",
            reply.text()
        );
        checked += 1;
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(checked > 20, "only {checked} tokens checked");
}

#[test]
fn a_node_refuses_a_cluster_whose_schema_is_newer_than_it_knows() {
    let cluster = Cluster::start(1);
    cluster.etcdctl(&["put", &cluster.key("schema"), "2"]);
    let err = refused(&cluster, &["--node-id", "newer"], OPERATOR_KEY);
    assert!(err.contains("schema version 2"), "{err}");
}
