//! Key/value storage of the namespace the call runs in.
//!
//! The host picks the namespace from the call's authenticated credentials:
//! the function's owner, the calling account and the sub-tenant. A function
//! cannot name another namespace, so with `--tenancy multi` every sub-tenant
//! sees only its own keys without the code doing anything. Every successful
//! write is durable by the time the function answers.
//!
//! ```no_run
//! use stratus_sdk::kv;
//!
//! let visits = kv::increment("visits", 1)?;
//! kv::set("last-path", b"/home")?;
//! assert_eq!(kv::get("last-path")?.as_deref(), Some(&b"/home"[..]));
//!
//! // Every key under a prefix, with its value, a page at a time.
//! let mut cursor = None;
//! loop {
//!     let page = kv::list("todo/", cursor.as_deref(), 100)?;
//!     for (key, value) in &page.entries {
//!         println!("{key}: {} bytes", value.len());
//!     }
//!     match page.next {
//!         Some(next) => cursor = Some(next),
//!         None => break,
//!     }
//! }
//!
//! // Change a value only if nobody changed it since it was read.
//! let old = kv::get("config")?;
//! let swapped = kv::compare_and_set("config", old.as_deref(), Some(b"v2"))?;
//! # let _ = (visits, swapped);
//! # Ok::<(), stratus_sdk::kv::KvError>(())
//! ```
//!
//! Limits (the host's defaults): keys up to 512 bytes, values up to 1 MiB,
//! 10 MiB of keys and values per namespace. Going past one is a
//! [`KvError`], never a trap.

use crate::host;

/// Why a KV operation failed.
///
/// As a handler's error it answers: `TooLarge` 413, `QuotaExceeded` 507,
/// `NotAnInteger` 500, `Unavailable` 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// A key or value over its size limit; the text says which.
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

/// One page of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Keys and their values, in byte order of the keys.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Pass this as `cursor` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The value of `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    host::kv_get(key)
}

/// Sets `key` to `value`.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
    host::kv_set(key, value.as_ref())
}

/// Removes `key`; true if it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    host::kv_delete(key)
}

/// Atomically adds `delta` to the integer at `key` (absent counts as 0) and
/// returns the new value. Concurrent increments are never lost.
pub fn increment(key: &str, delta: i64) -> Result<i64, KvError> {
    host::kv_increment(key, delta)
}

/// The keys starting with `prefix`, with their values, in byte order: at
/// most `limit` of them (1 to 1000; other values are brought into that
/// range), starting just after `cursor`, the [`Page::next`] of the page
/// before. `None` starts at the first key.
pub fn list(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError> {
    host::kv_list(prefix, cursor, limit)
}

/// Atomically sets `key` to `value` (or removes it, for `None`) if its
/// current value is `expected`, where `None` means "absent". True if it
/// did; false (and nothing written) if the value was something else.
///
/// Read, compute and retry on `false` to update a value that concurrent
/// calls also change, without losing any of their writes.
pub fn compare_and_set(key: &str, expected: Option<&[u8]>, value: Option<&[u8]>) -> Result<bool, KvError> {
    host::kv_compare_and_set(key, expected, value)
}

/// Keys starting with `prefix`, in byte order, at most 1000 and without
/// their values; [`list`] pages through any number, with values.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
    host::kv_list_keys(prefix)
}
