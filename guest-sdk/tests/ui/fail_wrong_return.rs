use stratus_sdk::Request;

#[stratus_sdk::handler]
fn handle(_req: Request) -> u32 {
    7
}

fn main() {}
