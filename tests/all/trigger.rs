//! SPEC §5: addressing, caller credentials, what the guest sees, error codes.

use serde_json::json;

use crate::harness::*;

#[test]
fn public_hello_answers_with_invocation_headers() {
    let (server, _key) = Server::with_function("hello", HELLO_COMPONENT, json!({ "public": true }));

    let reply = server.request("GET", "/fn/acme/hello/", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello from stratus");
    assert_eq!(reply.header("x-stratus-version"), Some("1"));
    let id = reply.header("x-stratus-invocation-id").unwrap();
    assert_eq!(id.len(), 32);
    let again = server.request("GET", "/fn/acme/hello", &[], b"");
    assert_eq!(again.status, 200);
    assert_ne!(
        again.header("x-stratus-invocation-id"),
        Some(id),
        "every invocation has its own id"
    );
}

#[test]
fn echo_round_trips_the_request_without_credentials_or_reserved_headers() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({}));

    let auth = bearer(&key);
    let reply = server.request(
        "PUT",
        "/fn/acme/echo/some/deep/path?x=1&y=two%20words",
        &[
            ("authorization", &auth),
            ("x-custom", "kept"),
            ("x-stratus-sub-tenant", "cust-1"),
            ("x-stratus-anything", "gone"),
        ],
        b"the body \xe2\x9c\x93",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.json();
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["path"], "/some/deep/path");
    assert_eq!(seen["query"], "x=1&y=two%20words");
    assert_eq!(seen["body"], "the body \u{2713}");
    assert_eq!(seen["headers"]["x-custom"], "kept");
    let headers = seen["headers"].as_object().unwrap();
    assert!(
        !headers.contains_key("authorization"),
        "the guest saw the caller's key: {headers:?}"
    );
    assert!(
        headers.keys().all(|k| !k.starts_with("x-stratus-")),
        "reserved headers reached the guest: {headers:?}"
    );
    assert!(!reply.text().contains(&key));
}

#[test]
fn public_functions_keep_their_own_authorization_scheme() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({ "public": true }));

    let own = server.request("GET", "/fn/acme/echo/", &[("authorization", "Basic dXNlcjpwdw==")], b"");
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["headers"]["authorization"], "Basic dXNlcjpwdw==");

    let auth = bearer(&key);
    let stratus = server.get("/fn/acme/echo/", &auth);
    assert_eq!(stratus.status, 200);
    assert!(
        stratus.json()["headers"].get("authorization").is_none(),
        "a Stratus key reached the guest"
    );
}

#[test]
fn host_form_addressing_reaches_the_same_function() {
    let server = Server::start_with(&["--base-domain", "fn.example.test"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({ "public": true }));

    let reply = server.request("GET", "/a/b?c=d", &[("host", "echo--acme.fn.example.test")], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/a/b");
    assert_eq!(reply.json()["query"], "c=d");
    assert_eq!(reply.header("x-stratus-version"), Some("1"));

    let missing = server.request("GET", "/", &[("host", "nope--acme.fn.example.test")], b"");
    assert_eq!(
        missing.status, 401,
        "anonymous callers cannot tell missing from private"
    );
}

#[test]
fn private_functions_need_a_key_of_their_account() {
    let server = Server::start();
    let acme = server.create_account("acme");
    let other = server.create_account("other");
    server.deploy(&acme, "acme", "hello", HELLO_COMPONENT, json!({}));

    let anonymous = server.request("GET", "/fn/acme/hello/", &[], b"");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.code(), "unauthorized");

    let ok = server.request("GET", "/fn/acme/hello/", &[("authorization", &bearer(&acme))], b"");
    assert_eq!(ok.status, 200, "{}", ok.text());

    let foreign = server.request("GET", "/fn/acme/hello/", &[("authorization", &bearer(&other))], b"");
    assert_eq!(
        foreign.status, 404,
        "another account's private function must look absent"
    );
    assert_eq!(foreign.code(), "not_found");

    let bad = server.request(
        "GET",
        "/fn/acme/hello/",
        &[("authorization", "Bearer sk_000000000000_nope")],
        b"",
    );
    assert_eq!(bad.status, 401);
    assert_eq!(bad.code(), "unauthorized");

    let operator = server.request(
        "GET",
        "/fn/acme/hello/",
        &[("authorization", &bearer(OPERATOR_KEY))],
        b"",
    );
    assert_eq!(operator.status, 401, "the operator key is not an account");
}

#[test]
fn unknown_names_answer_not_found_with_a_stable_code() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({ "public": true }));
    let auth = bearer(&key);

    for path in [
        "/fn/nobody/hello/",
        "/fn/acme/missing/",
        "/fn/acme/hello:7/",
        "/fn/acme/hello:prod/",
    ] {
        let reply = server.get(path, &auth);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert_eq!(reply.code(), "not_found", "{path}");
        assert!(reply.json()["error"]["message"].is_string());
    }
    // Anonymous: a missing version of a public function is 404, anything else 401.
    assert_eq!(server.request("GET", "/fn/acme/hello:7/", &[], b"").status, 404);
    assert_eq!(server.request("GET", "/fn/acme/missing/", &[], b"").status, 401);
    assert_eq!(server.request("GET", "/fn/nobody/hello/", &[], b"").status, 401);
    // Versions stay addressable by number.
    assert_eq!(server.request("GET", "/fn/acme/hello:1/", &[], b"").status, 200);
    // Malformed addresses are bad requests.
    let bad = server.request("GET", "/fn/Acme/hello/", &[], b"");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.code(), "bad_request");
}

#[test]
fn sub_tenant_rules_apply_at_the_trigger() {
    let (server, key) = Server::with_function("multi", ECHO_COMPONENT, json!({ "tenancy": "multi" }));
    let auth = bearer(&key);

    let missing = server.get("/fn/acme/multi/", &auth);
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), "sub_tenant_required");

    let invalid = server.request(
        "GET",
        "/fn/acme/multi/",
        &[("authorization", &auth), ("x-stratus-sub-tenant", "no/slashes")],
        b"",
    );
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.code(), "invalid_sub_tenant");

    let ok = server.request(
        "GET",
        "/fn/acme/multi/",
        &[("authorization", &auth), ("x-stratus-sub-tenant", "cust-42")],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn env_reaches_the_guest_through_wasi_cli_environment() {
    let (server, _key) = Server::with_function(
        "echo",
        ECHO_COMPONENT,
        json!({ "public": true, "env": { "GREETING": "hi there" } }),
    );
    let reply = server.request("GET", "/fn/acme/echo/", &[], b"");
    assert_eq!(reply.json()["env"]["GREETING"], "hi there");
}

#[test]
fn revoked_keys_and_deleted_functions_stop_at_once() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    let second = server.admin(&key, "POST", "/accounts/acme/keys", None);
    assert_eq!(second.status, 201);
    let (id, second_key) = (
        second.json()["id"].as_str().unwrap().to_string(),
        second.json()["key"].as_str().unwrap().to_string(),
    );
    let auth = bearer(&second_key);
    assert_eq!(server.get("/fn/acme/hello/", &auth).status, 200);

    assert_eq!(
        server
            .admin(&key, "DELETE", &format!("/accounts/acme/keys/{id}"), None)
            .status,
        204
    );
    assert_eq!(server.get("/fn/acme/hello/", &auth).status, 401);

    assert_eq!(
        server
            .admin(&key, "DELETE", "/accounts/acme/functions/hello", None)
            .status,
        204
    );
    let gone = server.request("GET", "/fn/acme/hello/", &[("authorization", &bearer(&key))], b"");
    assert_eq!(gone.status, 404);
}

#[test]
fn a_plain_wasi_http_proxy_component_from_wasi_0_2_0_runs_unchanged() {
    let bytes = std::fs::read(PLAIN_PROXY_COMPONENT).unwrap();
    let imports_020 = bytes
        .windows(b"wasi:http/types@0.2.0".len())
        .any(|w| w == b"wasi:http/types@0.2.0");
    assert!(imports_020, "the fixture should import the 0.2.0 interfaces");

    let (server, _key) = Server::with_function("plain", PLAIN_PROXY_COMPONENT, json!({ "public": true }));
    let reply = server.request("GET", "/fn/acme/plain/x/y?z=1", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "plain proxy /x/y?z=1");
}
