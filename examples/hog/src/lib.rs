//! Grows its memory until allocation fails; the host must end only this call.
use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(_req: Request) -> Response {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really used, not just reserved.
        hoard.push(vec![0xA5; 1 << 20]);
        let total: usize = hoard.iter().map(Vec::len).sum();
        if total == usize::MAX {
            break;
        }
    }
    Response::text(format!("held {} chunks", hoard.len()))
}
