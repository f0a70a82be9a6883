use stratus_sdk::{Error, Json, Request};

#[stratus_sdk::handler]
fn handle(req: Request) -> Result<Json<Vec<String>>, Error> {
    let names: Vec<String> = req.json()?;
    if names.is_empty() {
        return Err(Error::bad_request("no names"));
    }
    Ok(Json(names))
}

fn main() {}
