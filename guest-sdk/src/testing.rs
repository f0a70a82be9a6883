//! Unit tests of a function with plain `cargo test`, on the machine itself.
//!
//! A [`TestHost`] stands in for the Stratus host: an in-memory KV store
//! with one namespace per caller and sub-tenant (as the real host keeps
//! them), claims you set, tokens that look like the real ones but are not
//! signed, and outbound responses you stub. Calls to [`crate::kv`],
//! [`crate::credentials`] and [`crate::outbound`] reach the test host the
//! current thread entered; without one they panic and say so.
//!
//! ```
//! use stratus_sdk::testing::TestHost;
//! use stratus_sdk::{Request, Response, kv};
//!
//! #[stratus_sdk::handler]
//! fn handle(_req: Request) -> Response {
//!     match kv::increment("visits", 1) {
//!         Ok(n) => Response::text(n.to_string()),
//!         Err(err) => Response::text(err.to_string()).with_status(500),
//!     }
//! }
//!
//! let host = TestHost::new().with_sub_tenant("alice");
//! assert_eq!(host.call(handle, Request::get("/")).body_text(), "1");
//! assert_eq!(host.call(handle, Request::get("/")).body_text(), "2");
//! // Another sub-tenant has a namespace of its own.
//! host.set_sub_tenant(Some("bob"));
//! assert_eq!(host.call(handle, Request::get("/")).body_text(), "1");
//! ```
//!
//! Only on native targets: a component built for `wasm32-wasip2` talks to
//! the real host.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::credentials::Claims;
use crate::kv::{KvError, Page};
use crate::outbound::OutboundError;
use crate::request::Request;
use crate::response::{IntoResponse, Response};

/// The real host's default limits, so a test hits them where production would.
const MAX_KEY_BYTES: usize = 512;
const MAX_VALUE_BYTES: usize = 1024 * 1024;
const QUOTA_BYTES: usize = 10 * 1024 * 1024;
const MAX_PAGE: u32 = 1000;

type Namespace = (String, Option<String>);

struct Stub {
    method: Option<http::Method>,
    url: String,
    response: Result<http::Response<Vec<u8>>, OutboundError>,
}

struct State {
    claims: Claims,
    kv: BTreeMap<Namespace, BTreeMap<String, Vec<u8>>>,
    stubs: Vec<Stub>,
    sent: Vec<http::Request<Vec<u8>>>,
    tokens: u64,
    calls: u64,
}

/// A stand-in for the Stratus host in native unit tests.
///
/// Cloning gives another handle to the same host. It is not `Send`: each
/// test thread makes its own, so tests running in parallel never share data.
#[derive(Clone)]
pub struct TestHost {
    state: Rc<RefCell<State>>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static CURRENT: RefCell<Vec<TestHost>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the test host this thread entered, or panics naming the fix.
pub(crate) fn with_current<T>(what: &str, f: impl FnOnce(&TestHost) -> T) -> T {
    let host = CURRENT.with(|current| current.borrow().last().cloned());
    match host {
        Some(host) => f(&host),
        None => panic!(
            "stratus_sdk::{what} was called outside a Stratus host. In a native test, run the code \
             inside a stratus_sdk::testing::TestHost: `TestHost::new().call(handler, request)` or \
             `let _entered = host.enter();`. Deployed functions are built with \
             `cargo build --target wasm32-wasip2 --release`."
        ),
    }
}

/// Runs `f` with the entered test host, if any.
pub(crate) fn try_current<T>(f: impl FnOnce(&TestHost) -> T) -> Option<T> {
    let host = CURRENT.with(|current| current.borrow().last().cloned());
    host.map(|host| f(&host))
}

/// While alive, SDK calls on this thread reach the [`TestHost`] it came from.
#[must_use = "the host is entered only while the guard lives"]
pub struct Entered {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().pop());
    }
}

impl TestHost {
    /// A host with empty KV, no stubs, and the claims of a call by account
    /// `test` to its own function `test` version 1, without a sub-tenant.
    pub fn new() -> Self {
        let claims = Claims {
            invocation_id: "test-invocation-0".into(),
            owner: "test".into(),
            caller: "test".into(),
            sub_tenant: None,
            function: "test".into(),
            version: 1,
            alias: None,
            scopes: vec!["invoke".into(), "kv:rw".into()],
            expires_at: 4_102_444_800,
        };
        Self {
            state: Rc::new(RefCell::new(State {
                claims,
                kv: BTreeMap::new(),
                stubs: Vec::new(),
                sent: Vec::new(),
                tokens: 0,
                calls: 0,
            })),
        }
    }

    /// Calls come from sub-tenant `sub_tenant`.
    pub fn with_sub_tenant(self, sub_tenant: &str) -> Self {
        self.set_sub_tenant(Some(sub_tenant));
        self
    }

    /// Calls from now on come from `sub_tenant` (`None`: no sub-tenant);
    /// each sub-tenant sees its own KV namespace.
    pub fn set_sub_tenant(&self, sub_tenant: Option<&str>) {
        self.state.borrow_mut().claims.sub_tenant = sub_tenant.map(str::to_string);
    }

    /// Changes the claims calls see (caller, owner, alias, scopes…). The
    /// KV namespace follows the caller and sub-tenant.
    pub fn with_claims(self, change: impl FnOnce(&mut Claims)) -> Self {
        change(&mut self.state.borrow_mut().claims);
        self
    }

    /// The claims calls see now.
    pub fn claims(&self) -> Claims {
        self.state.borrow().claims.clone()
    }

    /// [`crate::outbound::send`] of any method to exactly `url` (scheme,
    /// host, port if any, path and query) answers `response`. Requests with
    /// no stub fail with an [`OutboundError`] naming the URL. Later stubs of
    /// the same URL win.
    pub fn stub_outbound(self, url: &str, response: http::Response<Vec<u8>>) -> Self {
        self.push_stub(None, url, Ok(response));
        self
    }

    /// Like [`TestHost::stub_outbound`], for one method only.
    pub fn stub_outbound_method(self, method: http::Method, url: &str, response: http::Response<Vec<u8>>) -> Self {
        self.push_stub(Some(method), url, Ok(response));
        self
    }

    /// Requests to `url` fail with `error`, e.g.
    /// [`OutboundError::not_allowed`] to test the denied path.
    pub fn stub_outbound_error(self, url: &str, error: OutboundError) -> Self {
        self.push_stub(None, url, Err(error));
        self
    }

    fn push_stub(
        &self,
        method: Option<http::Method>,
        url: &str,
        response: Result<http::Response<Vec<u8>>, OutboundError>,
    ) {
        self.state.borrow_mut().stubs.push(Stub {
            method,
            url: url.to_string(),
            response,
        });
    }

    /// Every request the code sent so far, oldest first.
    pub fn sent(&self) -> Vec<http::Request<Vec<u8>>> {
        self.state
            .borrow()
            .sent
            .iter()
            .map(|req| {
                let mut copy = http::Request::new(req.body().clone());
                *copy.method_mut() = req.method().clone();
                *copy.uri_mut() = req.uri().clone();
                *copy.headers_mut() = req.headers().clone();
                copy
            })
            .collect()
    }

    /// Makes SDK calls on this thread reach this host until the guard drops.
    pub fn enter(&self) -> Entered {
        CURRENT.with(|current| current.borrow_mut().push(self.clone()));
        Entered {
            _not_send: std::marker::PhantomData,
        }
    }

    /// Serves `request` with `handler` as the host would: a new invocation
    /// id, this host entered, and the handler's value turned into its
    /// [`Response`].
    pub fn call<R: IntoResponse>(&self, handler: impl FnOnce(Request) -> R, request: Request) -> Response {
        {
            let mut state = self.state.borrow_mut();
            state.calls += 1;
            state.claims.invocation_id = format!("test-invocation-{}", state.calls);
        }
        let _entered = self.enter();
        handler(request).into_response()
    }

    /// The value at `key` in the current caller's and sub-tenant's
    /// namespace, read without calling the handler.
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        let state = self.state.borrow();
        Ok(state
            .kv
            .get(&namespace(&state.claims))
            .and_then(|ns| ns.get(key))
            .cloned())
    }

    /// Sets `key` in the current namespace (test setup).
    pub fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.write(key, Some(value.to_vec())).map(drop)
    }

    pub(crate) fn kv_delete(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.write(key, None)?.is_some())
    }

    pub(crate) fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let current = match self.kv_get(key)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .ok_or_else(|| KvError::NotAnInteger(format!("the value at {key:?} is not a decimal integer")))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError::NotAnInteger("the result does not fit in 64 bits".into()))?;
        self.write(key, Some(next.to_string().into_bytes()))?;
        Ok(next)
    }

    pub(crate) fn kv_list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError> {
        check_key(prefix)?;
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let state = self.state.borrow();
        let Some(ns) = state.kv.get(&namespace(&state.claims)) else {
            return Ok(Page::default());
        };
        let start = match cursor {
            Some(cursor) if cursor >= prefix => std::ops::Bound::Excluded(cursor.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut entries: Vec<(String, Vec<u8>)> = ns
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit + 1)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        Ok(Page { entries, next })
    }

    pub(crate) fn kv_compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        if self.kv_get(key)?.as_deref() != expected {
            return Ok(false);
        }
        self.write(key, value.map(<[u8]>::to_vec))?;
        Ok(true)
    }

    /// Writes or removes `key` in the current namespace, under the real
    /// host's limits; returns the old value.
    fn write(&self, key: &str, value: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        if let Some(value) = &value
            && value.len() > MAX_VALUE_BYTES
        {
            return Err(KvError::TooLarge(format!(
                "the value is {} bytes; values are at most {MAX_VALUE_BYTES} bytes",
                value.len()
            )));
        }
        let mut state = self.state.borrow_mut();
        let ns_key = namespace(&state.claims);
        let ns = state.kv.entry(ns_key).or_default();
        let used: usize = ns.iter().map(|(k, v)| k.len() + v.len()).sum();
        let old_size = ns.get(key).map_or(0, |v| key.len() + v.len());
        let new_size = value.as_ref().map_or(0, |v| key.len() + v.len());
        if new_size > old_size && used - old_size + new_size > QUOTA_BYTES {
            return Err(KvError::QuotaExceeded(format!(
                "this namespace would hold {} bytes; its quota is {QUOTA_BYTES} bytes",
                used - old_size + new_size
            )));
        }
        Ok(match value {
            Some(value) => ns.insert(key.to_string(), value),
            None => ns.remove(key),
        })
    }

    pub(crate) fn token(&self, audience: Option<&str>) -> String {
        let mut state = self.state.borrow_mut();
        state.tokens += 1;
        let aud = audience.unwrap_or("stratus");
        format!("test-token.{}.{aud}.{}", state.claims.invocation_id, state.tokens)
    }

    pub(crate) fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let url = request.uri().to_string();
        let method = request.method().clone();
        let mut state = self.state.borrow_mut();
        state.sent.push(request);
        let stub = state
            .stubs
            .iter()
            .rev()
            .find(|stub| stub.url == url && stub.method.as_ref().is_none_or(|m| *m == method));
        match stub {
            Some(Stub {
                response: Ok(response), ..
            }) => {
                let mut copy = http::Response::new(response.body().clone());
                *copy.status_mut() = response.status();
                *copy.headers_mut() = response.headers().clone();
                Ok(copy)
            }
            Some(Stub { response: Err(err), .. }) => Err(err.clone()),
            None => Err(OutboundError::new(format!(
                "no outbound stub for {method} {url}: add one with TestHost::stub_outbound"
            ))),
        }
    }
}

fn namespace(claims: &Claims) -> Namespace {
    (claims.caller.clone(), claims.sub_tenant.clone())
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge(format!(
            "the key is {} bytes; keys are at most {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{credentials, kv, outbound};

    #[test]
    fn a_host_import_outside_a_test_host_panics_with_the_fix_and_unwinds() {
        let caught = std::panic::catch_unwind(|| kv::get("k"));
        let message = caught
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("TestHost"), "{message}");
    }

    #[test]
    fn kv_pages_and_compares() {
        let host = TestHost::new();
        let _entered = host.enter();
        for i in 0..5 {
            kv::set(&format!("t/{i}"), i.to_string()).unwrap_or_else(|e| panic!("{e}"));
        }
        kv::set("u/0", "other").unwrap_or_else(|e| panic!("{e}"));
        let first = kv::list("t/", None, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.entries.len(), 2);
        let rest = kv::list("t/", first.next.as_deref(), 10).unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<_> = rest.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((keys, rest.next), (vec!["t/2", "t/3", "t/4"], None));
        assert!(!kv::compare_and_set("t/0", Some(b"9"), Some(b"x")).unwrap_or_else(|e| panic!("{e}")));
        assert!(kv::compare_and_set("t/0", Some(b"0"), Some(b"x")).unwrap_or_else(|e| panic!("{e}")));
        assert!(kv::compare_and_set("new", None, Some(b"1")).unwrap_or_else(|e| panic!("{e}")));
        assert!(!kv::compare_and_set("new", None, Some(b"2")).unwrap_or_else(|e| panic!("{e}")));
        assert!(matches!(kv::set(&"k".repeat(600), ""), Err(KvError::TooLarge(_))));
    }

    #[test]
    fn tokens_claims_and_stubs() {
        let host = TestHost::new()
            .with_claims(|c| c.caller = "globex".into())
            .stub_outbound("https://api.example.com/v1", http::Response::new(b"hi".to_vec()));
        let response = host.call(
            |_req| {
                let claims = credentials::claims();
                let token = credentials::token_for("https://api.example.com");
                let request = http::Request::get("https://api.example.com/v1")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Vec::new())
                    .unwrap_or_default();
                let body = outbound::send(request).map(|r| r.into_body()).unwrap_or_default();
                let missing = outbound::send(http::Request::new(Vec::new())).is_err();
                format!("{} {} {missing}", claims.caller, String::from_utf8_lossy(&body))
            },
            Request::get("/"),
        );
        assert_eq!(response.body_text(), "globex hi true");
        let sent = host.sent();
        assert_eq!(sent.len(), 2);
        assert!(
            sent[0]
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer test-token."))
        );
    }
}
