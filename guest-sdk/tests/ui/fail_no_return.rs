use stratus_sdk::Request;

#[stratus_sdk::handler]
fn handle(_req: Request) {}

fn main() {}
