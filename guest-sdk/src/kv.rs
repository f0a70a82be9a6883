//! Key/value storage of the namespace the call runs in.
//!
//! The namespace is chosen by the host from the call's authenticated
//! credentials: the function's owner, the calling account and the sub-tenant.
//! A function cannot name another namespace. Every successful write is durable
//! by the time the function answers.
//!
//! ```no_run
//! let visits = stratus_sdk::kv::increment("visits", 1)?;
//! stratus_sdk::kv::set("last-path", b"/home")?;
//! # Ok::<(), stratus_sdk::kv::KvError>(())
//! ```

use crate::bindings::stratus::function::kv as wit;

/// Why a KV operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// A key or value over its size limit.
    TooLarge(String),
    /// The namespace's storage quota would be exceeded.
    QuotaExceeded(String),
    /// `increment` found a value that is not a decimal integer.
    NotAnInteger(String),
    /// The store is unavailable; the operation may be retried.
    Unavailable(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::TooLarge(m) => write!(f, "too large: {m}"),
            KvError::QuotaExceeded(m) => write!(f, "quota exceeded: {m}"),
            KvError::NotAnInteger(m) => write!(f, "not an integer: {m}"),
            KvError::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<wit::Error> for KvError {
    fn from(err: wit::Error) -> Self {
        match err {
            wit::Error::TooLarge(m) => KvError::TooLarge(m),
            wit::Error::QuotaExceeded(m) => KvError::QuotaExceeded(m),
            wit::Error::NotAnInteger(m) => KvError::NotAnInteger(m),
            wit::Error::Unavailable(m) => KvError::Unavailable(m),
        }
    }
}

/// The value of `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    Ok(wit::get(key)?)
}

/// Sets `key` to `value`.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
    Ok(wit::set(key, value.as_ref())?)
}

/// Removes `key`; true if it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    Ok(wit::delete(key)?)
}

/// Atomically adds `delta` to the integer at `key` (absent counts as 0) and
/// returns the new value. Concurrent increments are never lost.
pub fn increment(key: &str, delta: i64) -> Result<i64, KvError> {
    Ok(wit::increment(key, delta)?)
}

/// Keys starting with `prefix`, in byte order, at most 1000.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
    Ok(wit::list_keys(prefix)?)
}
