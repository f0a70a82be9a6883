use stratus_sdk::{Request, Response};

#[stratus_sdk::handler]
fn handle(req: Request) -> Result<Response, String> {
    if req.path() == "/" {
        return Err("something went wrong".to_string());
    }
    Ok(Response::text("fine"))
}

fn main() {
    let failed = handle(Request::get("/"));
    assert_eq!(stratus_sdk::IntoResponse::into_response(failed).status(), 500);
}
