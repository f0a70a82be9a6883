//! Write Stratus functions as plain Rust functions.
//!
//! ```
//! use stratus_sdk::{Request, Response};
//!
//! #[stratus_sdk::handler]
//! fn handle(req: Request) -> Response {
//!     Response::text(format!("you asked for {}", req.path()))
//! }
//! ```
//!
//! `cargo build --target wasm32-wasip2 --release` turns the crate (a `cdylib`)
//! into a component that `stratus function deploy` accepts. On any other
//! target the handler is an ordinary function, which unit tests call through
//! [`testing::TestHost`].
//!
//! The guide, with complete `Cargo.toml`s, is the crate's `README.md`.
#![deny(missing_docs)]

pub mod credentials;
mod error;
mod host;
pub mod kv;
pub mod outbound;
mod request;
mod response;
mod router;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// Bindings of the Stratus interfaces, generated from `wit/stratus.wit`.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit/stratus.wit",
        world: "stratus-imports",
    });
}

/// The `http` crate the SDK's types come from, for `outbound` requests.
pub use http;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub use error::Error;
pub use request::Request;
pub use response::{IntoResponse, Json, Response};
pub use router::Router;
pub use stratus_sdk_macro::handler;

/// The guide's code, compiled and run as tests of the crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The project README's function, compiled as a test of the crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ProjectReadmeDoctests;

/// Glue used by the code `#[handler]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use wasip2;

    /// Serves one `wasi:http` request with the author's handler.
    #[cfg(target_arch = "wasm32")]
    pub fn serve(
        request: wasip2::http::types::IncomingRequest,
        out: wasip2::http::types::ResponseOutparam,
        handler: fn(crate::Request) -> crate::Response,
    ) {
        let response = match crate::Request::from_incoming(request) {
            Ok(req) => handler(req),
            Err(message) => crate::Response::text(message).with_status(400),
        };
        // Rust's stdout keeps a line without its newline: what the call
        // printed belongs to its own log, not the next call's.
        {
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
        }
        response.send(out);
    }
}
