//! The smallest Stratus function.
use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(_req: Request) -> Response {
    Response::text("hello from stratus")
}
