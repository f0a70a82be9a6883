//! `GET ?url=U[&aud=A]`: fetches U with `Authorization: Bearer
//! <token_for(A, or U's origin)>`. `?self=/fn/…`: calls that path on this
//! function's own host with `token()`, a nested call. Either way it answers
//! `{"status": …, "body": …}` with what it got, or 502 if nothing came back.
use stratus_sdk::{Request, Response, credentials, outbound};

/// `scheme://authority` of an absolute URL.
fn origin(url: &http::Uri) -> Option<String> {
    Some(format!("{}://{}", url.scheme_str()?, url.authority()?))
}

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    let (url, token) = if let Some(path) = req.query_param("self") {
        let Some(host) = req.authority() else {
            return Response::text("no authority to call back to").with_status(400);
        };
        (format!("http://{host}{path}"), credentials::token())
    } else if let Some(url) = req.query_param("url") {
        let audience = match req.query_param("aud") {
            Some(audience) => audience,
            None => match url.parse::<http::Uri>().ok().as_ref().and_then(origin) {
                Some(origin) => origin,
                None => return Response::text(format!("not an absolute URL: {url}")).with_status(400),
            },
        };
        (url, credentials::token_for(&audience))
    } else {
        return Response::text("use ?url=U[&aud=A] or ?self=/fn/…").with_status(400);
    };

    let request = match http::Request::get(&url)
        .header("authorization", format!("Bearer {token}"))
        .body(Vec::new())
    {
        Ok(request) => request,
        Err(err) => return Response::text(format!("bad URL {url}: {err}")).with_status(400),
    };
    match outbound::send(request) {
        Ok(response) => Response::json(&serde_json::json!({
            "status": response.status().as_u16(),
            "body": String::from_utf8_lossy(response.body()),
        })),
        Err(err) => Response::json(&serde_json::json!({ "error": err.to_string() })).with_status(502),
    }
}
