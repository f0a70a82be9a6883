//! The registry as a state machine: each change is a typed command that
//! plans, against one snapshot, the transaction that makes it. The plan
//! compares the revisions of what it relied on (above all the account's own
//! record, which every write to the account rewrites), so a command planned
//! against a snapshot that another writer has since overtaken is refused
//! by the store and planned again against a newer one: optimistic
//! concurrency, which holds across processes as well as within one.

use super::error::{RegistryError, Result};
use super::layout;
use super::limits::StorageLimits;
use super::records::{AccountRecord, decode, encode};
use super::snapshot::Snapshot;
use super::store::Txn;
use crate::names::AccountName;

/// A change to the registry.
pub trait Command: Send + Sync {
    /// What it answers once applied.
    type Output: Send;

    /// The transaction that makes the change, checked against `snapshot`.
    /// An empty transaction means there is nothing to write.
    fn plan(&self, snapshot: &Snapshot, limits: &StorageLimits) -> Result<Planned<Self::Output>>;
}

/// A planned change and what it answers.
pub struct Planned<T> {
    /// The writes, with the compares that guard them.
    pub txn: Txn,
    /// The answer, once the writes are in.
    pub output: T,
}

impl<T> Planned<T> {
    /// A plan writing `txn`.
    pub fn new(txn: Txn, output: T) -> Self {
        Self { txn, output }
    }

    /// A plan that writes nothing.
    pub fn nothing(output: T) -> Self {
        Self {
            txn: Txn::new(),
            output,
        }
    }
}

/// `account`'s record, if it exists and is not being deleted.
pub(crate) fn live_account(snapshot: &Snapshot, account: &AccountName) -> Result<AccountRecord> {
    let stored = snapshot
        .stored(&layout::account(account))
        .ok_or_else(|| RegistryError::NotFound(format!("no account {account}")))?;
    let record: AccountRecord = decode(&stored.value)?;
    if record.retiring {
        return Err(RegistryError::NotFound(format!(
            "no account {account} (it is being deleted)"
        )));
    }
    Ok(record)
}

/// Guards a write to `account`: the account's record must be the one in
/// `snapshot`, and is rewritten, so that any two writes to one account
/// conflict and each sees the other's result.
pub(crate) fn guard_account(txn: &mut Txn, snapshot: &Snapshot, account: &AccountName) -> Result<AccountRecord> {
    let record = live_account(snapshot, account)?;
    let key = layout::account(account);
    let revision = snapshot.stored(&key).map_or(0, |s| s.revision);
    txn.compare(key.clone(), revision).put(key, encode(&record));
    Ok(record)
}

/// Requires `account`'s record to be the one in `snapshot`, without
/// writing it: for a write that relies on another account's state (a grant
/// it gave, its existence).
pub(crate) fn rely_on_account(txn: &mut Txn, snapshot: &Snapshot, account: &AccountName) -> Result<AccountRecord> {
    let record = live_account(snapshot, account)?;
    let key = layout::account(account);
    let revision = snapshot.stored(&key).map_or(0, |s| s.revision);
    txn.compare(key, revision);
    Ok(record)
}

/// Guards a host-wide bound: `key` must be as in `snapshot`, and is rewritten.
pub(crate) fn guard_host(txn: &mut Txn, snapshot: &Snapshot, key: &str) {
    let revision = snapshot.stored(key).map_or(0, |s| s.revision);
    txn.compare(key, revision).put(key, Vec::new());
}
