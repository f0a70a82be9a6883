//! Misbehaves as asked by `?do=`, so tests can check that the host fails only
//! this call and stays well:
//!
//! - `unreachable`, `overflow` (unbounded recursion), `panic`: trap;
//! - `exit&code=N`: `std::process::exit(N)` before answering;
//! - `fill`: one `memory.fill` over as much memory as it can get;
//! - `headers&n=N`: answers with N headers;
//! - `resources`: creates header maps until the host refuses more;
//! - `body`: answers with a body that never ends;
//! - anything else: `200 ok`.
//!
//! Written against the raw `wasi:http` bindings: the SDK would not let a
//! function do most of this.

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Hostile);

struct Hostile;

fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

// Recursing forever is the point: the host's stack limit must stop it.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(depth % 64) as usize] = depth;
    recurse(depth + 1, std::hint::black_box(sink)) + sink[0]
}

fn answer(out: ResponseOutparam, fields: Fields, text: &str) {
    let response = OutgoingResponse::new(fields);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        let _ = stream.blocking_write_and_flush(text.as_bytes());
    }
    let _ = OutgoingBody::finish(body, None);
}

impl wasip2::exports::http::incoming_handler::Guest for Hostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map_or("", |(_, q)| q);
        match param(query, "do").as_deref() {
            Some("unreachable") => std::process::abort(),
            Some("overflow") => {
                let mut sink = [0u64; 64];
                let n = recurse(0, &mut sink);
                answer(out, Fields::new(), &n.to_string());
            }
            Some("panic") => panic!("asked to panic"),
            Some("exit") => std::process::exit(param(query, "code").and_then(|c| c.parse().ok()).unwrap_or(1)),
            Some("fill") => {
                // Take all the memory there is, then touch it in one go.
                let mut size = 1usize << 30;
                let mut hoard = Vec::<u8>::new();
                while size >= 1 << 16 {
                    if hoard.try_reserve_exact(size).is_ok() {
                        break;
                    }
                    size /= 2;
                }
                let capacity = hoard.capacity();
                // SAFETY: writes only within the reserved capacity.
                unsafe { std::ptr::write_bytes(hoard.as_mut_ptr(), 0x5a, capacity) };
                answer(out, Fields::new(), &format!("filled {capacity} bytes"));
            }
            Some("headers") => {
                let n: usize = param(query, "n").and_then(|n| n.parse().ok()).unwrap_or(40_000);
                let fields = Fields::new();
                let mut set = 0;
                for i in 0..n {
                    if fields.append(&format!("x-h{i}"), b"v".as_slice()).is_ok() {
                        set += 1;
                    }
                }
                answer(out, fields, &format!("set {set} of {n} headers"));
            }
            Some("resources") => {
                let mut made = Vec::new();
                loop {
                    made.push(Fields::new());
                    if made.len() == usize::MAX {
                        break;
                    }
                }
                answer(out, Fields::new(), &made.len().to_string());
            }
            Some("body") => {
                let response = OutgoingResponse::new(Fields::new());
                let Ok(body) = response.body() else { return };
                ResponseOutparam::set(out, Ok(response));
                let Ok(stream) = body.write() else { return };
                let chunk = [b'x'; 4096];
                while stream.blocking_write_and_flush(&chunk).is_ok() {}
            }
            _ => answer(out, Fields::new(), "ok"),
        }
    }
}
