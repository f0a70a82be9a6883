use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
async fn handle(_req: Request) -> Response {
    Response::text("no")
}

fn main() {}
