use stratus_sdk::Response;

#[stratus_sdk::handler]
fn handle(body: String) -> Response {
    Response::text(body)
}

fn main() {}
