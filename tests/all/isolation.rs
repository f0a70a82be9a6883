//! Identity and shared resources: a name that comes back never reaches what
//! its previous owner left, and no account can take a resource from another.

use serde_json::{Value, json};

use crate::harness::*;

fn call(server: &Server, key: &str, path: &str, sub_tenant: Option<&str>) -> Reply {
    let auth = bearer(key);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(sub) = sub_tenant {
        headers.push(("x-stratus-sub-tenant", sub));
    }
    server.request("GET", path, &headers, b"")
}

fn delete_account(server: &Server, name: &str) {
    let reply = server.admin(OPERATOR_KEY, "DELETE", &format!("/accounts/{name}"), None);
    assert_eq!(reply.status, 204, "{}", reply.text());
}

#[test]
fn a_recreated_account_never_runs_the_old_owners_code_or_sees_its_secrets() {
    let server = Server::start();
    let old = server.create_account("initech");
    let config = json!({ "reuse": "warm", "env": { "DB_PASSWORD": "old-tenant-secret" } });
    server.deploy(&old, "initech", "api", ECHO_COMPONENT, config);
    let first = call(&server, &old, "/fn/initech/api/", None);
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("old-tenant-secret"));
    assert!(server.settle("stratus_idle_instances", |n| n >= 1.0) >= 1.0);

    delete_account(&server, "initech");
    assert_eq!(
        server.settle("stratus_idle_instances", |n| n == 0.0),
        0.0,
        "deleting the account drops its warm environments at once"
    );
    let new = server.create_account("initech");
    server.deploy(&new, "initech", "api", HELLO_COMPONENT, json!({ "reuse": "warm" }));
    for _ in 0..3 {
        let reply = call(&server, &new, "/fn/initech/api/", None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.text(),
            "hello from stratus",
            "the new owner ran the old owner's code"
        );
    }
}

#[test]
fn a_function_deployed_again_under_its_name_starts_fresh_with_a_new_version_number() {
    let (server, key) = Server::with_function("f", COUNTER_COMPONENT, json!({ "reuse": "warm" }));
    for n in 1..=2 {
        assert_eq!(call(&server, &key, "/fn/acme/f/", None).json()["memory"], n);
    }
    let reply = server.admin(&key, "DELETE", "/accounts/acme/functions/f?force=true", None);
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(server.settle("stratus_idle_instances", |n| n == 0.0), 0.0);

    let deployed = server.deploy(&key, "acme", "f", ECHO_COMPONENT, json!({ "reuse": "warm" }));
    assert_eq!(deployed["version"], 2, "version numbers are never reused");
    let reply = call(&server, &key, "/fn/acme/f/", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-stratus-version"), Some("2"));
    assert_eq!(
        reply.json()["method"],
        "GET",
        "the old counter answered: {}",
        reply.text()
    );
    assert!(
        call(&server, &key, "/fn/acme/f:1/", None).status == 404,
        "the deleted version is gone"
    );
}

#[test]
fn deleting_a_version_drops_its_warm_environments() {
    let (server, key) = Server::with_function("counter", COUNTER_COMPONENT, json!({ "reuse": "warm" }));
    server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({ "reuse": "warm" }));
    assert_eq!(call(&server, &key, "/fn/acme/counter:1/", None).status, 200);
    assert_eq!(server.settle("stratus_idle_instances", |n| n == 1.0), 1.0);
    let reply = server.admin(&key, "DELETE", "/accounts/acme/functions/counter/versions/1", None);
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(server.settle("stratus_idle_instances", |n| n == 0.0), 0.0);
}

#[test]
fn a_recreated_caller_inherits_nothing_of_the_old_one() {
    let server = Server::start();
    let acme = server.create_account("acme");
    let config = json!({ "public": true, "reuse": "warm" });
    server.deploy(&acme, "acme", "counter", COUNTER_COMPONENT, config);
    server.deploy(&acme, "acme", "echo", ECHO_COMPONENT, json!({ "public": true }));

    let globex = server.create_account("globex");
    for n in 1..=2 {
        let seen = call(&server, &globex, "/fn/acme/counter/", Some("alice")).json();
        assert_eq!(seen, json!({ "memory": n, "kv": n }));
    }
    // A token the operator issued for the old account.
    let token = server.admin(
        OPERATOR_KEY,
        "POST",
        "/accounts/globex/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "alice" })),
    );
    assert_eq!(token.status, 201, "{}", token.text());
    let token = token.json()["token"].as_str().unwrap().to_string();
    assert_eq!(call(&server, &token, "/fn/acme/echo/", None).status, 200);

    delete_account(&server, "globex");
    let globex = server.create_account("globex");
    let seen = call(&server, &globex, "/fn/acme/counter/", Some("alice")).json();
    assert_eq!(
        seen,
        json!({ "memory": 1, "kv": 1 }),
        "the new globex got the old one's environment or KV data"
    );
    let reply = call(&server, &token, "/fn/acme/echo/", None);
    assert_eq!(
        reply.status,
        401,
        "the old account's token still works: {}",
        reply.text()
    );
}

#[test]
fn a_recreated_account_cannot_read_the_old_ones_logs() {
    let server = Server::start();
    let old = server.create_account("initech");
    server.deploy(&old, "initech", "echo", ECHO_COMPONENT, json!({}));
    assert_eq!(
        call(&server, &old, "/fn/initech/echo/old-secret-path", None).status,
        200
    );
    // Lines are recorded once the invocation ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .admin(&old, "GET", "/accounts/initech/functions/echo/logs", None)
        .text()
        .contains("old-secret-path")
    {
        assert!(std::time::Instant::now() < deadline, "the call was never logged");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    delete_account(&server, "initech");
    let new = server.create_account("initech");
    server.deploy(&new, "initech", "echo", ECHO_COMPONENT, json!({}));
    let logs = server.admin(&new, "GET", "/accounts/initech/functions/echo/logs", None);
    assert_eq!(logs.status, 200, "{}", logs.text());
    assert!(!logs.text().contains("old-secret-path"), "{}", logs.text());
}

#[test]
fn a_changed_alias_env_reaches_the_next_call_of_a_warm_function() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({ "reuse": "warm" }));
    let point = |token: &str| {
        let body = json!({ "version": 1, "overrides": { "env": { "API_TOKEN": token } } });
        let reply = server.admin(&key, "PUT", "/accounts/acme/functions/echo/aliases/prod", Some(body));
        assert!(reply.status == 200 || reply.status == 201, "{}", reply.text());
    };
    point("first");
    for _ in 0..2 {
        assert_eq!(
            call(&server, &key, "/fn/acme/echo:prod/", None).json()["env"]["API_TOKEN"],
            "first"
        );
    }
    point("rotated");
    let seen = call(&server, &key, "/fn/acme/echo:prod/", None).json();
    assert_eq!(
        seen["env"]["API_TOKEN"], "rotated",
        "a warm environment kept the old env"
    );
}

#[test]
fn output_capture_is_limited_per_call_not_per_environment() {
    let (server, key) = Server::with_function("echo", ECHO_COMPONENT, json!({ "reuse": "warm" }));
    let path = format!("/fn/acme/echo/{}", "p".repeat(7 * 1024));
    for n in 0..16 {
        let reply = call(&server, &key, &path, None);
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
    }
    assert!(
        server.metric("stratus_warm_hits_total") >= 10.0,
        "the calls reused one environment"
    );
}

#[test]
fn an_operator_key_of_any_shape_administers_the_host() {
    for operator in [
        "my-long-operator-secret",
        "sk_looks-like-an-account-key",
        "0123456789abcdef",
        "correct horse battery staple",
    ] {
        let server = Server::start_with_operator_key(operator, &[]);
        let reply = server.admin(operator, "POST", "/accounts", Some(json!({ "name": "acme" })));
        assert_eq!(reply.status, 201, "{operator}: {}", reply.text());
        let key = reply.json()["key"].as_str().unwrap().to_string();
        assert_eq!(server.admin(operator, "GET", "/accounts", None).status, 200);
        // The harness's own key is not this server's.
        assert_eq!(server.admin(OPERATOR_KEY, "GET", "/accounts", None).status, 401);
        server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({ "public": true }));
        // Calls still take the function's own bearer tokens through.
        let reply = server.request("GET", "/fn/acme/echo/", &[("authorization", "Bearer not-ours")], b"");
        assert_eq!(reply.json()["headers"]["authorization"], "Bearer not-ours");
        // The operator key is for the admin API, not for calls.
        let reply = call(&server, operator, "/fn/acme/echo/", None);
        assert_eq!(reply.status, 401, "{}", reply.text());
    }
}

fn reserve(server: &Server, key: &str, account: &str, function: &str, body: Value) -> Reply {
    server.admin(
        key,
        "PUT",
        &format!("/accounts/{account}/functions/{function}/reservations/latest"),
        Some(body),
    )
}

#[test]
fn one_account_cannot_reserve_the_pool() {
    let server = Server::start_with(&["--pool-slots", "8", "--max-reserved-per-account", "3"]);
    let acme = server.create_account("acme");
    let globex = server.create_account("globex");
    server.deploy(&acme, "acme", "hello", HELLO_COMPONENT, json!({}));
    server.deploy(&globex, "globex", "hello", HELLO_COMPONENT, json!({ "public": true }));

    let all = reserve(&server, &acme, "acme", "hello", json!({ "min": 8, "target": 8 }));
    assert_eq!(all.status, 409, "{}", all.text());
    assert_eq!(all.code(), "conflict");
    assert!(all.text().contains("3"), "the message names the cap: {}", all.text());
    assert_eq!(
        reserve(&server, &acme, "acme", "hello", json!({ "min": 3, "target": 3 })).status,
        201
    );

    // Half the pool (the default ceiling) is all reservations may hold.
    let over = reserve(&server, &globex, "globex", "hello", json!({ "min": 2, "target": 2 }));
    assert_eq!(over.status, 409, "{}", over.text());
    assert!(
        over.text().contains("4"),
        "the message names the ceiling: {}",
        over.text()
    );
    assert_eq!(
        reserve(&server, &globex, "globex", "hello", json!({ "min": 1, "target": 1 })).status,
        201
    );

    // Unreserved calls still have the rest of the pool.
    assert_eq!(server.settle("stratus_reserved_instances", |n| n == 4.0), 4.0);
    let reply = server.request("GET", "/fn/globex/hello/", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn a_nested_call_stops_once_its_callers_key_is_revoked() {
    let target = std::sync::Arc::new(std::sync::OnceLock::<(String, String)>::new());
    let seen = target.clone();
    // The upstream holds a token fetch minted for this host, calls back
    // with it, has the caller's key revoked, and calls back again.
    let upstream = Upstream::start(move |_origin, _path, auth| {
        let token = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
        let (url, key_id) = seen.get().unwrap();
        let again = || {
            call_url(
                "GET",
                &format!("{url}/fn/acme/whoami/"),
                &[("authorization", &bearer(token))],
                b"",
            )
        };
        let before = again().status;
        let revoked = call_url(
            "DELETE",
            &format!("{url}/admin/v1/accounts/acme/keys/{key_id}"),
            &[("authorization", &bearer(OPERATOR_KEY))],
            b"",
        );
        let after = again();
        (
            200,
            json!({ "before": before, "revoked": revoked.status, "after": after.status, "why": after.text() }),
        )
    });
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let first = server.create_account("acme");
    server.deploy(&first, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    let config = json!({ "allow_outbound": [upstream.authority], "timeout_ms": 20_000 });
    server.deploy(&first, "acme", "fetch", FETCH_COMPONENT, config);
    let second = server.admin(&first, "POST", "/accounts/acme/keys", None).json();
    let key = second["key"].as_str().unwrap().to_string();
    target
        .set((server.url.clone(), second["id"].as_str().unwrap().to_string()))
        .unwrap();

    let path = format!("/fn/acme/fetch/?aud=stratus&url={}/", upstream.origin);
    let reply = call(&server, &key, &path, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen: Value = serde_json::from_str(reply.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["before"], 200, "the chain works while the key stands: {seen}");
    assert_eq!(seen["revoked"], 204, "{seen}");
    assert_eq!(seen["after"], 401, "the chain outlived its key: {seen}");
}

#[test]
fn names_with_a_double_hyphen_are_refused_and_never_guessed_from_a_host() {
    let server = Server::start_with(&["--base-domain", "fn.test"]);
    let reply = server.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": "a--b" })));
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("--"), "{}", reply.text());
    let reply = server.admin(OPERATOR_KEY, "POST", "/accounts", Some(json!({ "name": "a-" })));
    assert_eq!(
        reply.status,
        400,
        "a trailing hyphen makes host names ambiguous: {}",
        reply.text()
    );
    let key = server.create_account("acme");
    for name in ["x--y", "x-"] {
        let reply = server.deploy_reply(&key, "acme", name, HELLO_COMPONENT, json!({}));
        assert_eq!(reply.status, 400, "{name}: {}", reply.text());
    }
    server.deploy(&key, "acme", "hi", HELLO_COMPONENT, json!({ "public": true }));

    let by_host = |host: &str| server.request("GET", "/", &[("host", host)], b"");
    assert_eq!(by_host("hi--acme.fn.test").text(), "hello from stratus");
    for ambiguous in ["hi--x--acme.fn.test", "hi---acme.fn.test"] {
        let reply = by_host(ambiguous);
        assert_eq!(reply.status, 404, "{ambiguous}: {}", reply.text());
        assert_eq!(reply.code(), "not_found");
    }
}

#[test]
fn an_upload_reports_created_for_its_own_account() {
    let server = Server::start();
    let acme = server.create_account("acme");
    let globex = server.create_account("globex");
    let bytes = std::fs::read(HELLO_COMPONENT).unwrap();
    let first = server.upload(&acme, "acme", &bytes);
    assert_eq!((first.status, first.json()["created"].clone()), (201, json!(true)));
    let other = server.upload(&globex, "globex", &bytes);
    assert_eq!(
        (other.status, other.json()["created"].clone()),
        (201, json!(true)),
        "another account's upload of the same bytes shows through"
    );
    let again = server.upload(&globex, "globex", &bytes);
    assert_eq!((again.status, again.json()["created"].clone()), (200, json!(false)));
}

/// `send` again every 20 ms until it answers `status`, for up to 10 s; the
/// last answer.
fn until_status(status: u16, mut send: impl FnMut() -> Reply) -> Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = send();
        if reply.status == status || std::time::Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An upload that has sent its headers and a little of its body, and no more.
fn stalled_upload(server: &Server, key: &str, account: &str) -> std::net::TcpStream {
    use std::io::Write;
    let authority = server.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "PUT /admin/v1/accounts/{account}/blobs/{} HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\ncontent-length: 100000\r\n\r\nsome",
        "0".repeat(64)
    )
    .unwrap();
    stream
}

#[test]
fn uploads_in_progress_are_bounded_per_account() {
    let server = Server::start_with(&["--max-uploads-per-account", "1"]);
    let acme = server.create_account("acme");
    let globex = server.create_account("globex");
    let slow = stalled_upload(&server, &acme, "acme");
    let bytes = std::fs::read(HELLO_COMPONENT).unwrap();
    let refused = until_status(409, || server.upload(&acme, "acme", &bytes));
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(
        refused.text().contains("--max-uploads-per-account"),
        "{}",
        refused.text()
    );
    assert_eq!(
        server.upload(&globex, "globex", &bytes).status,
        201,
        "another account is not held up"
    );
    drop(slow);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.upload(&acme, "acme", &bytes).status == 409 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned upload was never given back"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
#[cfg(unix)]
fn the_data_directory_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::spawn(&data, &[]);
    server.create_account("acme");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    fn walk(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        out.push(path.to_path_buf());
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&data, &mut paths);
    assert!(paths.len() > 3, "{paths:?}");
    for path in &paths {
        let wanted = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(path), wanted, "{} is {:o}", path.display(), mode(path));
    }
    // A data directory made readable by an older version is mended at start.
    server.kill();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("registry").join("db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::spawn(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
    // Also when the data directory is reached through a symlink.
    server.kill();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let _server = Server::spawn(&link, &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
}

/// Starts `serve` on `cache` and expects it to refuse, saying `why`.
#[cfg(unix)]
fn refused_code_cache(dir: &std::path::Path, cache: &std::path::Path, why: &str) {
    let mut child = std::process::Command::new(stratus_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--code-cache")
        .arg(cache)
        .env("STRATUS_OPERATOR_KEY", OPERATOR_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        status.is_some_and(|s| !s.success()),
        "the server started on the code cache {}",
        cache.display()
    );
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    assert!(said.contains(why), "{said}");
}

#[test]
#[cfg(unix)]
fn a_code_cache_of_another_user_or_under_a_writable_parent_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("open");
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache = parent.join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    refused_code_cache(dir.path(), &cache, "writable by other users");
    // Owned by someone else (this needs the right to give files away,
    // which CI, running as root, has).
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    match std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)) {
        Ok(()) => refused_code_cache(dir.path(), &theirs, "belongs to another user"),
        Err(err) => eprintln!("not checked: cannot give a directory away here ({err})"),
    }
}

#[test]
#[cfg(unix)]
fn a_code_cache_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused_code_cache(dir.path(), &cache, "writable by other users");
}

/// Moves a stopped server's records out of the registry's store into the
/// trees of one kind each that releases before the store kept.
fn downgrade_to_trees(db: &sled::Db) {
    let store = db.open_tree("store").unwrap();
    for item in store.iter() {
        let (key, value) = item.unwrap();
        let key = String::from_utf8(key.to_vec()).unwrap();
        // Each value is the revision that last wrote it, then the record.
        let value = &value[8..];
        let (kind, rest) = key.split_once('/').unwrap();
        let (tree, old_key): (&str, Vec<u8>) = match kind {
            "accounts" => ("accounts", rest.as_bytes().to_vec()),
            "versions" => {
                let (function, number) = rest.rsplit_once('/').unwrap();
                let mut old = format!("{function}/").into_bytes();
                old.extend_from_slice(&number.parse::<u32>().unwrap().to_be_bytes());
                ("versions", old)
            }
            "counters" => ("version_counters", rest.as_bytes().to_vec()),
            "blob_owners" => {
                let (account, sha) = rest.split_once('/').unwrap();
                ("blob_owners", format!("{sha}/{account}").into_bytes())
            }
            "guards" => continue,
            other => (other, rest.as_bytes().to_vec()),
        };
        db.open_tree(tree).unwrap().insert(old_key, value).unwrap();
    }
    for tree in ["store", "store_log", "store_meta"] {
        db.drop_tree(tree).unwrap();
    }
}

/// Rewrites a stopped server's database to the layout of releases before
/// ids: records in a tree per kind, without ids, KV namespaces keyed by
/// account names.
fn downgrade_to_names(data: &std::path::Path) {
    let db = sled::open(data.join("registry")).unwrap();
    downgrade_to_trees(&db);
    let rewrite = |tree: &sled::Tree, fields: &[&str]| {
        for item in tree.iter() {
            let (key, value) = item.unwrap();
            let mut record: Value = serde_json::from_slice(&value[1..]).unwrap();
            for field in fields {
                record.as_object_mut().unwrap().remove(*field);
            }
            let mut bytes = vec![1u8];
            bytes.extend(serde_json::to_vec(&record).unwrap());
            tree.insert(key, bytes).unwrap();
        }
    };
    let accounts = db.open_tree("accounts").unwrap();
    let names: std::collections::HashMap<String, String> = accounts
        .iter()
        .map(|item| {
            let record: Value = serde_json::from_slice(&item.unwrap().1[1..]).unwrap();
            (
                record["id"].as_str().unwrap().to_string(),
                record["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Components lived in the database then.
    let blobs = db.open_tree("blobs").unwrap();
    for shard in std::fs::read_dir(data.join("blobs")).unwrap().flatten() {
        if shard.file_name() == "incoming" {
            continue;
        }
        for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let sha = file.file_name().to_string_lossy().into_owned();
            blobs
                .insert(sha.as_bytes(), std::fs::read(file.path()).unwrap())
                .unwrap();
        }
    }
    std::fs::remove_dir_all(data.join("blobs")).unwrap();
    rewrite(&accounts, &["id"]);
    rewrite(&db.open_tree("versions").unwrap(), &["id", "account_id"]);
    for tree in ["kv", "kv_usage"] {
        let tree = db.open_tree(tree).unwrap();
        for item in tree.iter() {
            let (key, value) = item.unwrap();
            let text = String::from_utf8(key.to_vec()).unwrap();
            tree.remove(&key).unwrap();
            // Owner totals (`{owner}/`) did not exist then.
            if text.matches('/').count() < 3 {
                continue;
            }
            let mut parts = text.splitn(3, '/');
            let owner = &names[parts.next().unwrap()];
            let caller = parts.next().unwrap();
            let caller = names.get(caller).map_or(caller, String::as_str);
            tree.insert(format!("{owner}/{caller}/{}", parts.next().unwrap()), value)
                .unwrap();
        }
    }
    db.open_tree("meta").unwrap().remove("kv_namespaces_by_id").unwrap();
    db.drop_tree("version_counters").unwrap();
    db.flush().unwrap();
}

#[test]
fn a_data_directory_from_before_ids_opens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::spawn(&data, &[]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
    for n in 1..=2 {
        assert_eq!(call(&server, &key, "/fn/acme/counter/", Some("alice")).json()["kv"], n);
    }
    server.terminate();
    assert!(server.wait_exit(std::time::Duration::from_secs(30)).is_some());
    drop(server);
    downgrade_to_names(&data);

    let server = Server::spawn(&data, &[]);
    let reply = call(&server, &key, "/fn/acme/counter/", Some("alice"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["kv"], 3, "the KV data moved to the account's id");
    assert_eq!(reply.header("x-stratus-version"), Some("1"));
    let deployed = server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
    assert_eq!(deployed["version"], 2);
    // Ids are given once: a second start changes nothing.
    drop(server);
    let server = Server::spawn(&data, &[]);
    assert_eq!(call(&server, &key, "/fn/acme/counter/", Some("alice")).json()["kv"], 4);
    // The components moved out of the database into the blob store.
    drop(server);
    let sha = sha256(&std::fs::read(COUNTER_COMPONENT).unwrap());
    let stored = data.join("blobs").join(&sha[..2]).join(&sha);
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(COUNTER_COMPONENT).unwrap()
    );
    let db = sled::open(data.join("registry")).unwrap();
    assert!(db.open_tree("blobs").unwrap().is_empty());
}

/// `component` under a SHA-256 no run has compiled before: the code cache
/// is shared between test servers and runs.
pub fn fresh(component: &str) -> Vec<u8> {
    let stamp = format!("{:?}{:?}", std::time::SystemTime::now(), std::thread::current().id());
    crate::deploy::with_custom_section(&std::fs::read(component).unwrap(), stamp.as_bytes())
}

fn deploy_bytes(server: &Server, key: &str, account: &str, function: &str, bytes: &[u8], wait: bool) -> Reply {
    let upload = server.upload(key, account, bytes);
    assert!(upload.status == 201 || upload.status == 200, "{}", upload.text());
    let query = if wait { "" } else { "?wait=false" };
    server.admin(
        key,
        "POST",
        &format!("/accounts/{account}/functions/{function}/versions{query}"),
        Some(json!({ "blob": sha256(bytes) })),
    )
}

#[test]
fn a_compile_past_its_limit_is_stopped_and_the_deploy_refused() {
    let server = Server::start_with(&["--compile-timeout", "300ms"]);
    let key = server.create_account("acme");
    let compiles = server.metric("stratus_compiles_total");
    let reply = deploy_bytes(&server, &key, "acme", "heavy", &fresh(HEAVY_COMPONENT), true);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.code(), "invalid_component");
    assert!(reply.text().contains("--compile-timeout"), "{}", reply.text());
    assert_eq!(
        server.metric("stratus_compiles_total"),
        compiles,
        "nothing was compiled"
    );
    // The compile child is gone: no process of this server is compiling.
    let children = std::process::Command::new("pgrep")
        .args(["-P", &server.pid().to_string(), "-f", "compile-component"])
        .output()
        .unwrap();
    assert!(children.stdout.is_empty(), "a compile outlived its limit");
    let versions = server
        .admin(&key, "GET", "/accounts/acme/functions/heavy/versions", None)
        .json();
    assert_eq!(versions["versions"][0]["state"], "failed", "{versions}");
}

#[test]
fn compiles_queue_per_account_and_wait_behind_one_of_another_account() {
    let server = Server::start_with(&["--max-queued-compiles-per-account", "2"]);
    let acme = server.create_account("acme");
    let globex = server.create_account("globex");
    for _ in 0..2 {
        let queued = deploy_bytes(&server, &acme, "acme", "heavy", &fresh(HEAVY_COMPONENT), false);
        assert_eq!(queued.status, 202, "{}", queued.text());
    }
    let refused = deploy_bytes(&server, &acme, "acme", "heavy", &fresh(HEAVY_COMPONENT), false);
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(
        refused.text().contains("--max-queued-compiles-per-account"),
        "{}",
        refused.text()
    );

    // globex's compile goes right after acme's first: acme's second is
    // still waiting or compiling when globex's is done.
    let small = deploy_bytes(&server, &globex, "globex", "hello", &fresh(HELLO_COMPONENT), true);
    assert_eq!(small.status, 201, "{}", small.text());
    let versions = server
        .admin(&acme, "GET", "/accounts/acme/functions/heavy/versions", None)
        .json();
    let states: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["state"].as_str())
        .collect();
    assert!(
        states.contains(&"compiling"),
        "globex waited behind both of acme's compiles: {states:?}"
    );
}

/// Starts a POST whose body never comes: headers and a few bytes only.
/// What the server first answers on `stream` (waiting up to 30 s).
fn first_answer(mut stream: std::net::TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn stalled_post(server: &Server, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let authority = server.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: 100000\r\n\r\nsome"
    )
    .unwrap();
    stream
}

#[test]
fn anonymous_callers_of_one_owner_cannot_starve_another_owners_public_functions() {
    let server = Server::start_with(&[
        "--max-concurrency-per-account",
        "2",
        "--queue-wait",
        "200ms",
        "--min-body-rate",
        "0",
    ]);
    let attacker = server.create_account("attacker");
    let victim = server.create_account("victim");
    server.deploy(&attacker, "attacker", "echo", ECHO_COMPONENT, json!({ "public": true }));
    server.deploy(&victim, "victim", "hello", HELLO_COMPONENT, json!({ "public": true }));
    let stalled: Vec<_> = (0..4).map(|_| stalled_post(&server, "/fn/attacker/echo/")).collect();
    // The attacker's own anonymous bucket fills up…
    let full = until_status(429, || server.request("GET", "/fn/attacker/echo/", &[], b""));
    assert_eq!(full.status, 429, "the stalled calls never took the bucket");
    // …and the victim's anonymous callers are not in it.
    for _ in 0..5 {
        let reply = server.request("GET", "/fn/victim/hello/", &[], b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    drop(stalled);
}

#[test]
fn a_body_that_trickles_in_too_slowly_is_cut_off_with_408() {
    let server = Server::start_with(&["--min-body-rate", "1000", "--header-read-timeout", "1s"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({ "public": true }));
    let answer = first_answer(stalled_post(&server, "/fn/acme/echo/"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // So is an introspection form that never comes.
    let form = {
        use std::io::Write;
        let authority = server.url.trim_start_matches("http://").to_string();
        let mut stream = std::net::TcpStream::connect(&authority).unwrap();
        write!(
            stream,
            "POST /v1/introspect HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\ncontent-length: 1000\r\n\r\n"
        )
        .unwrap();
        stream
    };
    let answer = first_answer(form);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // An upload trickled the same way is cut off too.
    let answer = first_answer(stalled_upload(&server, &key, "acme"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The host goes on serving.
    assert_eq!(server.request("GET", "/fn/acme/echo/", &[], b"").status, 200);
}

#[test]
fn what_an_account_stores_is_bounded() {
    let server = Server::start_with(&[
        "--max-keys-per-account",
        "2",
        "--max-functions-per-account",
        "2",
        "--max-versions-per-account",
        "3",
        "--max-aliases-per-account",
        "1",
        "--max-env-bytes",
        "100",
    ]);
    let key = server.create_account("acme");
    assert_eq!(server.admin(&key, "POST", "/accounts/acme/keys", None).status, 201);
    let keys = server.admin(&key, "POST", "/accounts/acme/keys", None);
    assert_eq!(keys.status, 409, "{}", keys.text());
    assert!(keys.text().contains("--max-keys-per-account"), "{}", keys.text());

    let env = json!({ "env": { "BIG": "x".repeat(200) } });
    let big = server.deploy_reply(&key, "acme", "echo", ECHO_COMPONENT, env);
    assert_eq!(
        (big.status, big.code()),
        (413, "payload_too_large".to_string()),
        "{}",
        big.text()
    );
    assert!(big.text().contains("--max-env-bytes"), "{}", big.text());

    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let third = server.deploy_reply(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
    assert_eq!(third.status, 409, "{}", third.text());
    assert!(third.text().contains("--max-functions-per-account"), "{}", third.text());
    server.deploy(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
    let fourth = server.deploy_reply(&key, "acme", "echo", ECHO_COMPONENT, json!({}));
    assert_eq!(fourth.status, 409, "{}", fourth.text());
    assert!(
        fourth.text().contains("--max-versions-per-account"),
        "{}",
        fourth.text()
    );

    let alias = |name: &str, env: Value| {
        let body = json!({ "version": 1, "overrides": { "env": env } });
        server.admin(
            &key,
            "PUT",
            &format!("/accounts/acme/functions/echo/aliases/{name}"),
            Some(body),
        )
    };
    let big_alias = alias("prod", json!({ "BIG": "x".repeat(200) }));
    assert_eq!(big_alias.status, 413, "{}", big_alias.text());
    assert_eq!(alias("prod", json!({})).status, 201);
    let second = alias("beta", json!({}));
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.text().contains("--max-aliases-per-account"), "{}", second.text());
    // Deleting frees room: the bound counts what is there now.
    let gone = server.admin(&key, "DELETE", "/accounts/acme/functions/hello", None);
    assert_eq!(gone.status, 204, "{}", gone.text());
    server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
}

#[test]
fn an_accounts_stored_components_are_bounded_and_deleted_code_frees_room() {
    let echo = std::fs::read(ECHO_COMPONENT).unwrap();
    let room = (echo.len() + 1000).to_string();
    let server = Server::start_with(&["--max-blob-bytes-per-account", &room]);
    let key = server.create_account("acme");
    let other = server.create_account("globex");
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let refused = server.upload(&key, "acme", &echo);
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(
        refused.text().contains("--max-blob-bytes-per-account"),
        "{}",
        refused.text()
    );
    assert_eq!(
        server.upload(&other, "globex", &echo).status,
        201,
        "another account has its own room"
    );
    let gone = server.admin(&key, "DELETE", "/accounts/acme/functions/hello", None);
    assert_eq!(gone.status, 204, "{}", gone.text());
    assert_eq!(
        server.upload(&key, "acme", &echo).status,
        201,
        "the deleted version's code still counts"
    );
}

#[test]
fn an_owners_kv_data_is_bounded_over_all_its_sub_tenants() {
    // `count` = 1 takes 6 bytes (key and value) per sub-tenant.
    let server = Server::start_with(&["--kv-quota-per-account", "20"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
    for sub in ["a", "b", "c"] {
        assert_eq!(call(&server, &key, "/fn/acme/counter/", Some(sub)).status, 200);
    }
    let fourth = call(&server, &key, "/fn/acme/counter/", Some("d"));
    assert_ne!(
        fourth.status, 200,
        "a fourth invented sub-tenant went past the account's quota"
    );
    assert_eq!(call(&server, &key, "/fn/acme/counter/", Some("a")).json()["kv"], 2);
}

#[test]
fn code_no_version_uses_is_unloaded() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    let bytes = fresh(HELLO_COMPONENT);
    assert_eq!(deploy_bytes(&server, &key, "acme", "other", &bytes, true).status, 201);
    let hits = server.metric("stratus_code_cache_hits_total");
    assert_eq!(
        server
            .admin(&key, "DELETE", "/accounts/acme/functions/other", None)
            .status,
        204
    );
    // Deployed again, it is loaded again (from the shared cache here), not
    // found still in memory.
    assert_eq!(deploy_bytes(&server, &key, "acme", "other", &bytes, true).status, 201);
    assert_eq!(server.metric("stratus_code_cache_hits_total"), hits + 1.0);
}

#[test]
fn an_invocation_token_and_its_call_die_with_the_functions_account() {
    let target = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let seen = target.clone();
    let (report, reports) = std::sync::mpsc::channel::<Value>();
    // The upstream holds a token an anonymous call to initech's public
    // `fetch` minted; meanwhile initech is deleted and its name taken by a
    // new account with a private function. The token must not reach it,
    // introspection must call it dead, and the call itself must stop.
    let upstream = Upstream::start(move |_origin, _path, auth| {
        let token = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
        let url = seen.get().unwrap();
        let operator = bearer(OPERATOR_KEY);
        let admin = |method: &str, path: &str, body: Value| {
            call_url(
                method,
                &format!("{url}/admin/v1{path}"),
                &[("authorization", &operator), ("content-type", "application/json")],
                body.to_string().as_bytes(),
            )
        };
        let deleted = admin("DELETE", "/accounts/initech", Value::Null).status;
        let created = admin("POST", "/accounts", json!({ "name": "initech" }));
        let key = created.json()["key"].as_str().unwrap_or_default().to_string();
        let bytes = std::fs::read(ECHO_COMPONENT).unwrap();
        let sha = sha256(&bytes);
        call_url(
            "PUT",
            &format!("{url}/admin/v1/accounts/initech/blobs/{sha}"),
            &[("authorization", &bearer(&key))],
            &bytes,
        );
        let deploy = json!({ "blob": sha, "env": { "SECRET": "new-owner-private" } });
        let deployed = call_url(
            "POST",
            &format!("{url}/admin/v1/accounts/initech/functions/secret/versions"),
            &[("authorization", &bearer(&key)), ("content-type", "application/json")],
            deploy.to_string().as_bytes(),
        )
        .status;
        let replay = call_url(
            "GET",
            &format!("{url}/fn/initech/secret/"),
            &[("authorization", &bearer(token))],
            b"",
        );
        let introspected = call_url(
            "POST",
            &format!("{url}/v1/introspect"),
            &[
                ("authorization", &bearer(&key)),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            format!("token={token}").as_bytes(),
        );
        let _ = report.send(json!({
            "deleted": deleted,
            "deployed": deployed,
            "replay": replay.status,
            "body": replay.text(),
            "introspected": introspected.json(),
        }));
        (200, json!({}))
    });
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let key = server.create_account("initech");
    let config = json!({ "public": true, "allow_outbound": [upstream.authority], "timeout_ms": 20_000 });
    server.deploy(&key, "initech", "fetch", FETCH_COMPONENT, config);
    target.set(server.url.clone()).unwrap();

    let path = format!("/fn/initech/fetch/?aud=stratus&url={}/", upstream.origin);
    let reply = server.request("GET", &path, &[], b"");
    let seen = reports.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(
        (seen["deleted"].clone(), seen["deployed"].clone()),
        (json!(204), json!(201)),
        "{seen}"
    );
    assert_eq!(
        seen["replay"], 401,
        "the token reached the new owner's function: {seen}"
    );
    assert!(!seen["body"].as_str().unwrap().contains("new-owner-private"), "{seen}");
    assert_eq!(seen["introspected"], json!({ "active": false }), "{seen}");
    assert_eq!(
        reply.status,
        404,
        "the deleted account's call went on: {}",
        reply.text()
    );
}

#[test]
fn uploads_received_at_once_are_bounded_host_wide() {
    let server = Server::start_with(&[
        "--max-uploads",
        "1",
        "--header-read-timeout",
        "1s",
        "--min-body-rate",
        "0",
    ]);
    let acme = server.create_account("acme");
    let globex = server.create_account("globex");
    let slow = stalled_upload(&server, &acme, "acme");
    let bytes = std::fs::read(HELLO_COMPONENT).unwrap();
    let waited = until_status(503, || server.upload(&globex, "globex", &bytes));
    assert_eq!(waited.status, 503, "{}", waited.text());
    assert!(waited.text().contains("--max-uploads"), "{}", waited.text());
    drop(slow);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.upload(&globex, "globex", &bytes).status == 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned upload kept its turn"
        );
    }
}

#[test]
fn a_deadline_that_passes_while_the_body_never_comes_blames_the_client() {
    // The body-rate grace (the header timeout, 10 s) outlasts the deadline.
    let server = Server::start();
    let key = server.create_account("acme");
    server.deploy(
        &key,
        "acme",
        "echo",
        ECHO_COMPONENT,
        json!({ "public": true, "timeout_ms": 1000 }),
    );
    let answer = first_answer(stalled_post(&server, "/fn/acme/echo/"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}
