//! The error a handler returns with `?`, and the status each error maps to.

use std::fmt;

use http::StatusCode;

use crate::kv::KvError;
use crate::outbound::OutboundError;
use crate::response::{IntoResponse, Response};

/// An error that answers with an HTTP status.
///
/// Any error converts into it with `?`; the status depends on what it was:
///
/// | error | status |
/// |---|---|
/// | [`Error::new`] and its shorthands | the one given |
/// | [`KvError::TooLarge`] | 413 |
/// | [`KvError::QuotaExceeded`] | 507 |
/// | [`KvError::NotAnInteger`] | 500 |
/// | [`KvError::Unavailable`] | 503 |
/// | [`OutboundError`] | 502 |
/// | anything else (including JSON that is not the request's) | 500 |
///
/// [`crate::Request::json`] and [`crate::Request::text`] return an `Error`
/// already: `400`, saying why the caller's body does not parse.
///
/// The body is `{"error":{"code":"not_found","message":"…"}}`, the shape of
/// the host's own errors. A 5xx error that came from another error with `?`
/// tells the caller only its status and the invocation id, and writes the
/// whole error to stderr, which is the function's log (`stratus logs FN
/// --invocation ID`): internals stay with the function's owner.
///
/// ```
/// use stratus_sdk::{Error, Json, Request};
///
/// fn read(req: &Request) -> Result<Json<serde_json::Value>, Error> {
///     let id = req.param("id").ok_or_else(|| Error::bad_request("no id"))?;
///     let stored = stratus_sdk::kv::get(&format!("todo/{id}"))?;
///     let todo = stored.ok_or_else(|| Error::not_found(format!("no todo {id}")))?;
///     Ok(Json(serde_json::from_slice(&todo)?))
/// }
/// ```
pub struct Error {
    status: StatusCode,
    message: String,
    /// Shown to the caller rather than only logged.
    public: bool,
}

impl Error {
    /// An error answering `status` with `message`; an invalid status becomes 500.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
            public: true,
        }
    }

    /// `400 Bad Request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// `404 Not Found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// `409 Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    /// `500 Internal Server Error`, with a message the caller sees.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// The status it answers.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn converted(status: u16, message: String) -> Self {
        Self {
            public: status < 500,
            ..Self::new(status, message)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {})", self.status.as_u16(), self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.message)
    }
}

/// The status of an error `?` converted, by its type.
fn status_of(err: &(dyn std::error::Error + 'static)) -> u16 {
    if let Some(kv) = err.downcast_ref::<KvError>() {
        return match kv {
            KvError::TooLarge(_) => 413,
            KvError::QuotaExceeded(_) => 507,
            KvError::NotAnInteger(_) => 500,
            KvError::Unavailable(_) => 503,
        };
    }
    if err.is::<OutboundError>() {
        return 502;
    }
    500
}

// `Error` itself is not a `std::error::Error`: that is what lets every
// error convert into it (the blanket impl would otherwise overlap `From<T>
// for T`).
impl<E: std::error::Error + 'static> From<E> for Error {
    fn from(err: E) -> Self {
        let status = status_of(&err);
        Self::converted(status, err.to_string())
    }
}

/// The machine-readable code of a status: its reason in snake case.
fn code_of(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_")
        .replace('\'', "")
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let claims = crate::host::current_claims();
        if self.status.is_server_error() {
            eprintln!("error: {} (answered {})", self.message, self.status.as_u16());
        }
        let message = if self.public {
            self.message
        } else {
            match claims {
                Some(c) => format!(
                    "{}: the function's log has the details (`stratus logs {}/{} --invocation {}`)",
                    self.status.canonical_reason().unwrap_or("error"),
                    c.owner,
                    c.function,
                    c.invocation_id
                ),
                None => self.status.canonical_reason().unwrap_or("error").to_string(),
            }
        };
        Response::json(&serde_json::json!({
            "error": { "code": code_of(self.status), "message": message }
        }))
        .with_status(self.status.as_u16())
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        Error::from(self).into_response()
    }
}

impl IntoResponse for OutboundError {
    fn into_response(self) -> Response {
        Error::from(self).into_response()
    }
}

impl IntoResponse for Box<dyn std::error::Error> {
    fn into_response(self) -> Response {
        let status = status_of(self.as_ref());
        Error::converted(status, self.to_string()).into_response()
    }
}

impl IntoResponse for Box<dyn std::error::Error + Send + Sync> {
    fn into_response(self) -> Response {
        let status = status_of(self.as_ref());
        Error::converted(status, self.to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_statuses() {
        let cases: Vec<(Error, u16)> = vec![
            (KvError::TooLarge("k".into()).into(), 413),
            (KvError::QuotaExceeded("q".into()).into(), 507),
            (KvError::Unavailable("u".into()).into(), 503),
            (OutboundError::new("o").into(), 502),
            (
                serde_json::from_str::<u8>("x")
                    .err()
                    .map_or_else(|| Error::internal("parsed"), Error::from),
                500,
            ),
            (
                crate::Request::post("/", "not json")
                    .json::<u8>()
                    .err()
                    .unwrap_or_else(|| Error::internal("parsed")),
                400,
            ),
            (std::io::Error::other("disk").into(), 500),
            (Error::not_found("none"), 404),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
        }
        assert_eq!(code_of(StatusCode::NOT_FOUND), "not_found");
        assert_eq!(code_of(StatusCode::INSUFFICIENT_STORAGE), "insufficient_storage");
    }

    #[test]
    fn converted_server_errors_keep_their_text_from_the_caller() {
        let hidden = Error::from(std::io::Error::other("secret path /etc/x")).into_response();
        assert_eq!(hidden.status().as_u16(), 500);
        assert!(!hidden.body_text().contains("secret"), "{}", hidden.body_text());
        let shown = Error::not_found("no todo 7").into_response();
        let body: serde_json::Value = shown.body_json().unwrap_or_default();
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["message"], "no todo 7");
    }
}
