//! Outgoing HTTP requests.
//!
//! The host lets a request through only to a `HOST[:PORT]` the function's
//! version lists in `allow_outbound` (`stratus function deploy
//! --allow-outbound HOST:PORT`). Even then a name that resolves to a
//! loopback, private or link-local address is refused unless the operator
//! allowed that address (`stratus serve --allow-private-outbound IP`, also
//! taken by `stratus up`): that is what a local upstream needs. A request to
//! the host's own origin (`/fn/…`, e.g. with [`crate::credentials::token`])
//! is a nested call served inside the host, and needs no entry.
//!
//! A refused request is an [`OutboundError`] whose text names the host and
//! the setting that would allow it; the host writes the same to the
//! function's log.
//!
//! ```no_run
//! use stratus_sdk::{credentials, http, outbound};
//!
//! let request = http::Request::get("https://api.example.com/v1/items")
//!     .header("authorization", format!("Bearer {}", credentials::token_for("https://api.example.com")))
//!     .body(Vec::new())?;
//! let response = outbound::send(request)?;
//! assert!(response.status().is_success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

/// Why a request got no response.
///
/// As a handler's error it answers `502`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundError {
    message: String,
    denied: bool,
}

impl OutboundError {
    /// An error with this text (what a test stub returns, for instance).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            denied: false,
        }
    }

    /// The host's refusal of a request to `authority` (`HOST:PORT`) that
    /// the version's `allow_outbound` does not list.
    pub fn not_allowed(authority: &str) -> Self {
        Self {
            message: format!(
                "the host denied the request to {authority}: it is not in this function's allow-list; \
                 deploy with `--allow-outbound {authority}`"
            ),
            denied: true,
        }
    }

    /// The host's refusal of a request to `authority` because it resolved
    /// to a loopback, private or link-local address.
    pub fn private_address(authority: &str) -> Self {
        Self {
            message: format!(
                "the host denied the request to {authority}: it resolves to a loopback, private or link-local \
                 address, which the operator must allow with `--allow-private-outbound IP` \
                 (a flag of `stratus serve` and `stratus up`)"
            ),
            denied: true,
        }
    }

    /// True when the host refused to send the request at all (allow-list
    /// or private address), rather than the upstream failing.
    pub fn is_denied(&self) -> bool {
        self.denied
    }
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OutboundError {}

/// `HOST:PORT` of an absolute URL, as the allow-list spells it.
#[cfg(target_arch = "wasm32")]
pub(crate) fn authority_of(uri: &http::Uri) -> String {
    let host = uri.host().unwrap_or("");
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
    format!("{host}:{port}")
}

/// Sends `request` (an absolute URL) and waits for the whole response.
pub fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, OutboundError> {
    crate::host::send(request)
}

/// The request over `wasi:http`, for builds that run in the host.
#[cfg(target_arch = "wasm32")]
pub(crate) mod wasi {
    use http::{HeaderName, HeaderValue, Method};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::OutboundError;

    fn failed(what: &str, code: &ErrorCode, authority: &str) -> OutboundError {
        match code {
            ErrorCode::HttpRequestDenied => OutboundError::not_allowed(authority),
            ErrorCode::DestinationIpProhibited => OutboundError::private_address(authority),
            other => OutboundError::new(format!("{what} to {authority}: {other:?}")),
        }
    }

    fn wasi_method(method: &Method) -> WasiMethod {
        match *method {
            Method::GET => WasiMethod::Get,
            Method::HEAD => WasiMethod::Head,
            Method::POST => WasiMethod::Post,
            Method::PUT => WasiMethod::Put,
            Method::DELETE => WasiMethod::Delete,
            Method::CONNECT => WasiMethod::Connect,
            Method::OPTIONS => WasiMethod::Options,
            Method::TRACE => WasiMethod::Trace,
            Method::PATCH => WasiMethod::Patch,
            ref other => WasiMethod::Other(other.as_str().to_string()),
        }
    }

    /// Sends `request` through `wasi:http/outgoing-handler`.
    pub(crate) fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let (parts, body) = request.into_parts();
        let target = super::authority_of(&parts.uri);
        let entries: Vec<(String, Vec<u8>)> = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&entries).map_err(|e| OutboundError::new(format!("header refused: {e:?}")))?;
        let outgoing = OutgoingRequest::new(fields);
        let scheme = match parts.uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") | None => Scheme::Https,
            Some(other) => Scheme::Other(other.to_string()),
        };
        let refused = |what: &str| OutboundError::new(format!("the host refused the {what}"));
        outgoing
            .set_method(&wasi_method(&parts.method))
            .map_err(|()| refused("method"))?;
        outgoing.set_scheme(Some(&scheme)).map_err(|()| refused("scheme"))?;
        outgoing
            .set_authority(parts.uri.authority().map(|a| a.as_str()))
            .map_err(|()| refused("authority"))?;
        outgoing
            .set_path_with_query(parts.uri.path_and_query().map(|p| p.as_str()))
            .map_err(|()| refused("path"))?;
        let outgoing_body = outgoing.body().map_err(|()| refused("body"))?;

        let pending = outgoing_handler::handle(outgoing, None)
            .map_err(|code| failed("the host refused the request", &code, &target))?;
        {
            let stream = outgoing_body.write().map_err(|()| refused("body stream"))?;
            // The stream takes at most 4096 bytes per blocking write.
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| OutboundError::new(format!("writing the request body failed: {e:?}")))?;
            }
        }
        OutgoingBody::finish(outgoing_body, None).map_err(|code| failed("finishing the request", &code, &target))?;

        let incoming = loop {
            match pending.get() {
                Some(result) => break result,
                None => pending.subscribe().block(),
            }
        };
        let response = incoming
            .map_err(|()| OutboundError::new("the response was already taken"))?
            .map_err(|code| failed("the request", &code, &target))?;

        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers().entries() {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
                builder = builder.header(name, value);
            }
        }
        let incoming_body = response
            .consume()
            .map_err(|()| OutboundError::new("the response body was already taken"))?;
        let mut bytes = Vec::new();
        {
            let stream = incoming_body
                .stream()
                .map_err(|()| OutboundError::new("the response body stream is unavailable"))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(err)) => {
                        return Err(OutboundError::new(format!(
                            "reading the response body failed: {}",
                            err.to_debug_string()
                        )));
                    }
                }
            }
        }
        drop(IncomingBody::finish(incoming_body));
        builder
            .body(bytes)
            .map_err(|e| OutboundError::new(format!("the response is not valid HTTP: {e}")))
    }
}
