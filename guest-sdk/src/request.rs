use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
#[cfg(target_arch = "wasm32")]
use wasip2::http::types::{IncomingBody, IncomingRequest, Method as WasiMethod};
#[cfg(target_arch = "wasm32")]
use wasip2::io::streams::StreamError;

/// An incoming HTTP request, with its body already read.
///
/// The path is the part after the function's address: a call to
/// `/fn/acme/hello/greet?x=1` arrives here as path `/greet`, query `x=1`.
///
/// In a unit test, build one with [`Request::get`], [`Request::post`] and
/// friends:
///
/// ```
/// use stratus_sdk::Request;
/// let req = Request::post("/todos?draft=1", r#"{"title":"milk"}"#).with_header("x-trace", "1");
/// assert_eq!((req.path(), req.query_param("draft").as_deref()), ("/todos", Some("1")));
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    uri: Uri,
    authority: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    params: Vec<(String, String)>,
}

impl Request {
    /// Builds a request by hand, for unit tests of a handler.
    pub fn new(method: Method, uri: Uri, headers: HeaderMap, body: Vec<u8>) -> Self {
        Self {
            method,
            uri,
            authority: None,
            headers,
            body,
            params: Vec::new(),
        }
    }

    /// A request with `method` for `path_and_query`, e.g. `/todos/7?full=1`.
    ///
    /// # Panics
    ///
    /// If `path_and_query` is not a valid URI path: this is for tests.
    pub fn builder(method: Method, path_and_query: &str, body: impl Into<Vec<u8>>) -> Self {
        let uri = path_and_query
            .parse::<Uri>()
            .unwrap_or_else(|e| panic!("{path_and_query:?} is not a valid request path: {e}"));
        Self::new(method, uri, HeaderMap::new(), body.into())
    }

    /// A `GET` of `path_and_query` (see [`Request::builder`]).
    pub fn get(path_and_query: &str) -> Self {
        Self::builder(Method::GET, path_and_query, Vec::new())
    }

    /// A `POST` of `body` to `path_and_query` (see [`Request::builder`]).
    pub fn post(path_and_query: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::builder(Method::POST, path_and_query, body)
    }

    /// A `PUT` of `body` to `path_and_query` (see [`Request::builder`]).
    pub fn put(path_and_query: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::builder(Method::PUT, path_and_query, body)
    }

    /// A `DELETE` of `path_and_query` (see [`Request::builder`]).
    pub fn delete(path_and_query: &str) -> Self {
        Self::builder(Method::DELETE, path_and_query, Vec::new())
    }

    /// Adds header `name: value`. Invalid names or values are ignored.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            self.headers.append(name, value);
        }
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Replaces the body with `value` as JSON and sets `content-type`.
    pub fn with_json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|e| panic!("cannot encode JSON: {e}"));
        self.with_header("content-type", "application/json").with_body(body)
    }

    /// The value of path parameter `name` (`{name}` in a [`crate::Router`]
    /// pattern), percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// Sets the authority, for unit tests of a handler.
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// The host (and port) the client addressed, e.g. `127.0.0.1:8080`: the
    /// host's own origin, to which `/fn/…` requests are nested calls.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path and query as one URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The path, always starting with `/`.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw query string without the `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// All request headers; names are lower-case.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name` if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text; otherwise a `400` that says so.
    pub fn text(&self) -> Result<&str, crate::Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| crate::Error::bad_request(format!("the request body is not UTF-8 text: {e}")))
    }

    /// The body parsed as JSON; otherwise a `400` that says why. (Only the
    /// caller's own body is blamed on the caller: other JSON that fails to
    /// parse in a handler is a `500`.)
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| crate::Error::bad_request(format!("the request body is not the JSON expected: {e}")))
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_incoming(request: IncomingRequest) -> Result<Self, String> {
        let method = match request.method() {
            WasiMethod::Get => Method::GET,
            WasiMethod::Head => Method::HEAD,
            WasiMethod::Post => Method::POST,
            WasiMethod::Put => Method::PUT,
            WasiMethod::Delete => Method::DELETE,
            WasiMethod::Connect => Method::CONNECT,
            WasiMethod::Options => Method::OPTIONS,
            WasiMethod::Trace => Method::TRACE,
            WasiMethod::Patch => Method::PATCH,
            WasiMethod::Other(other) => Method::from_bytes(other.as_bytes()).map_err(|e| format!("bad method: {e}"))?,
        };
        let uri = request
            .path_with_query()
            .unwrap_or_else(|| "/".to_string())
            .parse::<Uri>()
            .map_err(|e| format!("bad path: {e}"))?;

        let mut headers = HeaderMap::new();
        for (name, value) in request.headers().entries() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("bad header: {e}"))?;
            let value = HeaderValue::from_bytes(&value).map_err(|e| format!("bad header: {e}"))?;
            headers.append(name, value);
        }

        let body = read_body(&request)?;
        Ok(Self {
            method,
            uri,
            authority: request.authority(),
            headers,
            body,
            params: Vec::new(),
        })
    }
}

#[cfg(target_arch = "wasm32")]
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let incoming = request
        .consume()
        .map_err(|()| "request body already taken".to_string())?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "request body stream unavailable".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(err)) => {
                    return Err(format!("reading the request body failed: {}", err.to_debug_string()));
                }
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(body)
}
