use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    Response::text(req.path().to_string())
}

fn main() {}
