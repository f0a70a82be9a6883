//! A todo list per sub-tenant, kept in KV:
//!
//! - `GET /` lists the todos,
//! - `POST /` with `{"title": "…"}` adds one (201),
//! - `GET /{id}` reads one, `DELETE /{id}` removes it (204); 404 if absent.
//!
//! Deployed with `--tenancy multi`, every call names a sub-tenant, and the
//! host gives each its own KV namespace: one sub-tenant never sees
//! another's todos, without the code doing anything.

use serde::{Deserialize, Serialize};
use stratus_sdk::{Error, Json, Request, Response, Router, StatusCode, kv};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Todo {
    pub id: u64,
    pub title: String,
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

#[stratus_sdk::handler]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/", list)
        .post("/", add)
        .get("/{id}", read)
        .delete("/{id}", remove)
        .handle(req)
}

/// Zero-padded, so KV's byte order is the order of the ids.
fn key(id: u64) -> String {
    format!("todo/{id:020}")
}

fn id_of(req: &Request) -> Result<u64, Error> {
    let id = req.param("id").unwrap_or_default();
    id.parse().map_err(|_| Error::bad_request(format!("{id:?} is not a todo id")))
}

fn list(_req: Request) -> Result<Json<Vec<Todo>>, Error> {
    let mut todos = Vec::new();
    let mut cursor = None;
    loop {
        let page = kv::list("todo/", cursor.as_deref(), 100)?;
        for (_, value) in &page.entries {
            todos.push(serde_json::from_slice(value)?);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(Json(todos)),
        }
    }
}

fn add(req: Request) -> Result<(StatusCode, Json<Todo>), Error> {
    let new: NewTodo = req.json()?;
    if new.title.trim().is_empty() {
        return Err(Error::bad_request("a todo needs a title"));
    }
    let id = kv::increment("next-id", 1)? as u64;
    let todo = Todo { id, title: new.title };
    kv::set(&key(id), serde_json::to_vec(&todo)?)?;
    Ok((StatusCode::CREATED, Json(todo)))
}

fn read(req: Request) -> Result<Json<Todo>, Error> {
    let id = id_of(&req)?;
    let stored = kv::get(&key(id))?.ok_or_else(|| Error::not_found(format!("no todo {id}")))?;
    Ok(Json(serde_json::from_slice(&stored)?))
}

fn remove(req: Request) -> Result<StatusCode, Error> {
    let id = id_of(&req)?;
    if kv::delete(&key(id))? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(format!("no todo {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_sdk::testing::TestHost;

    fn add_todo(host: &TestHost, title: &str) -> Todo {
        let res = host.call(handle, Request::post("/", "").with_json(&serde_json::json!({ "title": title })));
        assert_eq!(res.status(), 201, "{}", res.body_text());
        res.body_json().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn add_list_read_and_remove() {
        let host = TestHost::new().with_sub_tenant("alice");
        let milk = add_todo(&host, "milk");
        let eggs = add_todo(&host, "eggs");

        let all: Vec<Todo> = host.call(handle, Request::get("/")).body_json().unwrap_or_default();
        assert_eq!(all, [milk.clone(), eggs.clone()]);

        let one: Todo = host
            .call(handle, Request::get(&format!("/{}", milk.id)))
            .body_json()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one, milk);

        assert_eq!(host.call(handle, Request::delete(&format!("/{}", milk.id))).status(), 204);
        assert_eq!(host.call(handle, Request::get(&format!("/{}", milk.id))).status(), 404);
        assert_eq!(host.call(handle, Request::put("/", "")).status(), 405);
        assert_eq!(host.call(handle, Request::post("/", "not json")).status(), 400);
    }

    #[test]
    fn sub_tenants_never_see_each_others_todos() {
        let host = TestHost::new().with_sub_tenant("alice");
        add_todo(&host, "alice's secret");
        host.set_sub_tenant(Some("bob"));
        let bobs: Vec<Todo> = host.call(handle, Request::get("/")).body_json().unwrap_or_default();
        assert!(bobs.is_empty());
    }
}
