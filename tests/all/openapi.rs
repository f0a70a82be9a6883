//! The admin API's OpenAPI document: served without a key, complete, and
//! only ever describing routes that exist.

use serde_json::{Value, json};

use crate::harness::*;

fn document(server: &Server) -> Value {
    let reply = server.request("GET", "/admin/v1/openapi.json", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[test]
fn the_document_is_served_without_a_key_and_its_references_resolve() {
    let server = Server::start();
    let doc = document(&server);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Stratus admin API");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let schemas = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "{reference} points at no schema");
    }
    // The request bodies say what a deploy and an alias take.
    let deploy = &schemas["Deploy"]["properties"];
    for field in [
        "blob",
        "public",
        "tenancy",
        "reuse",
        "timeout_ms",
        "memory_mb",
        "env",
        "allow_outbound",
    ] {
        assert!(deploy[field].is_object(), "Deploy lacks {field}");
    }
    assert!(schemas["PutAlias"]["properties"]["weight"].is_object());
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The routes every other test (and the CLI) uses reach their handlers only
/// through the table the document is built from; this checks the other way:
/// every documented operation reaches a handler on a real server.
#[test]
fn every_documented_operation_is_served_and_nothing_else_is() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    let doc = document(&server);
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let mut operations = 0;
    for (template, item) in &paths {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            assert!(operation["summary"].is_string(), "{method} {template} has no summary");
            // Objects that do not exist, in an account that does: each handler
            // then answers its own refusal, which never reads "no admin route".
            let path = template
                .replace("{account}", "acme")
                .replace("{function}", "nope")
                .replace("{version}", "9")
                .replace("{sha256}", &"0".repeat(64))
                .replace("{qualifier}", "nope")
                .replace("{grantee}", "nobody")
                .replace("{alias}", "nope")
                .replace("{name}", "nope")
                .replace("{key_id}", "nope");
            assert!(!path.contains('{'), "unfilled parameter in {template}");
            let method = method.to_uppercase();
            // A key for the account's own routes, the operator's for the rest.
            let who = if path.starts_with("/admin/v1/accounts/acme/") {
                key.as_str()
            } else {
                OPERATOR_KEY
            };
            let auth = bearer(who);
            let body: &[u8] = if operation["requestBody"].is_object() {
                b"{}"
            } else {
                b""
            };
            let reply = server.request(
                &method,
                &path,
                &[("authorization", &auth), ("content-type", "application/json")],
                body,
            );
            assert!(
                !(reply.status == 404 && reply.text().contains("no admin route")) && reply.status != 405,
                "{method} {path}: {} {}",
                reply.status,
                reply.text()
            );
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");

    // A method or path the document does not list is not served, even where
    // a neighbouring route exists.
    let auth = bearer(OPERATOR_KEY);
    for (method, path) in [
        ("PATCH", "/admin/v1/accounts"),
        ("PUT", "/admin/v1/accounts/acme"),
        ("GET", "/admin/v1/accounts/acme/functions/hello/versions/1/extra"),
    ] {
        let reply = server.request(method, path, &[("authorization", &auth)], b"");
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text());
        assert!(
            reply.text().contains("no admin route"),
            "{method} {path}: {}",
            reply.text()
        );
        assert!(
            paths
                .get(path)
                .and_then(|item| item.get(method.to_lowercase()))
                .is_none(),
            "{method} {path} is documented"
        );
    }
}
