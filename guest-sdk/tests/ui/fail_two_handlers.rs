use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn first(_req: Request) -> Response {
    Response::text("one")
}

mod more {
    use stratus_sdk::{Request, Response};

    #[stratus_sdk::handler]
    fn second(_req: Request) -> Response {
        Response::text("two")
    }
}

fn main() {}
