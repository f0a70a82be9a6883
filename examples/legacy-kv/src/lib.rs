//! Counts calls in KV through `stratus:function/kv@0.1.0`, the interface as
//! first published (its WIT is frozen in `wit/`), and answers `legacy {n}`.

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    path: "wit/stratus.wit",
    world: "stratus-imports",
});

wasi::http::proxy::export!(Legacy);

struct Legacy;

impl wasi::exports::http::incoming_handler::Guest for Legacy {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let text = match stratus::function::kv::increment("legacy", 1) {
            Ok(n) => format!("legacy {n}"),
            Err(err) => format!("kv failed: {err:?}"),
        };
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(text.as_bytes());
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
