//! What one node writes, every node serves.

use serde_json::json;

use super::{Cluster, within_5s};
use crate::harness::{COUNTER_COMPONENT, HELLO_COMPONENT, OPERATOR_KEY, bearer};

#[test]
fn a_deploy_on_one_node_answers_on_the_others_compiled_once() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let key = a.create_account("acme");
    let deployed = a.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    assert_eq!(deployed["version"], 1);
    for node in [a, b, c] {
        let reply = within_5s("the new version answers on every node", || {
            let reply = node.get("/fn/acme/hello", &bearer(&key));
            (reply.status == 200).then_some(reply)
        });
        assert_eq!(reply.text(), "hello from stratus");
    }
    // The account's key, the function and its version are the cluster's.
    let listed = c.admin(&key, "GET", "/accounts/acme/functions/hello/versions", None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(
        cluster.sum("stratus_compiles_total"),
        1.0,
        "one compile for the whole cluster; the other nodes fetched it"
    );
    assert!(!cluster.etcd_keys("code/").is_empty(), "the compiled code is in etcd");
    // Deleted, its compiled code leaves the cluster's store too.
    assert_eq!(
        b.admin(&key, "DELETE", "/accounts/acme/functions/hello", None).status,
        204
    );
    within_5s("the compiled code left etcd", || {
        cluster.etcd_keys("code/").is_empty().then_some(())
    });
}

#[test]
fn concurrent_deploys_on_two_nodes_give_unique_dense_versions() {
    let cluster = Cluster::start(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let key = a.create_account("acme");
    // Both nodes hold the component first, so only the versions race.
    let first = a.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let blob = first["sha256"].as_str().unwrap().to_string();
    let versions: Vec<u64> = std::thread::scope(|scope| {
        let deploys: Vec<_> = [a, b, a, b, a, b, a, b]
            .into_iter()
            .map(|node| {
                let (key, blob) = (key.clone(), blob.clone());
                scope.spawn(move || {
                    let reply = node.admin(
                        &key,
                        "POST",
                        "/accounts/acme/functions/hello/versions",
                        Some(json!({ "blob": blob })),
                    );
                    assert_eq!(reply.status, 201, "{}", reply.text());
                    reply.json()["version"].as_u64().unwrap()
                })
            })
            .collect();
        deploys.into_iter().map(|d| d.join().unwrap()).collect()
    });
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (2..=9).collect::<Vec<u64>>(), "{versions:?}");
}

#[test]
fn grants_aliases_revocations_and_deletes_reach_every_node() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let acme = a.create_account("acme");
    let globex = a.create_account("globex");
    a.deploy(&acme, "acme", "hello", HELLO_COMPONENT, json!({}));

    // An alias made on A answers on C.
    let alias = a.admin(
        &acme,
        "PUT",
        "/accounts/acme/functions/hello/aliases/live",
        Some(json!({ "version": 1 })),
    );
    assert!(alias.status == 201 || alias.status == 200, "{}", alias.text());
    within_5s("the alias answers on C", || {
        (c.get("/fn/acme/hello:live", &bearer(&acme)).status == 200).then_some(())
    });

    // A grant made on B lets globex alias the function through C.
    let grant = b.admin(
        &acme,
        "PUT",
        "/accounts/acme/functions/hello/grants/globex",
        Some(json!({})),
    );
    assert!(grant.status == 201 || grant.status == 200, "{}", grant.text());
    let cross = within_5s("the grant is seen on C", || {
        let reply = c.admin(
            &globex,
            "PUT",
            "/accounts/globex/cross-aliases/partner",
            Some(json!({ "target": "acme/hello" })),
        );
        (reply.status == 201).then_some(reply)
    });
    assert_eq!(cross.status, 201);
    within_5s("the cross-account alias answers on A", || {
        (a.get("/fn/globex/partner", &bearer(&globex)).status == 200).then_some(())
    });
    // Revoked on A: refused on B and C.
    assert_eq!(
        a.admin(&acme, "DELETE", "/accounts/acme/functions/hello/grants/globex", None)
            .status,
        204
    );
    for node in [b, c] {
        within_5s("the revoked grant stops the alias", || {
            (node.get("/fn/globex/partner", &bearer(&globex)).status != 200).then_some(())
        });
    }

    // A key revoked on C stops working on A and B.
    let created = c.admin(OPERATOR_KEY, "POST", "/accounts/acme/keys", None);
    assert_eq!(created.status, 201, "{}", created.text());
    let second = created.json()["key"].as_str().unwrap().to_string();
    let id = created.json()["id"].as_str().unwrap().to_string();
    within_5s("the new key works on A", || {
        (a.get("/fn/acme/hello", &bearer(&second)).status == 200).then_some(())
    });
    assert_eq!(
        c.admin(OPERATOR_KEY, "DELETE", &format!("/accounts/acme/keys/{id}"), None)
            .status,
        204
    );
    for node in [a, b] {
        within_5s("the revoked key is refused", || {
            (node.get("/fn/acme/hello", &bearer(&second)).status == 401).then_some(())
        });
    }

    // An account deleted on B is gone everywhere, and its name is free.
    assert_eq!(b.admin(OPERATOR_KEY, "DELETE", "/accounts/acme", None).status, 204);
    for node in [a, c] {
        within_5s("the deleted account's key is refused", || {
            (node.get("/fn/acme/hello", &bearer(&acme)).status == 401).then_some(())
        });
    }
    let again = a.create_account("acme");
    assert_eq!(a.get("/fn/acme/hello", &bearer(&again)).status, 404);
}

#[test]
fn kv_increments_from_every_node_at_once_add_up_exactly() {
    let cluster = Cluster::start(3);
    let key = cluster.node(0).create_account("acme");
    cluster.node(0).deploy(
        &key,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "tenancy": "multi" }),
    );
    for node in &cluster.nodes {
        within_5s("the counter answers", || {
            (node
                .request(
                    "GET",
                    "/fn/acme/counter",
                    &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "warmup")],
                    b"",
                )
                .status
                == 200)
                .then_some(())
        });
    }
    let per_thread = 20;
    std::thread::scope(|scope| {
        for node in &cluster.nodes {
            for _ in 0..2 {
                let key = key.clone();
                scope.spawn(move || {
                    for _ in 0..per_thread {
                        let reply = node.request(
                            "POST",
                            "/fn/acme/counter",
                            &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "shared")],
                            b"",
                        );
                        assert_eq!(reply.status, 200, "{}", reply.text());
                    }
                });
            }
        }
    });
    let last = cluster.node(1).request(
        "POST",
        "/fn/acme/counter",
        &[("authorization", &bearer(&key)), ("x-stratus-sub-tenant", "shared")],
        b"",
    );
    assert_eq!(last.json()["kv"], 3 * 2 * per_thread + 1, "{}", last.text());
}
