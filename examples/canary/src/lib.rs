//! `?write=HEX` grows linear memory by 64 pages and fills them with the
//! bitwise complement of HEX; `?scan=HEX` grows memory the same way and counts
//! where the complement of HEX appears anywhere in memory. Both may be given
//! at once, which shows the scan finds what a write leaves.
//!
//! The complement is never stored by the scanner: it compares byte by byte
//! against `!hex[j]`, so a hit can only come from memory someone wrote.

// Reading and writing raw linear memory is the point of this fixture.
#![allow(unsafe_code)]

use stratus_sdk::{Request, Response};

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() < 16 || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(target_arch = "wasm32")]
fn grow() -> Option<(usize, usize)> {
    const PAGES: usize = 64;
    const PAGE: usize = 65536;
    let old = core::arch::wasm32::memory_grow(0, PAGES);
    (old != usize::MAX).then(|| (old * PAGE, (old + PAGES) * PAGE))
}

#[cfg(not(target_arch = "wasm32"))]
fn grow() -> Option<(usize, usize)> {
    None
}

fn write(pattern: &[u8]) -> Option<usize> {
    let (start, end) = grow()?;
    let mut at = start;
    while at + pattern.len() <= end {
        for (j, byte) in pattern.iter().enumerate() {
            // SAFETY: [start, end) was just added by memory.grow and belongs
            // to no Rust object; writes there cannot alias anything.
            unsafe { ((at + j) as *mut u8).write_volatile(!byte) };
        }
        at += pattern.len();
    }
    Some(end - start)
}

fn scan(pattern: &[u8]) -> Option<usize> {
    let (_, end) = grow()?;
    let mut found = 0;
    // Address 0 is never read: it is the null page of the Rust heap layout.
    let mut at = 8;
    while at + pattern.len() <= end {
        // SAFETY: every address below `end` is inside linear memory; volatile
        // reads of plain bytes have no other effect.
        let hit = pattern
            .iter()
            .enumerate()
            .all(|(j, byte)| unsafe { ((at + j) as *const u8).read_volatile() } == !byte);
        if hit {
            found += 1;
            at += pattern.len();
        } else {
            at += 1;
        }
    }
    Some(found)
}

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    let mut answer = Vec::new();
    if let Some(hex) = req.query_param("write") {
        match parse_hex(&hex).and_then(|p| write(&p)) {
            Some(bytes) => answer.push(format!("\"wrote\":{bytes}")),
            None => return Response::text("write=HEX needs 8+ bytes of hex and memory to grow").with_status(400),
        }
    }
    if let Some(hex) = req.query_param("scan") {
        match parse_hex(&hex).and_then(|p| scan(&p)) {
            Some(found) => answer.push(format!("\"found\":{found}")),
            None => return Response::text("scan=HEX needs 8+ bytes of hex and memory to grow").with_status(400),
        }
    }
    Response::text(format!("{{{}}}", answer.join(","))).with_header("content-type", "application/json")
}
