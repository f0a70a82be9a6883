//! Fetches the URL in the `UPSTREAM` environment variable and answers with
//! its status and body. The host lets the request through only to a
//! `HOST:PORT` the version allows (`--allow-outbound`).

use stratus_sdk::{Error, Request, Response, credentials, http, outbound};

#[stratus_sdk::handler]
fn handle(_req: Request) -> Result<Response, Error> {
    let url = std::env::var("UPSTREAM").map_err(|_| Error::internal("deploy with --env UPSTREAM=URL"))?;
    fetch(&url)
}

/// GETs `url` with a token for it, and answers what it answered.
fn fetch(url: &str) -> Result<Response, Error> {
    let request = http::Request::get(url)
        // A token only this upstream accepts, for this invocation only.
        .header("authorization", format!("Bearer {}", credentials::token_for(url)))
        .body(Vec::new())?;
    let upstream = outbound::send(request)?;
    Ok(Response::bytes(upstream.body().clone()).with_status(upstream.status().as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_sdk::outbound::OutboundError;
    use stratus_sdk::testing::TestHost;

    const URL: &str = "https://api.example.com/status";

    #[test]
    fn answers_with_what_the_upstream_said() {
        let host = TestHost::new().stub_outbound(URL, http::Response::new(b"all good".to_vec()));
        let response = host.call(|_| fetch(URL), Request::get("/"));
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_text(), "all good");
        let sent = host.sent();
        let auth = sent[0].headers()["authorization"].to_str().unwrap_or("");
        assert!(auth.starts_with("Bearer "), "{auth}");
    }

    #[test]
    fn a_denied_request_is_a_502_that_says_why() {
        let host = TestHost::new().stub_outbound_error(URL, OutboundError::not_allowed("api.example.com:443"));
        let response = host.call(|_| fetch(URL), Request::get("/"));
        assert_eq!(response.status(), 502);
    }
}
