//! Write Stratus functions as plain Rust functions.
//!
//! ```no_run
//! use stratus_sdk::{Request, Response};
//!
//! #[stratus_sdk::handler]
//! fn handle(req: Request) -> Response {
//!     Response::text(format!("you asked for {}", req.path()))
//! }
//! # fn main() {}
//! ```
//!
//! `cargo build --target wasm32-wasip2 --release` turns the crate (a `cdylib`)
//! into a component that `stratus function deploy` accepts.
#![deny(missing_docs)]

pub mod credentials;
pub mod kv;
pub mod outbound;
mod request;
mod response;

/// Bindings of the Stratus interfaces, generated from `wit/stratus.wit`.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit/stratus.wit",
        world: "stratus-imports",
    });
}

pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
pub use request::Request;
pub use response::Response;
pub use stratus_sdk_macro::handler;

/// Glue used by the code `#[handler]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use wasip2;

    use crate::{Request, Response};
    use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    /// Serves one `wasi:http` request with the author's handler.
    pub fn serve(request: IncomingRequest, out: ResponseOutparam, handler: fn(Request) -> Response) {
        let response = match Request::from_incoming(request) {
            Ok(req) => handler(req),
            Err(message) => Response::text(message).with_status(400),
        };
        response.send(out);
    }
}
