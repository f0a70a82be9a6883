//! SPEC §3, §8: invocation claims and tokens, minted lazily, dead after the call.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::*;

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies `token` as an outside service would: the host's JWKS fetched
/// over HTTP, a standard JWT library, the service's own audience pinned.
pub fn verify_at(base: &str, token: &str, audience: &str) -> Result<Value, String> {
    let jwks = call_url("GET", &format!("{base}/.well-known/jwks.json"), &[], b"").json();
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .ok_or("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.leeway = 0;
    validation.set_audience(&[audience]);
    validation.set_issuer(&["stratus"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{:?}", e.kind()))
}

fn verify(server: &Server, token: &str, audience: &str) -> Result<Value, String> {
    verify_at(&server.url, token, audience)
}

/// `POST /v1/introspect` at `base` with `key`.
pub fn introspect_at(base: &str, key: &str, token: &str) -> Reply {
    let auth = bearer(key);
    let form = format!("token={token}");
    call_url(
        "POST",
        &format!("{base}/v1/introspect"),
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    )
}

fn introspect(server: &Server, key: &str, token: &str) -> Reply {
    introspect_at(&server.url, key, token)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[test]
fn claims_describe_the_invocation_and_nothing_is_signed_unless_asked() {
    let (server, key) = Server::with_function("whoami", WHOAMI_COMPONENT, json!({ "timeout_ms": 5000 }));
    let auth = bearer(&key);
    let headers = [("authorization", auth.as_str()), ("x-stratus-sub-tenant", "alice")];

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reply = server.request("GET", "/fn/acme/whoami/", &headers, b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let claims = reply.json();
    assert_eq!(claims["owner"], "acme");
    assert_eq!(claims["caller"], "acme");
    assert_eq!(claims["sub_tenant"], "alice");
    assert_eq!(claims["function"], "whoami");
    assert_eq!(claims["version"], 1);
    assert_eq!(
        claims["invocation_id"],
        reply.header("x-stratus-invocation-id").unwrap()
    );
    assert_eq!(claims["scopes"], json!(["invoke", "kv:rw"]));
    let expires = claims["expires_at"].as_u64().unwrap();
    assert!(
        expires >= before + 5 && expires <= before + 7,
        "expires_at {expires} vs now {before}"
    );
    assert!(claims.get("token").is_none());
    assert_eq!(
        server.metric("stratus_tokens_minted_total"),
        0.0,
        "claims() must not sign anything"
    );

    let anonymous_caller = server.get("/fn/acme/whoami/", &auth).json();
    assert_eq!(anonymous_caller["sub_tenant"], Value::Null);
}

#[test]
fn tokens_carry_the_claims_and_die_with_their_invocation() {
    let server = Server::start();
    let key = server.create_account("acme");
    let other = server.create_account("globex");
    server.deploy(&key, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    let auth = bearer(&key);
    let headers = [("authorization", auth.as_str()), ("x-stratus-sub-tenant", "alice")];

    let reply = server.request(
        "GET",
        "/fn/acme/whoami/?token=1&aud=https%3A%2F%2Fupstream.example",
        &headers,
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let token = body["token"].as_str().unwrap();
    let token_for = body["token_for"].as_str().unwrap();
    assert_eq!(server.metric("stratus_tokens_minted_total"), 2.0);

    let header = decode_part(token.split('.').next().unwrap());
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "stratus-invocation+jwt");
    let received = unix_now();
    let claims = verify(&server, token, "stratus").expect("the token verifies against the JWKS");
    // Default timeout 10 s: the deadline is at most 10 s after the reply.
    assert!(
        claims["exp"].as_f64().unwrap() <= received + 10.0,
        "exp {} is past the deadline (reply at {received})",
        claims["exp"]
    );
    assert_eq!(claims["sub"], "acme/alice");
    assert_eq!(claims["jti"], reply.header("x-stratus-invocation-id").unwrap());
    assert_eq!(claims["owner"], "acme");
    assert_eq!(claims["caller"], "acme");
    assert_eq!(claims["sub_tenant"], "alice");
    assert_eq!(claims["fn"], "whoami");
    assert_eq!(claims["ver"], 1);
    assert_eq!(claims["scope"], "invoke kv:rw");
    assert_eq!(claims["exp"], body["expires_at"]);
    for field in ["iat", "nbf", "iss", "aud"] {
        assert!(claims.get(field).is_some(), "{field} missing");
    }
    // A token for an upstream is for that upstream only.
    assert_eq!(
        verify(&server, token_for, "https://upstream.example").unwrap()["aud"],
        "https://upstream.example"
    );
    assert!(
        verify(&server, token_for, "stratus").is_err(),
        "an upstream's token must not pass as the host's"
    );

    // The invocation is over: its tokens are dead though not expired.
    let dead = introspect(&server, &key, token);
    assert_eq!(dead.status, 200, "{}", dead.text());
    assert_eq!(dead.json(), json!({ "active": false }));
    assert_eq!(introspect(&server, &key, token_for).json(), json!({ "active": false }));
    let at_trigger = server.request("GET", "/fn/acme/whoami/", &[("authorization", &bearer(token))], b"");
    assert_eq!(at_trigger.status, 401, "{}", at_trigger.text());

    // Introspection of a sub-tenant token: live for its account, not for others.
    let issued = server.admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "bob" })),
    );
    let sub_token = issued.json()["token"].as_str().unwrap().to_string();
    let live = introspect(&server, &key, &sub_token).json();
    assert_eq!(live["active"], true);
    assert_eq!(live["sub_tenant"], "bob");
    assert_eq!(
        introspect(&server, &other, &sub_token).json(),
        json!({ "active": false })
    );
    assert_eq!(introspect(&server, "sk_nope", &sub_token).status, 401);
    assert_eq!(
        introspect(&server, &key, "not-a-token").json(),
        json!({ "active": false })
    );

    // Once the key that issued it is revoked, it is dead.
    let keys = server.admin(&key, "GET", "/accounts/acme/keys", None).json();
    let id = keys["keys"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        server
            .admin(OPERATOR_KEY, "DELETE", &format!("/accounts/acme/keys/{id}"), None)
            .status,
        204
    );
    assert_eq!(
        introspect(&server, OPERATOR_KEY, &sub_token).json(),
        json!({ "active": false })
    );
}

/// Re-signs `header` + `payload` with an HMAC or no signature, or keeps the
/// original signature: the forgeries a verifier must refuse.
fn forge(header: &Value, payload: &Value, signature: &str) -> String {
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", enc(header), enc(payload), signature)
}

/// Forgeries of a genuine `token`, by name: each must be refused. `public`
/// is the host's Ed25519 public key (base64url), `other_typ` the `typ` of
/// the other kind of Stratus token.
fn forgeries(token: &str, public: &str, other_typ: &str) -> Vec<(&'static str, String)> {
    let parts: Vec<&str> = token.split('.').collect();
    let (header, payload, signature) = (decode_part(parts[0]), decode_part(parts[1]), parts[2]);
    let mut out = Vec::new();

    // Payload changed under the original signature.
    let mut tampered = payload.clone();
    tampered["sub_tenant"] = json!("mallory");
    tampered["sub"] = json!(format!(
        "{}/mallory",
        payload["sub"].as_str().unwrap().split('/').next().unwrap()
    ));
    out.push(("tampered payload", forge(&header, &tampered, signature)));

    // Signed by another Ed25519 key under the same kid.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let der = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        stranger.to_pkcs8_der().unwrap()
    };
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    jwt_header.typ = header["typ"].as_str().map(str::to_string);
    jwt_header.kid = header["kid"].as_str().map(str::to_string);
    let resigned = jsonwebtoken::encode(
        &jwt_header,
        &payload,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    out.push(("signature from another key", resigned));

    // HS256 with the public key as the shared secret.
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(public).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = jwt_header.typ.clone();
    hs_header.kid = jwt_header.kid.clone();
    let hs = jsonwebtoken::encode(&hs_header, &payload, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
    out.push(("alg switched to HS256", hs));

    // alg none, no signature.
    let mut none = header.clone();
    none["alg"] = json!("none");
    out.push(("alg none", forge(&none, &payload, "")));

    // An unknown kid.
    let mut unknown = header.clone();
    unknown["kid"] = json!("0000000000000000");
    out.push(("unknown kid", forge(&unknown, &payload, signature)));

    // Presented as the other kind of token.
    let mut relabelled = header.clone();
    relabelled["typ"] = json!(other_typ);
    out.push(("kind confusion", forge(&relabelled, &payload, signature)));
    out
}

fn public_key(server: &Server) -> String {
    let jwks = server.request("GET", "/.well-known/jwks.json", &[], b"").json();
    jwks["keys"][0]["x"].as_str().unwrap().to_string()
}

#[test]
fn forged_sub_tenant_tokens_are_refused() {
    let (server, key) = Server::with_function("whoami", WHOAMI_COMPONENT, json!({ "tenancy": "multi" }));
    let issued = server.admin(
        &key,
        "POST",
        "/accounts/acme/sub-tenant-tokens",
        Some(json!({ "sub_tenant": "bob" })),
    );
    let token = issued.json()["token"].as_str().unwrap().to_string();
    let call = |t: &str| server.request("GET", "/fn/acme/whoami/", &[("authorization", &bearer(t))], b"");
    assert_eq!(call(&token).status, 200, "the genuine token works");
    for (name, forged) in forgeries(&token, &public_key(&server), "stratus-invocation+jwt") {
        let reply = call(&forged);
        assert_eq!(reply.status, 401, "{name}: {}", reply.text());
        assert_eq!(reply.code(), "unauthorized", "{name}");
    }
    assert_eq!(call(&token).status, 200, "the genuine token still works");
}

/// Starts a server whose functions may reach 127.0.0.1, with account `acme`,
/// `whoami`, and `fetch` allowed to reach `upstreams`.
fn server_with_fetch(upstreams: &[&Upstream], timeout_ms: u64) -> (Server, String) {
    let server = Server::start_with(&["--allow-private-outbound", "127.0.0.1"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    let allow: Vec<&str> = upstreams.iter().map(|u| u.authority.as_str()).collect();
    server.deploy(
        &key,
        "acme",
        "fetch",
        FETCH_COMPONENT,
        json!({ "allow_outbound": allow, "timeout_ms": timeout_ms }),
    );
    (server, key)
}

/// What `fetch` answered: the upstream's status and its body as JSON.
fn fetched(reply: &Reply) -> (u64, Value) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let outer = reply.json();
    let body = outer["body"].as_str().unwrap();
    (
        outer["status"].as_u64().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

#[test]
fn an_upstream_verifies_the_token_and_sees_it_live_only_during_the_call() {
    // The upstream verifies with the JWKS and its own audience, then asks
    // the host whether the token is live, all while the call waits for it.
    let (seen, tokens) = std::sync::mpsc::channel::<String>();
    let base = std::sync::Arc::new(std::sync::OnceLock::<(String, String)>::new());
    let upstream_base = base.clone();
    let upstream = Upstream::start(move |origin, _path, auth| {
        let Some(token) = auth.and_then(|a| a.strip_prefix("Bearer ")) else {
            return (401, json!({ "error": "no bearer token" }));
        };
        let _ = seen.send(token.to_string());
        let (url, key) = upstream_base.get().unwrap();
        match verify_at(url, token, origin) {
            Ok(claims) => (
                200,
                json!({ "claims": claims, "introspection": introspect_at(url, key, token).json() }),
            ),
            Err(error) => (401, json!({ "error": error })),
        }
    });
    let second_base = base.clone();
    let second = Upstream::start(move |origin, _path, auth| {
        let token = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
        match verify_at(&second_base.get().unwrap().0, token, origin) {
            Ok(claims) => (200, json!({ "claims": claims })),
            Err(error) => (401, json!({ "error": error })),
        }
    });
    let (server, key) = server_with_fetch(&[&upstream, &second], 30_000);
    base.set((server.url.clone(), key.clone())).unwrap();

    let auth = bearer(&key);
    let path = format!("/fn/acme/fetch/?url={}", encode(&format!("{}/check", upstream.origin)));
    let reply = server.request(
        "GET",
        &path,
        &[("authorization", &auth), ("x-stratus-sub-tenant", "alice")],
        b"",
    );
    let (status, body) = fetched(&reply);
    assert_eq!(status, 200, "the upstream refused the token: {body}");
    let claims = &body["claims"];
    assert_eq!(
        claims["aud"],
        upstream.origin.as_str(),
        "token_for defaults to the URL's origin"
    );
    assert_eq!(claims["sub"], "acme/alice");
    assert_eq!(claims["fn"], "fetch");
    assert_eq!(claims["jti"], reply.header("x-stratus-invocation-id").unwrap());
    let live = &body["introspection"];
    assert_eq!(live["active"], true, "introspection during the call: {live}");
    assert_eq!(live["jti"], claims["jti"]);
    assert_eq!(live["sub_tenant"], "alice");

    let token = tokens.recv().unwrap();
    assert_eq!(
        introspect(&server, &key, &token).json(),
        json!({ "active": false }),
        "the call is over: its token is dead"
    );
    // The same token at another upstream fails that upstream's audience check.
    let replay = call_url(
        "GET",
        &format!("{}/check", second.origin),
        &[("authorization", &bearer(&token))],
        b"",
    );
    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_eq!(replay.json()["error"], "InvalidAudience");
}

#[test]
fn live_invocation_tokens_are_refused_when_forged_or_meant_for_someone_else() {
    // While `fetch` waits on this upstream, the upstream presents what it
    // got, and forgeries of it, to the host's trigger and introspection.
    let base = std::sync::Arc::new(std::sync::OnceLock::<(String, String)>::new());
    let upstream_base = base.clone();
    let upstream = Upstream::start(move |_origin, path, auth| {
        let token = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
        let (url, key) = upstream_base.get().unwrap();
        let at_trigger = |t: &str| {
            call_url(
                "GET",
                &format!("{url}/fn/acme/whoami/"),
                &[("authorization", &format!("Bearer {t}"))],
                b"",
            )
        };
        let mut results = serde_json::Map::new();
        results.insert("genuine".into(), json!(at_trigger(token).status));
        results.insert(
            "introspection".into(),
            introspect_at(url, key, token).json()["active"].clone(),
        );
        if path.starts_with("/forge") {
            let jwks = call_url("GET", &format!("{url}/.well-known/jwks.json"), &[], b"").json();
            let public = jwks["keys"][0]["x"].as_str().unwrap().to_string();
            for (name, forged) in forgeries(token, &public, "stratus-sub-tenant+jwt") {
                results.insert(name.into(), json!(at_trigger(&forged).status));
            }
        }
        (200, Value::Object(results))
    });
    let (server, key) = server_with_fetch(&[&upstream], 30_000);
    base.set((server.url.clone(), key.clone())).unwrap();
    let auth = bearer(&key);

    // A token for this host (aud `stratus`), presented while it lives.
    let path = format!(
        "/fn/acme/fetch/?url={}&aud=stratus",
        encode(&format!("{}/forge", upstream.origin))
    );
    let (_, results) = fetched(&server.get(&path, &auth));
    assert_eq!(results["genuine"], 200, "a live token calls a sibling: {results}");
    assert_eq!(results["introspection"], true);
    for name in [
        "tampered payload",
        "signature from another key",
        "alg switched to HS256",
        "alg none",
        "unknown kid",
        "kind confusion",
    ] {
        assert_eq!(results[name], 401, "{name} accepted: {results}");
    }

    // A live token minted for another audience is not one for this host.
    let path = format!(
        "/fn/acme/fetch/?url={}&aud={}",
        encode(&format!("{}/elsewhere", upstream.origin)),
        encode("https://elsewhere.example")
    );
    let (_, results) = fetched(&server.get(&path, &auth));
    assert_eq!(results["introspection"], true, "{results}");
    assert_eq!(results["genuine"], 401, "a wrong-audience token accepted: {results}");
}

/// The path that makes `fetch` call itself `levels` times, nested, before
/// calling `innermost`.
fn chain(levels: usize, innermost: &str) -> String {
    let mut path = innermost.to_string();
    for _ in 0..levels {
        path = format!("/fn/acme/fetch/?self={}", encode(&path));
    }
    path
}

/// Follows `levels` nested `fetch` answers down to the innermost one.
fn innermost(reply: &Reply, levels: usize) -> (u64, Value) {
    let (mut status, mut body) = fetched(reply);
    for level in 1..levels {
        assert_eq!(status, 200, "level {level}: {body}");
        let outer = body;
        status = outer["status"].as_u64().unwrap();
        body = serde_json::from_str(outer["body"].as_str().unwrap()).unwrap();
    }
    (status, body)
}

#[test]
fn nested_calls_keep_caller_and_sub_tenant_and_stop_at_depth_four() {
    // No outbound entries and no private-address exemption: nested calls
    // never touch the network.
    let server = Server::start();
    let key = server.create_account("acme");
    let other = server.create_account("globex");
    server.deploy(&key, "acme", "fetch", FETCH_COMPONENT, json!({ "timeout_ms": 5000 }));
    server.deploy(&key, "acme", "whoami", WHOAMI_COMPONENT, json!({}));
    server.deploy(&other, "globex", "whoami", WHOAMI_COMPONENT, json!({ "public": true }));
    let auth = bearer(&key);
    let headers = [("authorization", auth.as_str()), ("x-stratus-sub-tenant", "alice")];

    let before = unix_now();
    let reply = server.request("GET", &chain(1, "/fn/acme/whoami/"), &headers, b"");
    let (status, inner) = innermost(&reply, 1);
    assert_eq!(status, 200, "{inner}");
    assert_eq!(inner["caller"], "acme");
    assert_eq!(inner["sub_tenant"], "alice");
    assert_eq!(inner["function"], "whoami");
    assert_ne!(inner["invocation_id"], reply.header("x-stratus-invocation-id").unwrap());
    assert!(
        inner["expires_at"].as_f64().unwrap() <= before + 6.0,
        "a nested call ends by its parent's deadline (5 s), not its own 10 s: {inner}"
    );

    // Four nested calls deep is the limit; the fifth is refused.
    let reply = server.request("GET", &chain(4, "/fn/acme/whoami/"), &headers, b"");
    let (status, inner) = innermost(&reply, 4);
    assert_eq!(status, 200, "depth 4: {inner}");
    assert_eq!(inner["caller"], "acme");
    assert_eq!(inner["sub_tenant"], "alice");
    let reply = server.request("GET", &chain(5, "/fn/acme/whoami/"), &headers, b"");
    let (status, inner) = innermost(&reply, 5);
    assert_eq!(status, 403, "depth 5: {inner}");
    assert_eq!(inner["error"]["code"], "forbidden");

    // Another account's function, even a public one, is out of reach.
    let reply = server.request("GET", &chain(1, "/fn/globex/whoami/"), &headers, b"");
    let (status, inner) = innermost(&reply, 1);
    assert_eq!(status, 403, "{inner}");
}

#[test]
fn signing_key_rotation_keeps_old_tokens_valid_until_they_expire() {
    let (server, key) = Server::with_function("whoami", WHOAMI_COMPONENT, json!({}));
    let issue = |ttl: u64| {
        let reply = server.admin(
            &key,
            "POST",
            "/accounts/acme/sub-tenant-tokens",
            Some(json!({ "sub_tenant": "bob", "ttl_s": ttl })),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["token"].as_str().unwrap().to_string()
    };
    let kid = |token: &str| decode_part(token.split('.').next().unwrap())["kid"].clone();
    let jwks_kids = || -> Vec<Value> {
        server.request("GET", "/.well-known/jwks.json", &[], b"").json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect()
    };
    let call = |t: &str| {
        server
            .request("GET", "/fn/acme/whoami/", &[("authorization", &bearer(t))], b"")
            .status
    };
    let old = issue(3);
    let old_exp = decode_part(old.split('.').nth(1).unwrap())["exp"].as_f64().unwrap();

    assert_eq!(
        server.admin(&key, "POST", "/signing-keys/rotate", None).status,
        403,
        "only the operator rotates"
    );
    let out = server.cli(OPERATOR_KEY, &["key", "rotate-signing", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(rotated["kid"], kid(&old));
    assert_eq!(jwks_kids(), vec![kid(&old), rotated["kid"].clone()]);

    let new = issue(3600);
    assert_eq!(kid(&new), rotated["kid"], "new tokens are signed with the new key");
    assert_eq!(call(&old), 200, "a token signed before rotation still verifies");
    assert_eq!(call(&new), 200);

    // Once the last token the old key signed has expired, the key goes.
    while unix_now() <= old_exp + 1.0 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(jwks_kids(), vec![rotated["kid"].clone()]);
    assert_eq!(call(&old), 401);
    assert_eq!(call(&new), 200);
}
