//! SPEC §1, §5, §6: grants and cross-account aliases. `acme` owns the code;
//! `globex` calls it through a name in its own namespace.

use serde_json::{Value, json};

use crate::credentials::encode;
use crate::harness::*;

struct Accounts {
    server: Server,
    acme: String,
    globex: String,
}

fn accounts_with(server: Server) -> Accounts {
    let acme = server.create_account("acme");
    let globex = server.create_account("globex");
    Accounts { server, acme, globex }
}

impl Accounts {
    fn grant(&self, function: &str, body: Value) -> Reply {
        self.server.admin(
            &self.acme,
            "PUT",
            &format!("/accounts/acme/functions/{function}/grants/globex"),
            Some(body),
        )
    }

    /// Points acme's alias `prod` of `function` at `version`.
    fn point_prod(&self, function: &str, version: u32) -> Reply {
        self.server.admin(
            &self.acme,
            "PUT",
            &format!("/accounts/acme/functions/{function}/aliases/prod"),
            Some(json!({ "version": version })),
        )
    }

    fn cross(&self, name: &str, body: Value) -> Reply {
        self.server.admin(
            &self.globex,
            "PUT",
            &format!("/accounts/globex/cross-aliases/{name}"),
            Some(body),
        )
    }

    fn call_as_globex(&self, path: &str, sub_tenant: &str) -> Reply {
        let auth = bearer(&self.globex);
        self.server.request(
            "GET",
            path,
            &[("authorization", &auth), ("x-stratus-sub-tenant", sub_tenant)],
            b"",
        )
    }
}

#[test]
fn a_granted_alias_runs_the_owners_code_as_the_caller_until_the_grant_is_revoked() {
    let a = accounts_with(Server::start());
    a.server.deploy(
        &a.acme,
        "acme",
        "whoami",
        WHOAMI_COMPONENT,
        json!({ "env": { "SECRET": "s3" } }),
    );

    let early = a.cross("their-whoami", json!({ "target": "acme/whoami" }));
    assert_eq!(early.status, 403, "no grant yet: {}", early.text());
    let nothing = a.cross("ghost", json!({ "target": "acme/nope" }));
    assert_eq!(nothing.status, 403, "a missing function answers like an ungranted one");
    assert_eq!(a.grant("whoami", json!({})).status, 201);
    let created = a.cross("their-whoami", json!({ "target": "acme/whoami" }));
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["state"], "active");

    let reply = a.call_as_globex("/fn/globex/their-whoami/", "alice");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let claims = reply.json();
    assert_eq!(
        (claims["owner"].as_str(), claims["caller"].as_str()),
        (Some("acme"), Some("globex"))
    );
    assert_eq!(claims["sub_tenant"], "alice");
    assert_eq!(claims["function"], "whoami");

    // The alias is no way into the owner's account.
    assert_eq!(a.call_as_globex("/fn/acme/whoami/", "alice").status, 404);
    let auth = bearer(&a.globex);
    for path in [
        "/accounts/acme/functions/whoami",
        "/accounts/acme/functions/whoami/versions",
    ] {
        assert_eq!(a.server.admin(&a.globex, "GET", path, None).status, 404, "{path}");
    }
    let shown = a
        .server
        .admin(&a.globex, "GET", "/accounts/globex/cross-aliases/their-whoami", None);
    assert_eq!(shown.status, 200);
    assert!(
        !shown.text().contains("s3") && !shown.text().contains("sha256"),
        "{}",
        shown.text()
    );
    // Other accounts' callers do not see globex's alias either.
    let other = a.server.create_account("initech");
    let auth_other = bearer(&other);
    assert_eq!(
        a.server
            .request(
                "GET",
                "/fn/globex/their-whoami/",
                &[("authorization", &auth_other)],
                b""
            )
            .status,
        404
    );

    // globex's own function calls through globex's alias: a nested call.
    a.server
        .deploy(&a.globex, "globex", "fetch", FETCH_COMPONENT, json!({}));
    let nested = a.server.request(
        "GET",
        &format!("/fn/globex/fetch/?self={}", encode("/fn/globex/their-whoami/")),
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(nested.status, 200, "{}", nested.text());
    let inner = nested.json();
    assert_eq!(inner["status"], 200, "{inner}");
    let inner: Value = serde_json::from_str(inner["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (inner["owner"].as_str(), inner["caller"].as_str()),
        (Some("acme"), Some("globex"))
    );

    // Revoked: the very next call is refused.
    assert_eq!(
        a.server
            .admin(&a.acme, "DELETE", "/accounts/acme/functions/whoami/grants/globex", None)
            .status,
        204
    );
    let refused = a.call_as_globex("/fn/globex/their-whoami/", "alice");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.code(), "grant_revoked");
    let shown = a
        .server
        .admin(&a.globex, "GET", "/accounts/globex/cross-aliases/their-whoami", None);
    assert_eq!(shown.json()["state"], "revoked");
}

#[test]
fn cross_account_aliases_only_lower_limits_and_never_chain() {
    let a = accounts_with(Server::start());
    a.server.deploy(
        &a.acme,
        "acme",
        "whoami",
        WHOAMI_COMPONENT,
        json!({ "timeout_ms": 10000 }),
    );
    a.server.deploy(&a.acme, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    let alias = a.point_prod("whoami", 1);
    assert_eq!(alias.status, 201);
    // Granted through `prod` only.
    assert_eq!(a.grant("whoami", json!({ "alias": "prod" })).status, 201);
    let latest = a.cross("w", json!({ "target": "acme/whoami" }));
    assert_eq!(latest.status, 403, "{}", latest.text());
    assert!(latest.text().contains("only whoami:prod"), "{}", latest.text());

    let env = a.cross("w", json!({ "target": "acme/whoami:prod", "env": { "X": "1" } }));
    assert_eq!(env.status, 400);
    assert!(env.text().contains("only lower limits"), "{}", env.text());
    let own = a.server.admin(
        &a.acme,
        "PUT",
        "/accounts/acme/cross-aliases/mine",
        Some(json!({ "target": "acme/whoami" })),
    );
    assert_eq!(own.status, 400, "{}", own.text());

    let created = a.cross(
        "w",
        json!({ "target": "acme/whoami:prod", "limits": { "timeout_ms": 1000 } }),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reply = a.call_as_globex("/fn/globex/w/", "bob");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-stratus-version"), Some("1"));
    assert_eq!(reply.json()["alias"], "prod");
    assert!(
        reply.json()["expires_at"].as_u64().unwrap() <= before + 2,
        "the 1 s limit applies"
    );

    // The owner re-points its alias: the grantee follows at once.
    let repointed = a.point_prod("whoami", 2);
    assert_eq!(repointed.status, 200);
    assert_eq!(
        a.call_as_globex("/fn/globex/w/", "bob").header("x-stratus-version"),
        Some("2")
    );

    // A third account may not build on globex's alias.
    let initech = a.server.create_account("initech");
    assert_eq!(
        a.server
            .admin(
                &a.globex,
                "PUT",
                "/accounts/globex/functions/w/grants/initech",
                Some(json!({}))
            )
            .status,
        404,
        "an alias cannot be granted"
    );
    let chained = a.server.admin(
        &initech,
        "PUT",
        "/accounts/initech/cross-aliases/ww",
        Some(json!({ "target": "globex/w" })),
    );
    // Another account's private cross-account alias answers exactly like a
    // name that does not exist: no grant, nothing learned.
    let missing = a.server.admin(
        &initech,
        "PUT",
        "/accounts/initech/cross-aliases/ww",
        Some(json!({ "target": "globex/nothing-here" })),
    );
    assert_eq!(chained.status, 403, "{}", chained.text());
    assert_eq!(missing.status, 403, "{}", missing.text());
    assert_eq!(
        chained.text().replace("globex/w", "X").replace(" w", " X"),
        missing
            .text()
            .replace("globex/nothing-here", "X")
            .replace(" nothing-here", " X"),
    );

    // One namespace for functions and cross-account aliases.
    let clash = a
        .server
        .deploy_reply(&a.globex, "globex", "w", HELLO_COMPONENT, json!({}));
    assert_eq!(clash.status, 409, "{}", clash.text());
    a.server
        .deploy(&a.globex, "globex", "hello", HELLO_COMPONENT, json!({}));
    assert_eq!(a.cross("hello", json!({ "target": "acme/whoami:prod" })).status, 409);
    // The qualifier belongs to the owner's names.
    assert_eq!(a.call_as_globex("/fn/globex/w:prod/", "bob").status, 400);
}

#[test]
fn owner_and_grantee_never_share_an_environment() {
    let a = accounts_with(Server::start());
    a.server.deploy(
        &a.acme,
        "acme",
        "counter",
        COUNTER_COMPONENT,
        json!({ "reuse": "warm" }),
    );
    assert_eq!(a.grant("counter", json!({})).status, 201);
    assert_eq!(a.cross("count", json!({ "target": "acme/counter" })).status, 201);
    let acme_auth = bearer(&a.acme);
    let as_acme = || {
        a.server
            .request(
                "GET",
                "/fn/acme/counter/",
                &[("authorization", &acme_auth), ("x-stratus-sub-tenant", "alice")],
                b"",
            )
            .json()
    };
    let as_globex = || a.call_as_globex("/fn/globex/count/", "alice").json();
    assert_eq!(as_acme(), json!({ "memory": 1, "kv": 1 }));
    assert_eq!(as_acme(), json!({ "memory": 2, "kv": 2 }));
    // Same sub-tenant id, same code, other caller: a partition of its own.
    assert_eq!(as_globex(), json!({ "memory": 1, "kv": 1 }));
    assert_eq!(as_globex(), json!({ "memory": 2, "kv": 2 }));
    assert_eq!(as_acme(), json!({ "memory": 3, "kv": 3 }));
}

#[test]
fn referenced_functions_need_force_and_grants_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = accounts_with(Server::spawn(&data, &[]));
    a.server.deploy(&a.acme, "acme", "hello", HELLO_COMPONENT, json!({}));
    let alias = a.point_prod("hello", 1);
    assert_eq!(alias.status, 201);

    // Through the CLI: grant, alias, list.
    let cli = |key: &str, args: &[&str]| a.server.cli_ok(key, args);
    cli(&a.acme, &["grant", "add", "hello", "--to", "globex", "--alias", "prod"]);
    assert!(cli(&a.acme, &["grant", "list"]).contains("globex"));
    let created = cli(
        &a.globex,
        &["alias", "create", "hi", "--target", "acme/hello:prod", "--json"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&created).unwrap()["target"],
        "acme/hello:prod"
    );
    assert!(cli(&a.globex, &["alias", "list"]).contains("hi → acme/hello:prod"));

    a.server.kill();
    let server = Server::spawn(&data, &[]);
    let a = Accounts { server, ..a };
    assert_eq!(
        a.call_as_globex("/fn/globex/hi/", "x").status,
        200,
        "grant and alias survived"
    );

    let refused = a
        .server
        .admin(&a.acme, "DELETE", "/accounts/acme/functions/hello/aliases/prod", None);
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.text().contains("globex"), "{}", refused.text());
    let refused = a
        .server
        .admin(&a.acme, "DELETE", "/accounts/acme/functions/hello", None);
    assert_eq!(refused.status, 409, "{}", refused.text());
    let forced = a
        .server
        .admin(&a.acme, "DELETE", "/accounts/acme/functions/hello?force=true", None);
    assert_eq!(forced.status, 204, "{}", forced.text());
    assert_eq!(
        a.server
            .admin(&a.globex, "GET", "/accounts/globex/cross-aliases/hi", None)
            .status,
        404,
        "the forced delete took the grantee's alias with it"
    );
    assert_eq!(a.call_as_globex("/fn/globex/hi/", "x").status, 404);
}
