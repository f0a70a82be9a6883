//! Counts visits per sub-tenant in KV: `POST /` adds one, `GET /` reads the
//! count. The host gives each caller and sub-tenant a namespace of its own,
//! so the code never has to.

use stratus_sdk::{Error, Json, Request, Response, Router, kv};

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    Router::new().get("/", read).post("/", visit).handle(req)
}

fn read(_req: Request) -> Result<Json<serde_json::Value>, Error> {
    let visits = match kv::get("visits")? {
        Some(bytes) => String::from_utf8(bytes)?.parse::<i64>().unwrap_or(0),
        None => 0,
    };
    Ok(Json(serde_json::json!({ "visits": visits })))
}

fn visit(_req: Request) -> Result<Json<serde_json::Value>, Error> {
    let visits = kv::increment("visits", 1)?;
    Ok(Json(serde_json::json!({ "visits": visits })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_sdk::testing::TestHost;

    #[test]
    fn each_sub_tenant_counts_apart() {
        let host = TestHost::new().with_sub_tenant("alice");
        host.call(handle, Request::post("/", ""));
        let alice = host.call(handle, Request::post("/", ""));
        assert_eq!(alice.body_text(), r#"{"visits":2}"#);

        host.set_sub_tenant(Some("bob"));
        let bob = host.call(handle, Request::get("/"));
        assert_eq!(bob.body_text(), r#"{"visits":0}"#);
    }
}
