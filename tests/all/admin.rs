//! SPEC §6: who may administer what, the admin listener, metrics, health.

use serde_json::json;

use crate::harness::*;

#[test]
fn accounts_are_the_operators_and_keys_act_on_their_own_account() {
    let server = Server::start();
    let acme = server.create_account("acme");
    let _other = server.create_account("other");

    let duplicate = server.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": "acme" })));
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.code(), "conflict");
    let invalid = server.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": "Not Valid" })));
    assert_eq!(invalid.status, 400);

    let list = server.admin(OPERATOR_KEY, "GET", "/accounts", None);
    let names: Vec<_> = list.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["acme", "other"]);

    assert_eq!(
        server
            .admin(&acme, "POST", "/accounts", Some(json!({ "name": "mine" })))
            .status,
        403
    );
    assert_eq!(
        server.admin(&acme, "GET", "/accounts/other/functions", None).status,
        404,
        "other accounts look absent"
    );
    assert_eq!(server.admin(&acme, "GET", "/accounts/acme/functions", None).status, 200);
    assert_eq!(
        server.admin("sk_nope", "GET", "/accounts/acme/functions", None).status,
        401
    );
    assert_eq!(server.request("GET", "/admin/v1/accounts", &[], b"").status, 401);

    let keys = server.admin(&acme, "GET", "/accounts/acme/keys", None).json();
    let listed = keys["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!keys.to_string().contains(&acme), "key secrets are never listed");

    assert_eq!(server.admin(OPERATOR_KEY, "DELETE", "/accounts/acme", None).status, 204);
    assert_eq!(
        server.admin(&acme, "GET", "/accounts/acme/functions", None).status,
        401,
        "deleting an account kills its keys"
    );
}

#[test]
fn the_admin_listener_keeps_the_admin_api_private() {
    let server = Server::start_with(&["--admin-listen", "127.0.0.1:0"]);
    let admin_url = server.admin_url.clone().expect("admin listener announced");
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "public": true }));

    let on_main = server.request(
        "GET",
        "/admin/v1/accounts",
        &[("authorization", &bearer(OPERATOR_KEY))],
        b"",
    );
    assert_eq!(on_main.status, 404);
    assert_eq!(server.request("GET", "/fn/acme/hello/", &[], b"").status, 200);
    let metrics = server.request_to(&admin_url, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200, "metrics are open on the admin listener");
    assert!(
        metrics.text().contains("stratus_invocations_total"),
        "{}",
        metrics.text()
    );
}

#[test]
fn metrics_on_the_main_listener_need_the_operator_key() {
    let server = Server::start();
    let key = server.create_account("acme");
    assert_eq!(server.request("GET", "/metrics", &[], b"").status, 401);
    assert_eq!(
        server
            .request("GET", "/metrics", &[("authorization", &bearer(&key))], b"")
            .status,
        403
    );
    let ok = server.request("GET", "/metrics", &[("authorization", &bearer(OPERATOR_KEY))], b"");
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("stratus_code_cache_hits_total"));
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn metrics_count_calls_by_function_and_never_by_sub_tenant() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    server.deploy(&key, "acme", "hog", HOG_COMPONENT, json!({ "memory_mb": 16 }));
    let auth = bearer(&key);
    for sub in ["tenant-one", "tenant-two", "tenant-three"] {
        let reply = server.request(
            "GET",
            "/fn/acme/hello/",
            &[("authorization", &auth), ("x-stratus-sub-tenant", sub)],
            b"",
        );
        assert_eq!(reply.status, 200);
    }
    assert_eq!(server.get("/fn/acme/hog/", &auth).status, 502);
    assert_eq!(server.get("/fn/acme/nothing/", &auth).status, 404);

    assert_eq!(
        server.metric(r#"stratus_invocations_total{account="acme",function="hello",status="2xx"}"#),
        3.0
    );
    assert_eq!(
        server.metric(r#"stratus_invocation_duration_seconds_count{account="acme",function="hello"}"#),
        3.0
    );
    assert_eq!(
        server.metric(r#"stratus_errors_total{account="acme",function="hog",code="guest_error"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"stratus_errors_total{account="-",function="-",code="not_found"}"#),
        1.0
    );
    let text = server
        .request("GET", "/metrics", &[("authorization", &bearer(OPERATOR_KEY))], b"")
        .text();
    assert!(!text.contains("tenant-one"), "sub-tenants must not become labels");
}
