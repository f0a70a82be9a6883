//! Burns CPU: `?ms=N` spins for N milliseconds then answers; without `ms` it
//! spins until the host stops it.
use std::time::{Duration, Instant};

use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    let limit = req
        .query_param("ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    let start = Instant::now();
    let mut spins: u64 = 0;
    while limit.is_none_or(|limit| start.elapsed() < limit) {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    Response::text(format!("spun {} ms", start.elapsed().as_millis()))
}
