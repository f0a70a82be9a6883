//! Calls that involve more than one node: introspection of another node's
//! tokens, a guest calling another node's URL, logs read through any node.

use serde_json::{Value, json};

use super::{Cluster, within_5s};
use crate::credentials::{encode, introspect_at};
use crate::harness::{COUNTER_COMPONENT, FETCH_COMPONENT, Upstream, WHOAMI_COMPONENT, bearer};

#[test]
fn a_token_minted_on_one_node_is_active_on_another_while_its_call_runs_and_only_then() {
    // While `fetch` on A waits on this upstream, the upstream asks B.
    let asked = std::sync::Arc::new(std::sync::OnceLock::<(String, String)>::new());
    let upstream_asked = asked.clone();
    let (seen, tokens) = std::sync::mpsc::channel::<String>();
    let upstream = Upstream::start(move |_origin, _path, auth| {
        let token = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
        let _ = seen.send(token.to_string());
        let (b, key) = upstream_asked.get().unwrap();
        (200, json!({ "on_b": introspect_at(b, key, token).json() }))
    });
    let cluster = Cluster::start_with(2, &["--allow-private-outbound", "127.0.0.1"]);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let key = a.create_account("acme");
    a.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": [upstream.authority], "timeout_ms": 10_000 }),
    );
    asked.set((b.url.clone(), key.clone())).unwrap();
    within_5s("B knows the account", || {
        (b.admin(&key, "GET", "/accounts/acme/functions", None).status == 200).then_some(())
    });

    let reply = a.get(
        &format!("/fn/acme/fetch/?url={}", encode(&upstream.origin)),
        &bearer(&key),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: Value = serde_json::from_str(reply.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["on_b"]["active"], true, "B asked A while the call ran: {body}");
    assert_eq!(body["on_b"]["fn"], "fetch");
    assert!(body["on_b"]["node"].is_string(), "the token names its node: {body}");

    let token = tokens.recv().unwrap();
    let after = introspect_at(&b.url, &key, &token).json();
    assert_eq!(after["active"], false, "the call has ended: {after}");
}

#[test]
fn a_guest_calling_another_nodes_url_makes_a_nested_call_on_its_own_node() {
    // No outbound entry and no private-address exemption: reaching B's
    // loopback address at all means it was served in-process on A.
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let key = a.create_account("acme");
    a.deploy(&key, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    a.deploy(&key, "acme", "fetch", FETCH_COMPONENT, json!({}));
    let path = format!(
        "/fn/acme/fetch/?url={}&aud=stratus",
        encode(&format!("{}/fn/acme/whoami/", b.url))
    );
    let outer = within_5s("A knows B's URL", || {
        let reply = a.get(&path, &bearer(&key));
        (reply.status == 200).then_some(reply)
    });
    let outer = outer.json();
    assert_eq!(outer["status"], 200, "{outer}");
    let inner: Value = serde_json::from_str(outer["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (inner["function"].as_str(), inner["caller"].as_str()),
        (Some("whoami"), Some("acme"))
    );
}

#[test]
fn logs_read_through_any_node_hold_the_lines_printed_on_every_node() {
    let cluster = Cluster::start(3);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let key = a.create_account("acme");
    a.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
    let on_a = a.request("POST", "/fn/acme/counter", &[("authorization", &bearer(&key))], b"");
    assert_eq!(on_a.status, 200, "{}", on_a.text());
    let from_a = on_a.header("x-stratus-invocation-id").unwrap().to_string();
    let on_b = within_5s("the counter answers on B", || {
        let reply = b.request("POST", "/fn/acme/counter", &[("authorization", &bearer(&key))], b"");
        (reply.status == 200).then_some(reply)
    });
    let from_b = on_b.header("x-stratus-invocation-id").unwrap().to_string();

    // A node whose admin API listens apart is asked there.
    let mut cluster = cluster;
    let apart = cluster.spawn(&["--admin-listen", "127.0.0.1:0"], Some(crate::harness::OPERATOR_KEY));
    let on_apart = within_5s("the counter answers on the node with an admin listener", || {
        let reply = apart.request("POST", "/fn/acme/counter", &[("authorization", &bearer(&key))], b"");
        (reply.status == 200).then_some(reply)
    });
    let from_apart = on_apart.header("x-stratus-invocation-id").unwrap().to_string();
    let c = cluster.node(2);
    within_5s("C shows what A, B and the fourth node printed", || {
        let logs = c.admin(&key, "GET", "/accounts/acme/functions/counter/logs", None);
        let text = logs.text();
        (logs.status == 200
            && [&from_a, &from_b, &from_apart]
                .iter()
                .all(|id| text.contains(id.as_str())))
        .then_some(())
    });
    // The CLI, through C, too.
    let out = c.cli_ok(&key, &["logs", "acme/counter"]);
    assert!(out.contains(&from_a[..8]), "{out}");
}
