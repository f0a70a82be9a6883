//! The one place the SDK reaches the host's imports.
//!
//! Built for `wasm32`, each function calls the Stratus host. Built for the
//! machine itself (a native `cargo test`), each one asks the
//! [`crate::testing::TestHost`] the current thread entered, and panics with
//! the fix when there is none: the panic unwinds like any other, so it fails
//! one test, not the whole test binary.

use crate::credentials::Claims;
use crate::kv::{KvError, Page};
use crate::outbound::OutboundError;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::bindings::stratus::function::{credentials as wit_credentials, kv as wit_kv};

    impl From<wit_kv::Error> for KvError {
        fn from(err: wit_kv::Error) -> Self {
            match err {
                wit_kv::Error::TooLarge(m) => KvError::TooLarge(m),
                wit_kv::Error::QuotaExceeded(m) => KvError::QuotaExceeded(m),
                wit_kv::Error::NotAnInteger(m) => KvError::NotAnInteger(m),
                wit_kv::Error::Unavailable(m) => KvError::Unavailable(m),
            }
        }
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(wit_kv::get(key)?)
    }
    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        Ok(wit_kv::set(key, value)?)
    }
    pub fn kv_delete(key: &str) -> Result<bool, KvError> {
        Ok(wit_kv::delete(key)?)
    }
    pub fn kv_increment(key: &str, delta: i64) -> Result<i64, KvError> {
        Ok(wit_kv::increment(key, delta)?)
    }
    pub fn kv_list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
        Ok(wit_kv::list_keys(prefix)?)
    }
    pub fn kv_list(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError> {
        let page = wit_kv::list_entries(prefix, cursor, limit)?;
        Ok(Page {
            entries: page.entries.into_iter().map(|e| (e.key, e.value)).collect(),
            next: page.next,
        })
    }
    pub fn kv_compare_and_set(key: &str, expected: Option<&[u8]>, value: Option<&[u8]>) -> Result<bool, KvError> {
        Ok(wit_kv::compare_and_set(key, expected, value)?)
    }
    pub fn claims() -> Claims {
        let c = wit_credentials::claims();
        Claims {
            invocation_id: c.invocation_id,
            owner: c.owner,
            caller: c.caller,
            sub_tenant: c.sub_tenant,
            function: c.function,
            version: c.version,
            alias: c.alias,
            scopes: c.scopes,
            expires_at: c.expires_at,
        }
    }
    pub fn current_claims() -> Option<Claims> {
        Some(claims())
    }
    pub fn token() -> String {
        wit_credentials::token()
    }
    pub fn token_for(audience: &str) -> String {
        wit_credentials::token_for(audience)
    }
    pub fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, OutboundError> {
        crate::outbound::wasi::send(request)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use crate::testing::with_current;

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        with_current("kv::get", |host| host.kv_get(key))
    }
    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        with_current("kv::set", |host| host.kv_set(key, value))
    }
    pub fn kv_delete(key: &str) -> Result<bool, KvError> {
        with_current("kv::delete", |host| host.kv_delete(key))
    }
    pub fn kv_increment(key: &str, delta: i64) -> Result<i64, KvError> {
        with_current("kv::increment", |host| host.kv_increment(key, delta))
    }
    pub fn kv_list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
        with_current("kv::list_keys", |host| {
            let page = host.kv_list(prefix, None, 1000)?;
            Ok(page.entries.into_iter().map(|(key, _)| key).collect())
        })
    }
    pub fn kv_list(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError> {
        with_current("kv::list", |host| host.kv_list(prefix, cursor, limit))
    }
    pub fn kv_compare_and_set(key: &str, expected: Option<&[u8]>, value: Option<&[u8]>) -> Result<bool, KvError> {
        with_current("kv::compare_and_set", |host| {
            host.kv_compare_and_set(key, expected, value)
        })
    }
    pub fn claims() -> Claims {
        with_current("credentials::claims", |host| host.claims())
    }
    pub fn current_claims() -> Option<Claims> {
        crate::testing::try_current(|host| host.claims())
    }
    pub fn token() -> String {
        with_current("credentials::token", |host| host.token(None))
    }
    pub fn token_for(audience: &str) -> String {
        with_current("credentials::token_for", |host| host.token(Some(audience)))
    }
    pub fn send(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, OutboundError> {
        with_current("outbound::send", |host| host.send(request))
    }
}

pub(crate) use imp::*;
