use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// An HTTP response under construction.
///
/// ```
/// use stratus_sdk::Response;
/// let res = Response::text("made").with_status(201).with_header("x-kind", "demo");
/// assert_eq!(res.status().as_u16(), 201);
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with the given status.
    pub fn new(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// `200` with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// `200` with an `application/octet-stream` body.
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200)
            .with_header("content-type", "application/octet-stream")
            .with_body(body.into())
    }

    /// `200` with `value` serialised as JSON; `500` if it cannot be serialised.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(200)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(err) => Self::text(format!("cannot encode JSON: {err}")).with_status(500),
        }
    }

    /// Replaces the status code; an invalid code becomes `500`.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Sets header `name`, replacing earlier values. Invalid names or values are ignored.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            self.headers.insert(name, value);
        }
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Mutable access to the headers.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The first value of header `name` if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as text (invalid UTF-8 replaced), for tests and logs.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn body_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn send(self, out: wasip2::http::types::ResponseOutparam) {
        use std::io::Write as _;
        use wasip2::http::types::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};

        let mut entries: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .filter(|(name, _)| *name != http::header::CONTENT_LENGTH)
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect();
        entries.push(("content-length".to_string(), self.body.len().to_string().into_bytes()));

        // A header the host forbids (e.g. hop-by-hop) must not lose the whole
        // response: fall back to setting the allowed ones one by one.
        let fields = Fields::from_list(&entries).unwrap_or_else(|_| {
            let fields = Fields::new();
            for (name, value) in &entries {
                let _ = fields.append(name, value);
            }
            fields
        });
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(self.status.as_u16());
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(mut stream) = body.write() {
            // The host has the status already; a failed write means the client
            // went away, and there is nobody left to tell.
            let _ = stream.write_all(&self.body);
            let _ = stream.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

/// What a handler may return: a [`Response`], or anything that becomes one.
///
/// | value | response |
/// |---|---|
/// | [`Response`] | itself |
/// | `String`, `&'static str` | `200`, `text/plain` |
/// | [`Json`]`(value)` | `200`, `application/json` |
/// | `()` | `204` |
/// | [`StatusCode`] | that status, empty |
/// | `(StatusCode, T)` | `T`'s response with that status |
/// | `Result<T, E>` | `T`'s response, or `E`'s (a `500` if `E`'s would be a success, e.g. `Err(String)`) |
/// | [`crate::Error`] | its status, and a JSON body `{"error":{"code","message"}}` |
/// | [`crate::kv::KvError`], [`crate::outbound::OutboundError`], `Box<dyn Error>` | as [`crate::Error`] maps them |
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a Stratus response",
    label = "a handler must return this",
    note = "return `stratus_sdk::Response`, a `String`, `Json(value)`, or `Result<T, E>` where `T` and `E` \
            are such (e.g. `Result<Response, stratus_sdk::Error>`)"
)]
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(204)
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self.as_u16())
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0.as_u16())
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(err) => {
                let response = err.into_response();
                // `Err("…".to_string())` is an error: never a 200.
                if response.status().as_u16() < 400 {
                    response.with_status(500)
                } else {
                    response
                }
            }
        }
    }
}

/// A value answered as JSON: `Ok(Json(todos))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}
