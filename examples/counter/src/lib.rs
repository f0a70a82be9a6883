//! Counts calls twice: in instance memory, and in the KV key `count`.
//!
//! A single-use environment always answers `memory: 1`; a warm one counts up
//! within its partition. The KV count is shared by every call of the same
//! caller and sub-tenant.
//!
//! Each call prints `call N` without a newline.
//!
//! `/claim` sets the KV key `owner` to the request body only if it is still
//! absent (compare-and-set), and answers who holds it.
use std::sync::atomic::{AtomicU64, Ordering};

use stratus_sdk::{Request, Response};

static CALLS: AtomicU64 = AtomicU64::new(0);

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    if req.path() == "/claim" {
        return match stratus_sdk::kv::compare_and_set("owner", None, Some(req.body())) {
            Ok(won) => {
                let holder = stratus_sdk::kv::get("owner").ok().flatten().unwrap_or_default();
                Response::text(format!(
                    "{} {}",
                    if won { "won" } else { "lost" },
                    String::from_utf8_lossy(&holder)
                ))
            }
            Err(err) => Response::text(format!("kv failed: {err}")).with_status(500),
        };
    }
    let memory = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    // No newline: the SDK flushes it into this call's log.
    print!("call {memory}");
    match stratus_sdk::kv::increment("count", 1) {
        Ok(kv) => Response::text(format!("{{\"memory\":{memory},\"kv\":{kv}}}"))
            .with_header("content-type", "application/json"),
        Err(err) => Response::text(format!("kv failed: {err}")).with_status(500),
    }
}
