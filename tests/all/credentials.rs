//! SPEC §3, §8: invocation claims and tokens, minted lazily, dead after the call.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::*;

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies `token` against the host's JWKS, as an outside service would.
fn verify(server: &Server, token: &str, audience: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let jwks = server.request("GET", "/.well-known/jwks.json", &[], b"").json();
    let header = decode_part(token.split('.').next().unwrap());
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.leeway = 0;
    validation.set_audience(&[audience]);
    validation.set_issuer(&["stratus"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|data| data.claims)
}

fn introspect(server: &Server, key: &str, token: &str) -> Reply {
    let auth = bearer(key);
    let form = format!("token={token}");
    server.request(
        "POST",
        "/v1/introspect",
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    )
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

    let anonymous_caller = server
        .request("GET", "/fn/acme/whoami/", &[("authorization", &auth)], b"")
        .json();
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
    let claims = verify(&server, token, "stratus").expect("the token verifies against the JWKS");
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
    let parts: Vec<&str> = token.split('.').collect();
    let (header, payload, signature) = (decode_part(parts[0]), decode_part(parts[1]), parts[2]);
    let call = |t: &str| server.request("GET", "/fn/acme/whoami/", &[("authorization", &bearer(t))], b"");
    assert_eq!(call(&token).status, 200, "the genuine token works");

    // Payload changed under the original signature.
    let mut other = payload.clone();
    other["sub_tenant"] = json!("mallory");
    other["sub"] = json!("acme/mallory");
    assert_eq!(call(&forge(&header, &other, signature)).status, 401, "tampered payload");

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
    assert_eq!(call(&resigned).status, 401, "signature from another key");

    // HS256 with the public key as the shared secret.
    let jwks = server.request("GET", "/.well-known/jwks.json", &[], b"").json();
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = jwt_header.typ.clone();
    hs_header.kid = jwt_header.kid.clone();
    let hs = jsonwebtoken::encode(&hs_header, &payload, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
    assert_eq!(call(&hs).status, 401, "alg switched to HS256");

    // alg none, no signature.
    let mut none = header.clone();
    none["alg"] = json!("none");
    assert_eq!(call(&forge(&none, &payload, "")).status, 401, "alg none");

    // An unknown kid.
    let mut unknown = header.clone();
    unknown["kid"] = json!("0000000000000000");
    assert_eq!(call(&forge(&unknown, &payload, signature)).status, 401, "unknown kid");

    // A sub-tenant token is not an invocation token: relabelled, it fails.
    let mut relabelled = header.clone();
    relabelled["typ"] = json!("stratus-invocation+jwt");
    assert_eq!(
        call(&forge(&relabelled, &payload, signature)).status,
        401,
        "kind confusion"
    );
    assert_eq!(call(&token).status, 200, "the genuine token still works");
}
