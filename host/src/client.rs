//! The admin API client behind every CLI command except `serve`.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An error the server answered, or a failure to reach it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request.
    #[error("{message} ({status}, {code})")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The stable error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The server could not be reached.
    #[error(
        "cannot reach the Stratus server at {url}: {source} (is `stratus serve` running? set --url or STRATUS_URL)"
    )]
    Connect {
        /// The URL tried.
        url: String,
        /// Why.
        source: anyhow::Error,
    },
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A raw response.
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Talks to one Stratus server.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) using `key`.
    pub fn new(base: &str, key: Option<String>) -> Self {
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Self {
            base: base.trim_end_matches('/').to_string(),
            key,
            http,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns whatever came back.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        collect(self.head(method, path, headers, body).await?).await
    }

    /// GETs an admin route whose body streams (e.g. followed logs); the
    /// response is returned as soon as its head arrives.
    pub async fn stream(&self, path: &str) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        self.stream_with(path, &[]).await
    }

    /// [`Client::stream`] with extra request headers.
    pub async fn stream_with(
        &self,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let response = self
            .head(Method::GET, &format!("/admin/v1{path}"), headers, Bytes::new())
            .await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.refine(api_error(&collect(response).await?)))
    }

    /// Sends a request with the client's key; the answer's head, its body
    /// still to read.
    async fn head(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder().method(method).uri(&url);
        if let Some(key) = &self.key {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Other(e.into()))?;
        self.http.request(request).await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            source: e.into(),
        })
    }

    /// Calls an admin route and decodes the JSON answer (`null` for 204).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        self.admin_with(method, path, body, &[]).await
    }

    /// [`Client::admin`] with extra request headers.
    pub async fn admin_with(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        extra: &[(&str, String)],
    ) -> Result<serde_json::Value, ClientError> {
        let (mut headers, bytes) = match body {
            Some(value) => (
                vec![("content-type", "application/json".to_string())],
                Bytes::from(value.to_string()),
            ),
            None => (Vec::new(), Bytes::new()),
        };
        headers.extend(extra.iter().cloned());
        let reply = self.send(method, &format!("/admin/v1{path}"), &headers, bytes).await?;
        self.decode(reply)
    }

    /// [`decode`], saying how to give a key when none was given and one was needed.
    fn decode(&self, reply: Reply) -> Result<serde_json::Value, ClientError> {
        decode(reply).map_err(|err| self.refine(err))
    }

    /// A 401 without a key says how to give one.
    fn refine(&self, err: ClientError) -> ClientError {
        match err {
            ClientError::Api { status, code, message } if status == StatusCode::UNAUTHORIZED && self.key.is_none() => {
                ClientError::Api {
                    status,
                    code,
                    message: format!("{message}; no key was given: pass --key or set STRATUS_KEY"),
                }
            }
            other => other,
        }
    }

    /// Uploads bytes to an admin route.
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<serde_json::Value, ClientError> {
        let headers = [("content-type", "application/wasm".to_string())];
        let reply = self
            .send(Method::PUT, &format!("/admin/v1{path}"), &headers, Bytes::from(bytes))
            .await?;
        self.decode(reply)
    }
}

/// Turns a reply into its JSON value or the server's error.
pub fn decode(reply: Reply) -> Result<serde_json::Value, ClientError> {
    if reply.status.is_success() {
        if reply.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        return serde_json::from_slice(&reply.body).map_err(|e| ClientError::Other(e.into()));
    }
    Err(api_error(&reply))
}

/// The server's error in a failed reply.
pub fn api_error(reply: &Reply) -> ClientError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_string)
    };
    ClientError::Api {
        status: reply.status,
        code: field("code").unwrap_or_else(|| "unknown".into()),
        message: field("message").unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned()),
    }
}

/// Reads a whole answer.
async fn collect(response: http::Response<hyper::body::Incoming>) -> Result<Reply, ClientError> {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| ClientError::Other(e.into()))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
