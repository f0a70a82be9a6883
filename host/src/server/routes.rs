//! The admin API's routes as data. The router admits a request only if its
//! method and path are here, and the OpenAPI document is built from this
//! table, so a route cannot be served without being described.

use http::Method;

/// Who may call a route (checked by its handler; listed for the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No credentials.
    Anyone,
    /// The operator key only.
    Operator,
    /// Any valid key: the operator's or an account's.
    AnyKey,
    /// The operator, or a key of the account in the path.
    Owner,
}

/// What a route reads from its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing.
    None,
    /// A JSON object: the name of its schema in the document.
    Json(&'static str),
    /// Raw bytes (a component).
    Bytes,
}

/// One admin route.
#[derive(Debug)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// The path under `/admin/v1`; `{name}` stands for one segment.
    pub path: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// Who may call it.
    pub caller: Caller,
    /// Its request body.
    pub input: Input,
    /// Query parameters: name, description.
    pub query: &'static [(&'static str, &'static str)],
    /// Request headers it reads: name, description.
    pub headers: &'static [(&'static str, &'static str)],
    /// Its success status.
    pub ok: u16,
    /// Whether it also answers 201, when it created what it names (a `PUT`
    /// that creates or replaces).
    pub upsert: bool,
}

const fn route(method: Method, path: &'static str, summary: &'static str, caller: Caller) -> Route {
    Route {
        method,
        path,
        summary,
        caller,
        input: Input::None,
        query: &[],
        headers: &[],
        ok: 200,
        upsert: false,
    }
}

impl Route {
    const fn input(mut self, input: Input) -> Self {
        self.input = input;
        self
    }

    const fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }

    const fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }

    /// 200 when it replaced, 201 when it created.
    const fn upsert(mut self) -> Self {
        self.upsert = true;
        self
    }

    const fn ok(mut self, status: u16) -> Self {
        self.ok = status;
        self
    }

    /// Whether `segments` (the path under `/admin/v1`, split) fit this route.
    fn fits(&self, segments: &[&str]) -> bool {
        let mut template = self.path.split('/').filter(|s| !s.is_empty());
        let mut given = segments.iter();
        loop {
            match (template.next(), given.next()) {
                (None, None) => return true,
                (Some(t), Some(g)) if t.starts_with('{') || t == *g => {}
                _ => return false,
            }
        }
    }
}

const CONDITIONAL: &[(&str, &str)] = &[
    ("If-None-Match", "`*`: create only; 409 if the alias exists"),
    ("If-Match", "`*`: update only; 404 if the alias does not exist"),
];

use Caller::{AnyKey, Anyone, Operator, Owner};
use Method as M;

/// Every admin route.
pub static ADMIN: &[Route] = &[
    route(M::GET, "/openapi.json", "This document", Anyone),
    route(M::GET, "/whoami", "Who the presented key belongs to", AnyKey),
    route(
        M::GET,
        "/cluster",
        "The cluster's live nodes, how far behind each one's registry is, and etcd's health",
        Operator,
    ),
    route(
        M::POST,
        "/signing-keys/rotate",
        "Start signing with a new key; the old one verifies until its tokens expire",
        Operator,
    ),
    route(
        M::POST,
        "/accounts",
        "Create an account; its first key is in the answer, shown once",
        Operator,
    )
    .input(Input::Json("CreateAccount"))
    .ok(201),
    route(M::GET, "/accounts", "List accounts", Operator),
    route(
        M::DELETE,
        "/accounts/{account}",
        "Delete an account with everything it owns and every grant to or from it",
        Operator,
    )
    .ok(204),
    route(
        M::POST,
        "/accounts/{account}/keys",
        "Add an account key; shown once",
        Owner,
    )
    .ok(201),
    route(
        M::GET,
        "/accounts/{account}/keys",
        "List the account's keys (ids, never secrets)",
        Owner,
    ),
    route(M::DELETE, "/accounts/{account}/keys/{key_id}", "Revoke a key", Owner).ok(204),
    route(
        M::PUT,
        "/accounts/{account}/blobs/{sha256}",
        "Upload a component under its SHA-256",
        Owner,
    )
    .input(Input::Bytes)
    .ok(201),
    route(
        M::POST,
        "/accounts/{account}/sub-tenant-tokens",
        "Issue a token that acts for one sub-tenant",
        Owner,
    )
    .input(Input::Json("IssueSubTenantToken"))
    .ok(201),
    route(M::GET, "/accounts/{account}/functions", "List functions", Owner),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}",
        "A function with its versions and aliases",
        Owner,
    ),
    route(
        M::DELETE,
        "/accounts/{account}/functions/{function}",
        "Delete a function",
        Owner,
    )
    .query(&[(
        "force",
        "also delete its aliases, grants and the cross-account aliases that use it",
    )])
    .ok(204),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}/versions",
        "List versions",
        Owner,
    ),
    route(
        M::POST,
        "/accounts/{account}/functions/{function}/versions",
        "Deploy an uploaded component as the next version",
        Owner,
    )
    .input(Input::Json("Deploy"))
    .query(&[("wait", "`false`: answer 202 at once instead of after the compile")])
    .ok(201),
    route(
        M::DELETE,
        "/accounts/{account}/functions/{function}/versions/{version}",
        "Delete a version no alias uses",
        Owner,
    )
    .ok(204),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}/logs",
        "The function's recent output, as NDJSON",
        Owner,
    )
    .query(&[
        ("since", "only lines newer than this, e.g. `10m`"),
        ("sub_tenant", "only this sub-tenant's calls"),
        (
            "invocation",
            "only this invocation's lines (its id, or the start of it)",
        ),
        ("follow", "`true`: keep the answer open and stream new lines"),
    ]),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}/aliases",
        "List the function's aliases",
        Owner,
    ),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}/aliases/{alias}",
        "One alias",
        Owner,
    ),
    route(
        M::PUT,
        "/accounts/{account}/functions/{function}/aliases/{alias}",
        "Create or re-point an alias",
        Owner,
    )
    .input(Input::Json("PutAlias"))
    .upsert()
    .headers(CONDITIONAL),
    route(
        M::DELETE,
        "/accounts/{account}/functions/{function}/aliases/{alias}",
        "Delete an alias no cross-account alias uses",
        Owner,
    )
    .ok(204),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}/grants",
        "List the function's grants",
        Owner,
    ),
    route(
        M::PUT,
        "/accounts/{account}/functions/{function}/grants/{grantee}",
        "Let another account call the function (optionally one alias)",
        Owner,
    )
    .input(Input::Json("PutGrant"))
    .upsert(),
    route(
        M::DELETE,
        "/accounts/{account}/functions/{function}/grants/{grantee}",
        "Revoke a grant; the next call through it is refused",
        Owner,
    )
    .ok(204),
    route(
        M::GET,
        "/accounts/{account}/grants",
        "Grants the account has made and received",
        Owner,
    ),
    route(
        M::GET,
        "/accounts/{account}/functions/{function}/reservations",
        "List the function's reservations",
        Owner,
    ),
    route(
        M::PUT,
        "/accounts/{account}/functions/{function}/reservations/{qualifier}",
        "Keep environments ready for a version or alias",
        Owner,
    )
    .input(Input::Json("PutReservation"))
    .upsert(),
    route(
        M::DELETE,
        "/accounts/{account}/functions/{function}/reservations/{qualifier}",
        "Delete a reservation",
        Owner,
    )
    .ok(204),
    route(
        M::GET,
        "/accounts/{account}/reservations",
        "All the account's reservations",
        Owner,
    ),
    route(
        M::GET,
        "/accounts/{account}/cross-aliases",
        "List cross-account aliases",
        Owner,
    ),
    route(
        M::GET,
        "/accounts/{account}/cross-aliases/{name}",
        "One cross-account alias",
        Owner,
    ),
    route(
        M::PUT,
        "/accounts/{account}/cross-aliases/{name}",
        "Name another account's granted function in this account",
        Owner,
    )
    .input(Input::Json("PutCrossAlias"))
    .upsert()
    .headers(CONDITIONAL),
    route(
        M::DELETE,
        "/accounts/{account}/cross-aliases/{name}",
        "Delete a cross-account alias",
        Owner,
    )
    .ok(204),
];

/// The route `method` and `segments` (the path under `/admin/v1`) name.
pub fn find(method: &Method, segments: &[&str]) -> Option<&'static Route> {
    ADMIN.iter().find(|r| r.method == *method && r.fits(segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment_per_parameter() {
        let found = find(&Method::PUT, &["accounts", "acme", "functions", "f", "aliases", "prod"]);
        assert_eq!(
            found.map(|r| r.path),
            Some("/accounts/{account}/functions/{function}/aliases/{alias}")
        );
        assert!(find(&Method::PUT, &["accounts", "acme", "functions", "f", "aliases"]).is_none());
        assert!(
            find(
                &Method::GET,
                &["accounts", "acme", "functions", "f", "aliases", "a", "b"]
            )
            .is_none()
        );
        assert!(find(&Method::PATCH, &["accounts"]).is_none());
        assert_eq!(
            find(&Method::GET, &["accounts"]).map(|r| r.caller),
            Some(Caller::Operator)
        );
    }

    #[test]
    fn no_two_routes_share_a_method_and_path() {
        for (i, a) in ADMIN.iter().enumerate() {
            for b in &ADMIN[i + 1..] {
                assert!(
                    a.method != b.method || a.path != b.path,
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
