use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(_req: Request, _extra: u32) -> Response {
    Response::text("no")
}

fn main() {}
