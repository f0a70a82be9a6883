//! Key/value data of functions, one namespace per (owner, caller, sub-tenant).
//!
//! Namespaces are key prefixes in one sled tree; the prefix is built only
//! here, from account ids and a parsed sub-tenant, so guest-supplied keys can
//! never reach outside it. Ids rather than names: an account that takes a
//! deleted account's name starts with nothing.
//! Each namespace's usage (key + value bytes) is kept in a second tree and
//! updated in the same transaction as the data.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::names::SubTenantId;

pub mod etcd;

/// Size limits of the store.
#[derive(Debug, Clone)]
pub struct KvLimits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Key plus value bytes one namespace may hold.
    pub quota_bytes: u64,
    /// Key plus value bytes all of one owner account's namespaces may
    /// hold together: sub-tenants are the account's to invent, so their
    /// quotas alone do not bound it.
    pub account_quota_bytes: u64,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 1024 * 1024,
            quota_bytes: 10 * 1024 * 1024,
            account_quota_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Why a KV operation failed; each maps to one case of the WIT `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A key or value over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// The namespace's quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// `increment` on a value that is not an integer.
    #[error("{0}")]
    NotAnInteger(String),
    /// The store failed.
    #[error("{0}")]
    Unavailable(String),
}

/// One namespace: (owner account id, caller account id or `anonymous`,
/// sub-tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: Vec<u8>,
}

impl Namespace {
    /// The usage key of the owner's total: `{owner}/`, a prefix of its
    /// namespaces' keys but never one of them (those have three parts).
    fn owner_total(&self) -> &[u8] {
        let end = self.prefix.iter().position(|b| *b == b'/').map_or(0, |i| i + 1);
        &self.prefix[..end]
    }

    /// The namespace of calls by `caller` (an account id or `anonymous`)
    /// for `sub_tenant` to functions of the account with id `owner`.
    pub fn new(owner: &str, caller: &str, sub_tenant: Option<&SubTenantId>) -> Self {
        // None of the parts can contain '/' (ids are hex), and a sub-tenant
        // id is never empty, so distinct namespaces never share a prefix.
        let sub = sub_tenant.map_or("", SubTenantId::as_str);
        Self {
            prefix: format!("{owner}/{caller}/{sub}/").into_bytes(),
        }
    }

    /// Where a listing of `prefix` from just after `cursor` starts: just
    /// past the cursor (the smallest key greater than it), but never before
    /// the prefix, so a cursor from elsewhere cannot end the listing early.
    fn list_start(&self, prefix: &str, cursor: Option<&str>) -> Vec<u8> {
        let full_prefix = self.key(prefix);
        match cursor {
            Some(cursor) => {
                let mut after = self.key(cursor);
                after.push(0);
                after.max(full_prefix)
            }
            None => full_prefix,
        }
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key.as_bytes());
        full
    }
}

/// The functions' key/value data: what `stratus:function/kv` needs of a
/// store. Every write is durable when it returns; a namespace never reaches
/// another's keys; the limits are the store's own.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync {
    /// The value of `key`.
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key`.
    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    /// Removes `key`; true if it existed.
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError>;
    /// Adds `delta` to the decimal integer at `key` (absent is 0), atomically.
    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Keys starting with `prefix`, at most 1000.
    async fn list_keys(&self, ns: &Namespace, prefix: &str) -> Result<Vec<String>, KvError>;
    /// Keys starting with `prefix` and their values, from just after
    /// `cursor`, at most `limit` (brought into 1..=1000), and the next cursor.
    async fn list(&self, ns: &Namespace, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError>;
    /// Sets (or, with `None`, removes) `key` if its value is `expected`.
    async fn compare_and_set(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, KvError>;
    /// Removes every namespace the account with id `account` owns or called in.
    async fn drop_account(&self, account: &str) -> Result<(), KvError>;
}

/// What a write leaves: the new value (`None`: removed), and the
/// namespace's and the owner's usage after it.
pub(crate) struct Planned {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) after: u64,
    pub(crate) total_after: u64,
}

/// The write `new` makes of `key` (holding `old`), checked against the
/// limits, given the namespace's usage `used` and the owner's `total`. The
/// same rules for every store.
pub(crate) fn plan_write(
    limits: &KvLimits,
    key: &str,
    old: Option<&[u8]>,
    new: impl Fn(Option<&[u8]>) -> Result<Option<Vec<u8>>, KvError>,
    used: u64,
    total: u64,
) -> Result<Planned, KvError> {
    let value = new(old)?;
    let max_value = limits.max_value_bytes;
    if let Some(value) = &value
        && value.len() > max_value
    {
        return Err(KvError::TooLarge(format!(
            "the value is {} bytes; values are at most {max_value} bytes",
            value.len()
        )));
    }
    let size = |v: Option<&[u8]>| v.map_or(0, |v| (key.len() + v.len()) as u64);
    let (new_size, old_size) = (size(value.as_deref()), size(old));
    let after = (used + new_size).saturating_sub(old_size);
    let growing = new_size > old_size;
    let quota = limits.quota_bytes;
    if after > quota && growing {
        return Err(KvError::QuotaExceeded(format!(
            "this namespace would hold {after} bytes; its quota is {quota} bytes"
        )));
    }
    let total_after = (total + new_size).saturating_sub(old_size);
    let account_quota = limits.account_quota_bytes;
    if total_after > account_quota && growing {
        return Err(KvError::QuotaExceeded(format!(
            "the owner's data would hold {total_after} bytes over all its callers and sub-tenants; the account's quota is {account_quota} bytes"
        )));
    }
    Ok(Planned {
        value,
        after,
        total_after,
    })
}

/// Refuses a key over the limit.
pub(crate) fn check_key(limits: &KvLimits, key: &str) -> Result<(), KvError> {
    if key.len() > limits.max_key_bytes {
        return Err(KvError::TooLarge(format!(
            "the key is {} bytes; keys are at most {} bytes",
            key.len(),
            limits.max_key_bytes
        )));
    }
    Ok(())
}

/// What compare-and-set leaves at a key holding `old`: `value` if `old`
/// is `expected`, else `old` unchanged.
pub(crate) fn swap_if(old: Option<&[u8]>, expected: Option<&[u8]>, value: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    if old == expected {
        value.clone()
    } else {
        old.map(<[u8]>::to_vec)
    }
}

/// The value `increment` by `delta` writes over `old`.
pub(crate) fn incremented(key: &str, old: Option<&[u8]>, delta: i64) -> Result<Option<Vec<u8>>, KvError> {
    let current = match old {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .ok_or_else(|| KvError::NotAnInteger(format!("the value at {key:?} is not a decimal integer")))?,
    };
    let next = current
        .checked_add(delta)
        .ok_or_else(|| KvError::NotAnInteger("the result does not fit in 64 bits".into()))?;
    Ok(Some(next.to_string().into_bytes()))
}

/// The integer an increment wrote.
pub(crate) fn read_back(value: Option<Vec<u8>>) -> Result<i64, KvError> {
    value
        .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
        .ok_or_else(|| KvError::Unavailable("the new value could not be read back".into()))
}

/// The page of `list` that `entries` (in key order, from the start key on,
/// at most `limit + 1`, keys within the namespace) give.
pub(crate) fn page_of(mut entries: Vec<(String, Vec<u8>)>, limit: usize) -> Page {
    if entries.len() > limit {
        entries.truncate(limit);
        let next = entries.last().map(|(k, _)| k.clone());
        return (entries, next);
    }
    (entries, None)
}

/// The store.
pub struct Kv {
    db: sled::Db,
    data: sled::Tree,
    usage: sled::Tree,
    limits: KvLimits,
}

/// Keys and values of one `list`, and the cursor of the next page.
pub type Page = (Vec<(String, Vec<u8>)>, Option<String>);

/// Raw keys and values.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The value before and after a write.
type Change = (Option<Vec<u8>>, Option<Vec<u8>>);

type TxResult<T> = Result<T, ConflictableTransactionError<KvError>>;

fn abort<T>(err: KvError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(err))
}

fn unavailable(err: impl std::fmt::Display) -> KvError {
    tracing::error!(%err, "kv store failure");
    KvError::Unavailable("the key/value store is unavailable".into())
}

fn tx_error(err: TransactionError<KvError>) -> KvError {
    match err {
        TransactionError::Abort(err) => err,
        TransactionError::Storage(err) => unavailable(err),
    }
}

fn read_usage(usage: &TransactionalTree, prefix: &[u8]) -> TxResult<u64> {
    Ok(usage.get(prefix)?.map_or(0, |v| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&v[..8.min(v.len())]);
        u64::from_be_bytes(bytes)
    }))
}

impl Kv {
    /// Opens the KV trees of `db`.
    pub fn open(db: &sled::Db, limits: KvLimits) -> sled::Result<Self> {
        let kv = Self {
            db: db.clone(),
            data: db.open_tree("kv")?,
            usage: db.open_tree("kv_usage")?,
            limits,
        };
        kv.recount_owners()?;
        Ok(kv)
    }

    /// Sets each owner's total from its namespaces' usage (data written
    /// before totals were kept has none yet).
    fn recount_owners(&self) -> sled::Result<()> {
        let mut totals: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
        for item in self.usage.iter() {
            let (key, value) = item?;
            let parts = key.split(|b| *b == b'/').count();
            // `{owner}/{caller}/{sub}/` splits into four parts, `{owner}/` two.
            if parts < 4 {
                continue;
            }
            let owner_end = key.iter().position(|b| *b == b'/').map_or(0, |i| i + 1);
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&value[..8.min(value.len())]);
            *totals.entry(key[..owner_end].to_vec()).or_default() += u64::from_be_bytes(bytes);
        }
        for (owner, total) in totals {
            self.usage.insert(owner, &total.to_be_bytes()[..])?;
        }
        Ok(())
    }

    /// Every data and usage entry as stored, for moving them into another
    /// store (`stratus cluster import`) in the same layout.
    pub(crate) fn raw(&self) -> sled::Result<(Pairs, Pairs)> {
        let all = |tree: &sled::Tree| {
            tree.iter()
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<sled::Result<Vec<_>>>()
        };
        Ok((all(&self.data)?, all(&self.usage)?))
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        check_key(&self.limits, key)
    }

    /// Writes `new` (or removes, when `None`) at `key` with the usage updated
    /// in the same transaction; returns what was there.
    fn write(
        &self,
        ns: &Namespace,
        key: &str,
        new: impl Fn(Option<&[u8]>) -> Result<Option<Vec<u8>>, KvError>,
    ) -> Result<Change, KvError> {
        self.check_key(key)?;
        let full = ns.key(key);
        (&self.data, &self.usage)
            .transaction(|(data, usage)| {
                let old = data.get(&full)?.map(|v| v.to_vec());
                let used = read_usage(usage, &ns.prefix)?;
                let total = read_usage(usage, ns.owner_total())?;
                let Planned {
                    value,
                    after,
                    total_after,
                } = match plan_write(&self.limits, key, old.as_deref(), &new, used, total) {
                    Ok(planned) => planned,
                    Err(err) => return abort(err),
                };
                match &value {
                    Some(value) => data.insert(full.as_slice(), value.as_slice())?,
                    None => data.remove(full.as_slice())?,
                };
                usage.insert(ns.prefix.as_slice(), &after.to_be_bytes()[..])?;
                usage.insert(ns.owner_total(), &total_after.to_be_bytes()[..])?;
                Ok((old, value))
            })
            .map_err(tx_error)
    }

    async fn flush(&self) -> Result<(), KvError> {
        flush(&self.db).await.map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl KvBackend for Kv {
    /// The value of `key`.
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        Ok(self.data.get(ns.key(key)).map_err(unavailable)?.map(|v| v.to_vec()))
    }

    /// Sets `key`, durably.
    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.write(ns, key, |_| Ok(Some(value.clone())))?;
        self.flush().await
    }

    /// Removes `key`, durably; true if it existed.
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        let (old, _) = self.write(ns, key, |_| Ok(None))?;
        self.flush().await?;
        Ok(old.is_some())
    }

    /// Adds `delta` to the decimal integer at `key`, atomically and durably.
    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError> {
        let (_, new) = self.write(ns, key, |old| incremented(key, old, delta))?;
        self.flush().await?;
        read_back(new)
    }

    /// Keys starting with `prefix`, at most 1000.
    async fn list_keys(&self, ns: &Namespace, prefix: &str) -> Result<Vec<String>, KvError> {
        self.check_key(prefix)?;
        let mut keys = Vec::new();
        for item in self.data.scan_prefix(ns.key(prefix)).keys().take(1000) {
            let key = item.map_err(unavailable)?;
            keys.push(String::from_utf8_lossy(&key[ns.prefix.len()..]).into_owned());
        }
        Ok(keys)
    }

    /// Keys starting with `prefix` and their values, in key order, from
    /// just after `cursor`: at most `limit` (1..=1000), and the cursor of
    /// the next page if there is more.
    async fn list(&self, ns: &Namespace, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError> {
        self.check_key(prefix)?;
        let limit = limit.clamp(1, 1000) as usize;
        if let Some(cursor) = cursor {
            self.check_key(cursor)?;
        }
        let full_prefix = ns.key(prefix);
        let start = ns.list_start(prefix, cursor);
        let mut entries = Vec::new();
        for item in self.data.range(start..) {
            let (key, value) = item.map_err(unavailable)?;
            if !key.starts_with(&full_prefix) {
                break;
            }
            if entries.len() == limit {
                let next = entries.last().map(|(k, _): &(String, Vec<u8>)| k.clone());
                return Ok((entries, next));
            }
            entries.push((
                String::from_utf8_lossy(&key[ns.prefix.len()..]).into_owned(),
                value.to_vec(),
            ));
        }
        Ok((entries, None))
    }

    /// Sets `key` to `value` (removes it for `None`) if its value is
    /// `expected` (`None`: absent), atomically and durably; true if it did.
    async fn compare_and_set(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, KvError> {
        let (old, _) = self.write(ns, key, |old| Ok(swap_if(old, expected.as_deref(), &value)))?;
        let swapped = old == expected;
        if swapped {
            self.flush().await?;
        }
        Ok(swapped)
    }

    /// Removes every namespace the account with id `account` owns or
    /// called in (account deletion).
    async fn drop_account(&self, account: &str) -> Result<(), KvError> {
        if account.is_empty() {
            return Ok(());
        }
        // Every namespace has a usage entry: the caller side is found there
        // without scanning the data.
        let mut prefixes = vec![format!("{account}/").into_bytes()];
        for item in self.usage.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let caller = key.split(|b| *b == b'/').nth(1);
            if caller == Some(account.as_bytes()) {
                // The namespace leaves its owner's total.
                let owner_end = key.iter().position(|b| *b == b'/').map_or(0, |i| i + 1);
                let owner = &key[..owner_end];
                let read = |v: &[u8]| {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&v[..8.min(v.len())]);
                    u64::from_be_bytes(bytes)
                };
                let total = self.usage.get(owner).map_err(unavailable)?.map_or(0, |v| read(&v));
                let left = total.saturating_sub(read(&value));
                self.usage.insert(owner, &left.to_be_bytes()[..]).map_err(unavailable)?;
                prefixes.push(key.to_vec());
            }
        }
        for prefix in prefixes {
            for tree in [&self.data, &self.usage] {
                for key in tree.scan_prefix(&prefix).keys() {
                    tree.remove(key.map_err(unavailable)?).map_err(unavailable)?;
                }
            }
        }
        Ok(())
    }
}

/// Flushes `db` to disk without blocking the async workers.
///
/// sled 0.34's `flush_async` can deadlock when several flushes are pending at
/// once (sled issue #1308), so the blocking flush runs on the blocking pool.
async fn flush(db: &sled::Db) -> sled::Result<()> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(result) => result.map(|_| ()),
        Err(join) => Err(sled::Error::ReportableBug(format!("flush task failed: {join}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ns(owner: &str, caller: &str, sub: Option<&str>) -> Namespace {
        let sub = sub.map(|s| SubTenantId::parse(s).unwrap_or_else(|e| panic!("{e}")));
        Namespace::new(owner, caller, sub.as_ref())
    }

    /// What every store must do; `make(limits)` gives an empty one.
    pub(crate) async fn contract<K: KvBackend>(make: impl Fn(KvLimits) -> K) {
        namespaces_are_apart(&make(KvLimits::default())).await;
        list_pages_with_values_and_compare_and_set_swaps_only_on_a_match(&make(KvLimits::default())).await;
        limits_and_quota_are_typed_errors(&make(KvLimits {
            max_key_bytes: 8,
            max_value_bytes: 16,
            quota_bytes: 40,
            account_quota_bytes: 1000,
        }))
        .await;
        an_owners_namespaces_share_one_account_quota(&make(KvLimits {
            max_key_bytes: 8,
            max_value_bytes: 16,
            quota_bytes: 40,
            account_quota_bytes: 60,
        }))
        .await;
        dropping_an_account_frees_its_data_and_its_share_of_owners_totals(&make(KvLimits {
            max_key_bytes: 8,
            max_value_bytes: 16,
            quota_bytes: 40,
            account_quota_bytes: 60,
        }))
        .await;
    }

    #[tokio::test]
    async fn the_sled_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let next = std::sync::atomic::AtomicUsize::new(0);
        contract(|limits| {
            // One tree pair per check: the same database, fresh trees.
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Kv {
                db: db.clone(),
                data: db.open_tree(format!("kv{n}")).unwrap_or_else(|e| panic!("{e}")),
                usage: db.open_tree(format!("kv_usage{n}")).unwrap_or_else(|e| panic!("{e}")),
                limits,
            }
        })
        .await;
    }

    async fn namespaces_are_apart(kv: &dyn KvBackend) {
        let a = ns("acme", "acme", Some("a"));
        let b = ns("acme", "acme", Some("b"));
        let none = ns("acme", "acme", None);
        let other_caller = ns("acme", "globex", Some("a"));
        kv.set(&a, "k", b"1".to_vec()).await.unwrap_or_else(|e| panic!("{e}"));
        for other in [&b, &none, &other_caller] {
            assert_eq!(kv.get(other, "k").await.unwrap_or_else(|e| panic!("{e}")), None);
            assert!(
                kv.list_keys(other, "")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .is_empty()
            );
        }
        assert_eq!(kv.list_keys(&a, "").await.unwrap_or_else(|e| panic!("{e}")), ["k"]);
    }

    async fn list_pages_with_values_and_compare_and_set_swaps_only_on_a_match(kv: &dyn KvBackend) {
        let n = ns("acme", "acme", None);
        for i in 0..5 {
            kv.set(&n, &format!("t/{i}"), vec![i])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        kv.set(&n, "u", vec![9]).await.unwrap_or_else(|e| panic!("{e}"));
        kv.set(&ns("acme", "acme", Some("s")), "t/9", vec![9])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (first, next) = kv.list(&n, "t/", None, 2).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, [("t/0".to_string(), vec![0]), ("t/1".to_string(), vec![1])]);
        assert_eq!(next.as_deref(), Some("t/1"));
        let (rest, end) = kv
            .list(&n, "t/", next.as_deref(), 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<_> = rest.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((keys, end), (vec!["t/2", "t/3", "t/4"], None));
        // A cursor before the prefix starts at the prefix.
        let (from_a, _) = kv.list(&n, "t/", Some("a"), 10).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_a.len(), 5);

        assert!(
            !kv.compare_and_set(&n, "u", Some(vec![1]), Some(vec![2]))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(kv.get(&n, "u").await.unwrap_or_else(|e| panic!("{e}")), Some(vec![9]));
        assert!(
            kv.compare_and_set(&n, "u", Some(vec![9]), Some(vec![2]))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(
            kv.compare_and_set(&n, "new", None, Some(vec![1]))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(
            !kv.compare_and_set(&n, "new", None, Some(vec![3]))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(
            kv.compare_and_set(&n, "new", Some(vec![1]), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(kv.get(&n, "new").await.unwrap_or_else(|e| panic!("{e}")), None);
    }

    async fn limits_and_quota_are_typed_errors(kv: &dyn KvBackend) {
        let n = ns("acme", "acme", None);
        assert!(matches!(
            kv.set(&n, "much-too-long", vec![]).await,
            Err(KvError::TooLarge(_))
        ));
        assert!(matches!(kv.set(&n, "k", vec![0; 17]).await, Err(KvError::TooLarge(_))));
        kv.set(&n, "a", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
        kv.set(&n, "b", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            kv.set(&n, "c", vec![0; 16]).await,
            Err(KvError::QuotaExceeded(_))
        ));
        // Freeing space makes room again; shrinking is always allowed.
        assert!(kv.delete(&n, "a").await.unwrap_or_else(|e| panic!("{e}")));
        kv.set(&n, "c", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
        kv.set(&n, "c", vec![0; 1]).await.unwrap_or_else(|e| panic!("{e}"));
        kv.set(&n, "t", b"x".to_vec()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(kv.increment(&n, "t", 1).await, Err(KvError::NotAnInteger(_))));
        assert_eq!(kv.increment(&n, "i", 5).await.unwrap_or_else(|e| panic!("{e}")), 5);
        assert_eq!(kv.increment(&n, "i", -7).await.unwrap_or_else(|e| panic!("{e}")), -2);
    }

    async fn an_owners_namespaces_share_one_account_quota(kv: &dyn KvBackend) {
        // Each invented sub-tenant has room of its own, the owner does not.
        for sub in ["a", "b", "c"] {
            let n = ns("owner", "caller", Some(sub));
            kv.set(&n, "k", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let fourth = ns("owner", "caller", Some("d"));
        assert!(matches!(
            kv.set(&fourth, "k", vec![0; 16]).await,
            Err(KvError::QuotaExceeded(m)) if m.contains("account")
        ));
        // Another owner is not affected; freeing space makes room again.
        kv.set(&ns("other", "caller", Some("d")), "k", vec![0; 16])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            kv.delete(&ns("owner", "caller", Some("a")), "k")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        kv.set(&fourth, "k", vec![0; 16])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn dropping_an_account_frees_its_data_and_its_share_of_owners_totals(kv: &dyn KvBackend) {
        let gone = ns("gone", "gone", None);
        let as_caller = ns("owner", "gone", Some("s"));
        let stays = ns("owner", "other", None);
        kv.set(&gone, "k", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
        kv.set(&as_caller, "k", vec![0; 16])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        kv.set(&as_caller, "j", vec![0; 16])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        kv.set(&stays, "k", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
        // The owner's total (60) is nearly used: 3 × 17 bytes.
        assert!(matches!(
            kv.set(&stays, "j", vec![0; 16]).await,
            Err(KvError::QuotaExceeded(_))
        ));
        kv.drop_account("gone").await.unwrap_or_else(|e| panic!("{e}"));
        for (n, key) in [(&gone, "k"), (&as_caller, "k"), (&as_caller, "j")] {
            assert_eq!(kv.get(n, key).await.unwrap_or_else(|e| panic!("{e}")), None);
        }
        assert_eq!(
            kv.get(&stays, "k").await.unwrap_or_else(|e| panic!("{e}")),
            Some(vec![0; 16])
        );
        // What the dropped caller held left the owner's total.
        kv.set(&stays, "j", vec![0; 16]).await.unwrap_or_else(|e| panic!("{e}"));
    }
}
