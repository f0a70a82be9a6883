//! Routes by method and path pattern, with path parameters.

use http::Method;

use crate::request::Request;
use crate::response::{IntoResponse, Response};

/// Sends each request to the handler of the first route whose method and
/// path pattern match it.
///
/// A pattern is a path whose segments may be `{name}` (one segment, read
/// with [`Request::param`]) or, last, `{*name}` (the rest of the path).
/// A trailing `/` does not matter. No route for the path answers `404`; a
/// route for the path but not the method answers `405` with `Allow`. `HEAD`
/// is served by the `GET` route (the host sends its headers, not its body).
///
/// ```
/// use stratus_sdk::{Error, Json, Request, Response, Router};
///
/// fn item(req: Request) -> Result<Json<String>, Error> {
///     let id = req.param("id").ok_or_else(|| Error::bad_request("no id"))?;
///     Ok(Json(format!("item {id}")))
/// }
///
/// #[stratus_sdk::handler]
/// fn handle(req: Request) -> Response {
///     Router::new()
///         .get("/", |_| "the list")
///         .get("/items/{id}", item)
///         .handle(req)
/// }
///
/// assert_eq!(handle(Request::get("/items/7")).body_text(), "\"item 7\"");
/// assert_eq!(handle(Request::get("/nope")).status(), 404);
/// let wrong = handle(Request::delete("/items/7"));
/// assert_eq!((wrong.status().as_u16(), wrong.header("allow")), (405, Some("GET, HEAD")));
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

type Handler = Box<dyn Fn(Request) -> Response>;

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    let parts = segments(pattern);
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(
            |(i, part)| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => match name.strip_prefix('*') {
                    Some(rest) if i == last => Segment::Rest(rest.to_string()),
                    Some(_) => panic!("in route {pattern:?}: a `{{*name}}` segment must be the last"),
                    None => Segment::Param(name.to_string()),
                },
                None => Segment::Literal((*part).to_string()),
            },
        )
        .collect()
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The parameters of `path` if it matches `pattern`.
fn matches(pattern: &[Segment], path: &[&str]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Rest(name) => {
                let rest: Vec<String> = path.get(i..).unwrap_or_default().iter().map(|s| decode(s)).collect();
                params.push((name.clone(), rest.join("/")));
                return Some(params);
            }
            Segment::Literal(literal) => {
                if path.get(i).map(|s| decode(s)) != Some(literal.clone()) {
                    return None;
                }
            }
            Segment::Param(name) => params.push((name.clone(), decode(path.get(i)?))),
        }
    }
    (path.len() == pattern.len()).then_some(params)
}

impl Router {
    /// A router with no routes (everything is `404`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` and `pattern`.
    ///
    /// # Panics
    ///
    /// If `{*name}` is not the last segment of `pattern`.
    pub fn route<R: IntoResponse>(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        self.routes.push(Route {
            method,
            pattern: parse_pattern(pattern),
            handler: Box::new(move |req| handler(req).into_response()),
        });
        self
    }

    /// Adds a `GET` route (which also serves `HEAD`).
    pub fn get<R: IntoResponse>(self, pattern: &str, handler: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::GET, pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post<R: IntoResponse>(self, pattern: &str, handler: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::POST, pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put<R: IntoResponse>(self, pattern: &str, handler: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::PUT, pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch<R: IntoResponse>(self, pattern: &str, handler: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::PATCH, pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete<R: IntoResponse>(self, pattern: &str, handler: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::DELETE, pattern, handler)
    }

    /// Answers `req` with the first matching route.
    pub fn handle(&self, mut req: Request) -> Response {
        let path = req.path().to_string();
        let path = segments(&path);
        let head = req.method() == Method::HEAD;
        let mut allowed: Vec<&Method> = Vec::new();
        for route in &self.routes {
            let Some(params) = matches(&route.pattern, &path) else {
                continue;
            };
            if route.method == req.method() || (head && route.method == Method::GET) {
                req.set_params(params);
                // For HEAD the body stays: its length is the GET's, and the
                // HTTP server never sends the body of a HEAD answer.
                return (route.handler)(req);
            }
            if !allowed.contains(&&route.method) {
                allowed.push(&route.method);
            }
        }
        if allowed.is_empty() {
            return crate::Error::not_found(format!("no route for {}", req.path())).into_response();
        }
        if allowed.contains(&&Method::GET) {
            allowed.push(&Method::HEAD);
        }
        let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
        crate::Error::new(
            405,
            format!("{} is not allowed on {}; allowed: {allow}", req.method(), req.path()),
        )
        .into_response()
        .with_header("allow", &allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_bind_parameters_and_the_rest() {
        let router = Router::new()
            .get("/", |_| "root")
            .get("/todos/{id}", |req: Request| {
                format!("todo {}", req.param("id").unwrap_or("?"))
            })
            .get("/files/{*path}", |req: Request| {
                req.param("path").unwrap_or("?").to_string()
            })
            .post("/todos", |_| (http::StatusCode::CREATED, "made"));
        assert_eq!(router.handle(Request::get("/")).body_text(), "root");
        assert_eq!(router.handle(Request::get("/todos/a%20b/")).body_text(), "todo a b");
        assert_eq!(router.handle(Request::get("/files/a/b/c.txt")).body_text(), "a/b/c.txt");
        assert_eq!(router.handle(Request::post("/todos", "")).status().as_u16(), 201);
        assert_eq!(router.handle(Request::get("/todos/1/2")).status().as_u16(), 404);
        let head = router.handle(Request::builder(Method::HEAD, "/", Vec::new()));
        assert_eq!((head.status().as_u16(), head.body_text().as_str()), (200, "root"));
        let wrong = router.handle(Request::delete("/todos"));
        assert_eq!((wrong.status().as_u16(), wrong.header("allow")), (405, Some("POST")));
    }
}
