use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(_req: &Request) -> Response {
    Response::text("by reference")
}

fn main() {}
