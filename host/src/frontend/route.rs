//! Where a call belongs, read from the request without verifying anything:
//! the frontend only routes; the node it reaches checks everything again.

use base64::Engine as _;

/// What the frontend needs to know of a request to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A trigger call of the group `key`: (account, function or alias name)
    /// and the sub-tenant when the call names one. `minted_by` is the node
    /// that minted the invocation token it carries, if any.
    Call {
        /// The group key.
        key: Vec<u8>,
        /// The node that knows the token's invocation.
        minted_by: Option<String>,
        /// The function called, when the address names one: what a
        /// reservation's placement is looked up by.
        function: Option<Called>,
    },
    /// Anything else (admin API, introspection, JWKS): any live node.
    Any,
}

/// The function a call names, as its address spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Called {
    /// The account in the address.
    pub account: String,
    /// The function or alias name.
    pub name: String,
    /// The qualifier; none is `latest`.
    pub qualifier: Option<String>,
    /// The sub-tenant the call names, if any.
    pub sub_tenant: Option<String>,
}

/// The claims of a bearer JWT, unverified; `None` if it is not one.
fn unverified_claims(headers: &http::HeaderMap) -> Option<serde_json::Value> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    let payload = bearer.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The route of a request with `path` and `headers`, when functions also
/// answer at `{name}--{account}.{base}` under `base_domain`.
pub fn of(path: &str, headers: &http::HeaderMap, base_domain: Option<&str>) -> Route {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
    let address = match stratus_wire::address::parse_path(path) {
        Some(address) => address.ok(),
        None => match (base_domain, host) {
            (Some(base), Some(host)) => match stratus_wire::address::parse_host(host, base, path) {
                Some(address) => address.ok(),
                None => return Route::Any,
            },
            _ => return Route::Any,
        },
    };
    let claims = unverified_claims(headers);
    // Only a well-formed id (the node refuses any other): a caller cannot
    // make group keys of any length.
    let sub_tenant = headers
        .get("x-stratus-sub-tenant")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| claims.as_ref()?.get("sub_tenant")?.as_str().map(str::to_string))
        .filter(|s| stratus_wire::names::SubTenantId::parse(s).is_ok());
    let minted_by = claims
        .as_ref()
        .and_then(|c| c.get("node")?.as_str().map(str::to_string));
    // A malformed address still goes to one node, which explains the error.
    let mut key = match &address {
        Some(address) => format!("{}/{}", address.account, address.name),
        None => path.to_string(),
    };
    if let Some(sub) = &sub_tenant {
        key.push('/');
        key.push_str(sub);
    }
    let function = address.map(|address| Called {
        account: address.account.as_str().to_string(),
        name: address.name.as_str().to_string(),
        qualifier: match address.qualifier {
            stratus_wire::names::Qualifier::Latest => None,
            other => Some(other.to_string()),
        },
        sub_tenant,
    });
    Route::Call {
        key: key.into_bytes(),
        minted_by,
        function,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap_or_else(|e| panic!("{e}")));
        }
        map
    }

    fn token(claims: serde_json::Value) -> String {
        let part = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "Bearer {}.{}.sig",
            part(&serde_json::json!({"alg": "EdDSA"})),
            part(&claims)
        )
    }

    #[test]
    fn the_group_is_account_and_name_with_the_sub_tenant_and_never_the_qualifier() {
        let key = |path: &str, h: &http::HeaderMap| match of(path, h, None) {
            Route::Call { key, .. } => String::from_utf8(key).unwrap_or_default(),
            Route::Any => "any".into(),
        };
        let none = headers(&[]);
        assert_eq!(key("/fn/acme/hello/x", &none), "acme/hello");
        assert_eq!(key("/fn/acme/hello:live/x", &none), "acme/hello");
        assert_eq!(key("/fn/acme/hello:3/", &none), "acme/hello");
        let sub = headers(&[("x-stratus-sub-tenant", "alice")]);
        assert_eq!(key("/fn/acme/hello/", &sub), "acme/hello/alice");
        let malformed = headers(&[("x-stratus-sub-tenant", "a/b")]);
        assert_eq!(key("/fn/acme/hello/", &malformed), "acme/hello", "not a sub-tenant id");
        let with_token = headers(&[("authorization", &token(serde_json::json!({"sub_tenant": "bob"})))]);
        assert_eq!(key("/fn/acme/hello/", &with_token), "acme/hello/bob");
        assert_eq!(key("/admin/v1/accounts", &none), "any");
        assert_eq!(key("/v1/introspect", &none), "any");
        let host = headers(&[("host", "hello--acme.fn.example:8080")]);
        assert!(matches!(of("/x", &host, Some("fn.example")), Route::Call { key, .. } if key == b"acme/hello"));
        let called = |path: &str| match of(path, &sub, None) {
            Route::Call { function, .. } => function,
            Route::Any => None,
        };
        let live = called("/fn/acme/hello:live/x").unwrap_or_else(|| panic!("a call"));
        assert_eq!(
            (
                live.account.as_str(),
                live.name.as_str(),
                live.qualifier.as_deref(),
                live.sub_tenant.as_deref()
            ),
            ("acme", "hello", Some("live"), Some("alice"))
        );
        assert_eq!(called("/fn/acme/hello/").and_then(|c| c.qualifier), None, "latest");
    }

    #[test]
    fn an_invocation_token_names_its_node() {
        let h = headers(&[(
            "authorization",
            &token(serde_json::json!({"node": "n2", "sub_tenant": "a"})),
        )]);
        assert!(matches!(of("/fn/acme/hello/", &h, None), Route::Call { minted_by: Some(n), .. } if n == "n2"));
        let garbage = headers(&[("authorization", "Bearer not.a.jwt")]);
        assert!(matches!(
            of("/fn/acme/hello/", &garbage, None),
            Route::Call { minted_by: None, .. }
        ));
    }
}
