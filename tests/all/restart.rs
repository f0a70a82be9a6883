//! SPEC §7, §9: a restart keeps everything and does not recompile.

use serde_json::json;

use crate::harness::*;

#[test]
fn a_restart_keeps_every_record_and_loads_code_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key;
    {
        let server = Server::spawn(&data, &[]);
        key = server.create_account("acme");
        server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "public": true }));
        server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({ "public": false }));
        server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
        // A crash, not a clean stop: acknowledged writes must already be on disk.
        server.kill();
    }
    let server = Server::spawn(&data, &[]);
    let functions = server.admin(&key, "GET", "/accounts/acme/functions", None).json();
    assert_eq!(functions["functions"].as_array().unwrap().len(), 2);
    let versions = server
        .admin(&key, "GET", "/accounts/acme/functions/hello/versions", None)
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    let auth = bearer(&key);
    let reply = server.get("/fn/acme/hello/", &auth);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-stratus-version"), Some("2"));
    assert_eq!(
        server.request("GET", "/fn/acme/hello:1/", &[], b"").status,
        200,
        "version 1 is still public"
    );
    assert_eq!(server.get("/fn/acme/echo/", &auth).status, 200);

    assert_eq!(
        server.metric("stratus_compiles_total"),
        0.0,
        "nothing was recompiled after the restart"
    );
    assert!(server.metric("stratus_code_cache_hits_total") >= 2.0);
    assert!(server.log().contains("cache_hit=true"), "{}", server.log());
}
