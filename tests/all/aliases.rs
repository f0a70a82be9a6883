//! SPEC §1, §6, §10: aliases of a function — one version or two with a
//! weight, overrides that only lower limits, referential integrity.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::harness::*;

fn put_alias(server: &Server, key: &str, function: &str, alias: &str, body: Value) -> Reply {
    server.admin(
        key,
        "PUT",
        &format!("/accounts/acme/functions/{function}/aliases/{alias}"),
        Some(body),
    )
}

/// A server with `hello` deployed twice (versions 1 and 2).
fn two_versions() -> (Server, String) {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    (server, key)
}

/// Calls `path` `calls` times from 4 threads; counts answers by version.
fn versions_served(server: &Server, key: &str, path: &str, calls: usize) -> BTreeMap<String, usize> {
    let auth = bearer(key);
    let counts = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..calls / 4 {
                    let reply = server.get(path, &auth);
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    let version = reply.header("x-stratus-version").unwrap().to_string();
                    *counts.lock().unwrap().entry(version).or_insert(0) += 1;
                }
            });
        }
    });
    counts.into_inner().unwrap()
}

#[test]
fn a_weighted_alias_splits_calls_and_keeps_each_sub_tenant_on_one_version() {
    let (server, key) = two_versions();
    let reply = put_alias(
        &server,
        &key,
        "hello",
        "prod",
        json!({ "version": 1, "weight": { "version": 2, "percent": 10 } }),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());

    let counts = versions_served(&server, &key, "/fn/acme/hello:prod/", 2000);
    let minor = counts.get("2").copied().unwrap_or(0) as f64 / 2000.0;
    assert!(
        (0.07..=0.13).contains(&minor),
        "version 2 served {minor:.3} of calls: {counts:?}"
    );
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), vec!["1", "2"]);

    // With a sub-tenant the choice sticks.
    let auth = bearer(&key);
    let mut seen = BTreeSet::new();
    for n in 0..100 {
        let sub = format!("customer-{n}");
        let versions: BTreeSet<String> = (0..3)
            .map(|_| {
                let reply = server.request(
                    "GET",
                    "/fn/acme/hello:prod/",
                    &[("authorization", &auth), ("x-stratus-sub-tenant", &sub)],
                    b"",
                );
                reply.header("x-stratus-version").unwrap().to_string()
            })
            .collect();
        assert_eq!(versions.len(), 1, "{sub} saw {versions:?}");
        seen.extend(versions);
    }
    assert_eq!(seen.len(), 2, "both versions serve some sub-tenants: {seen:?}");
}

#[test]
fn aliases_override_env_lower_limits_and_show_in_the_claims() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({ "env": { "A": "1", "B": "2" } }));
    server.deploy(&key, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    let auth = bearer(&key);
    let reply = put_alias(
        &server,
        &key,
        "echo",
        "beta",
        json!({ "version": 1, "overrides": { "env": { "B": "beta", "C": "3" }, "timeout_ms": 2000 } }),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let env = server.get("/fn/acme/echo:beta/", &auth).json()["env"].clone();
    assert_eq!(
        (env["A"].as_str(), env["B"].as_str(), env["C"].as_str()),
        (Some("1"), Some("beta"), Some("3"))
    );
    let direct = server.get("/fn/acme/echo:1/", &auth).json()["env"].clone();
    assert_eq!(
        (direct["B"].as_str(), direct["C"].as_str()),
        (Some("2"), None),
        "the version itself is unchanged"
    );

    // Limits only go down.
    let higher = put_alias(
        &server,
        &key,
        "echo",
        "slow",
        json!({ "version": 1, "overrides": { "timeout_ms": 60000 } }),
    );
    assert_eq!(higher.status, 400, "{}", higher.text());
    let memory = put_alias(
        &server,
        &key,
        "echo",
        "big",
        json!({ "version": 1, "overrides": { "memory_mb": 4096 } }),
    );
    assert_eq!(memory.status, 400, "{}", memory.text());

    // The claims name the alias a call came through.
    assert_eq!(
        put_alias(&server, &key, "whoami", "live", json!({ "version": 1 })).status,
        201
    );
    let claims = server.get("/fn/acme/whoami:live/?token=1", &auth).json();
    assert_eq!(claims["alias"], "live");
    let token = claims["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert_eq!(payload["alias"], "live");
    let direct = server.get("/fn/acme/whoami/", &auth).json();
    assert_eq!(direct["alias"], Value::Null);
}

#[test]
fn bad_aliases_are_refused_with_clear_errors() {
    let (server, key) = two_versions();
    let cases = [
        ("7", json!({ "version": 1 }), 400, "a name like a number"),
        ("prod", json!({ "version": 9 }), 404, "a missing version"),
        (
            "prod",
            json!({ "version": 1, "weight": { "version": 1, "percent": 10 } }),
            400,
            "weight to the same version",
        ),
        (
            "prod",
            json!({ "version": 1, "weight": { "version": 2, "percent": 100 } }),
            400,
            "a 100 % weight",
        ),
        ("prod", json!({ "version": 1, "extra": true }), 400, "an unknown field"),
    ];
    for (alias, body, status, what) in cases {
        let reply = put_alias(&server, &key, "hello", alias, body);
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        // The body may not have been read: the client is told not to reuse
        // the connection, rather than find it closed under its next request.
        assert_eq!(reply.header("connection"), Some("close"), "{what}");
    }
    let missing = server.admin(
        &key,
        "PUT",
        "/accounts/acme/functions/nope/aliases/prod",
        Some(json!({ "version": 1 })),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(
        server
            .request("GET", "/fn/acme/hello:prod/", &[("authorization", &bearer(&key))], b"")
            .status,
        404
    );
}

#[test]
fn referenced_versions_and_functions_are_not_deleted_from_under_an_alias() {
    let (server, key) = two_versions();
    assert_eq!(
        put_alias(&server, &key, "hello", "prod", json!({ "version": 1 })).status,
        201
    );
    let reply = server.admin(&key, "DELETE", "/accounts/acme/functions/hello/versions/1", None);
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(reply.text().contains("prod"), "{}", reply.text());
    assert_eq!(
        server
            .admin(&key, "DELETE", "/accounts/acme/functions/hello", None)
            .status,
        409
    );

    // Re-pointed, the old version is free to go.
    let updated = put_alias(&server, &key, "hello", "prod", json!({ "version": 2 }));
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(
        server
            .request("GET", "/fn/acme/hello:prod/", &[("authorization", &bearer(&key))], b"")
            .header("x-stratus-version"),
        Some("2")
    );
    assert_eq!(
        server
            .admin(&key, "DELETE", "/accounts/acme/functions/hello/versions/1", None)
            .status,
        204
    );

    let forced = server.admin(&key, "DELETE", "/accounts/acme/functions/hello?force=true", None);
    assert_eq!(forced.status, 204, "{}", forced.text());
    assert_eq!(
        server
            .admin(&key, "GET", "/accounts/acme/functions/hello/aliases", None)
            .status,
        404
    );
}

#[test]
fn the_cli_manages_aliases_and_they_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::spawn(&data, &[]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let cli = |args: &[&str]| server.cli(&key, args);
    let out = cli(&[
        "alias",
        "create",
        "prod",
        "--function",
        "hello",
        "--version",
        "1",
        "--weight",
        "2=25",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["weight"], json!({ "version": 2, "percent": 25 }));
    let again = cli(&["alias", "create", "prod", "--function", "hello", "--version", "2"]);
    assert!(!again.status.success(), "create does not overwrite");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has an alias"));
    let missing = cli(&["alias", "update", "canary", "--function", "hello", "--version", "2"]);
    assert!(!missing.status.success(), "update does not create");
    let out = cli(&["alias", "update", "prod", "--function", "hello", "--version", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = cli(&["alias", "list", "--function", "hello"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("hello:prod → version 2"));
    server.kill();

    let server = Server::spawn(&data, &[]);
    let shown = server.admin(&key, "GET", "/accounts/acme/functions/hello/aliases/prod", None);
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(shown.json()["version"], 2);
    assert_eq!(shown.json()["weight"], Value::Null);
    let reply = server.request("GET", "/fn/acme/hello:prod/", &[("authorization", &bearer(&key))], b"");
    assert_eq!(reply.header("x-stratus-version"), Some("2"));
}
