//! Answers with the invocation's claims; with `?token=1` also a token for
//! Stratus endpoints, and with `?aud=A` a token for audience A.
use stratus_sdk::{Request, Response, credentials};

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    let mut answer = match serde_json::to_value(credentials::claims()) {
        Ok(value) => value,
        Err(err) => return Response::text(format!("cannot encode claims: {err}")).with_status(500),
    };
    if req.query_param("token").is_some() {
        answer["token"] = serde_json::json!(credentials::token());
    }
    if let Some(audience) = req.query_param("aud") {
        answer["token_for"] = serde_json::json!(credentials::token_for(&audience));
    }
    Response::json(&answer)
}
