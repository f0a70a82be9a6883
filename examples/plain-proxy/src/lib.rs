//! A `wasi:http/proxy` component written against WASI 0.2.0 with the plain
//! `wasi` bindings, as a component from another toolchain would be. It answers
//! `plain proxy {path}` and proves such components run unchanged.

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasi::http::proxy::export!(PlainProxy);

struct PlainProxy;

impl wasi::exports::http::incoming_handler::Guest for PlainProxy {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let fields = Fields::new();
        let _ = fields.append(&"content-type".to_string(), &b"text/plain".to_vec());
        let response = OutgoingResponse::new(fields);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(stream) = body.write() {
            // Short enough for one call: the stream takes up to 4096 bytes at once.
            let _ = stream.blocking_write_and_flush(format!("plain proxy {path}").as_bytes());
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
