//! Answers with a JSON picture of the request it received, so callers (and
//! tests) can see exactly what reached the guest.
use std::collections::BTreeMap;

use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    println!("echo {} {}", req.method(), req.path());
    let mut headers = BTreeMap::new();
    for (name, value) in req.headers() {
        headers.insert(
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    Response::json(&serde_json::json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(req.body()),
        "env": std::env::vars().collect::<BTreeMap<_, _>>(),
    }))
}
