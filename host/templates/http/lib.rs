//! An HTTP function: answers `hello, NAME` for `?name=NAME`.

use stratus_sdk::{Error, Request, Response};

#[stratus_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let name = req
        .query_param("name")
        .ok_or_else(|| Error::bad_request("pass ?name=YOUR-NAME"))?;
    Ok(Response::text(format!("hello, {name}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_sdk::testing::TestHost;

    #[test]
    fn greets_by_name_and_asks_for_one() {
        let host = TestHost::new();
        let hello = host.call(handle, Request::get("/?name=ada"));
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.body_text(), "hello, ada\n");

        let missing = host.call(handle, Request::get("/"));
        assert_eq!(missing.status(), 400);
        assert!(missing.body_text().contains("?name="));
    }
}
