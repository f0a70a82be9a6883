//! Commands on accounts, their keys, and host-wide settings. Deleting an
//! account is two steps: one transaction retires it (from then on nothing of
//! it is served and its keys fail), then sweeps remove its records a bounded
//! batch at a time, however many it has, and a last transaction frees the
//! name.

use super::command::{Command, Planned, guard_account, live_account};
use super::error::{RegistryError, Result};
use super::layout;
use super::limits::{StorageLimits, count};
use super::records::{AccountRecord, KeyRecord, decode, encode};
use super::snapshot::Snapshot;
use super::store::Txn;
use crate::names::AccountName;

/// Deletes per sweep step, well inside a transaction's limit.
pub const SWEEP_BATCH: usize = 100;

/// Creates an account with its first key.
pub struct CreateAccount {
    /// The new account.
    pub account: AccountRecord,
    /// Its first key's record.
    pub key: KeyRecord,
}

impl Command for CreateAccount {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let name = &self.account.name;
        let key = layout::account(name);
        if let Some(stored) = snapshot.stored(&key) {
            let existing: AccountRecord = decode(&stored.value)?;
            return Err(RegistryError::Conflict(if existing.retiring {
                format!("account {name} is being deleted; its name is free once that is done, in a moment")
            } else {
                format!("account {name} already exists")
            }));
        }
        let mut txn = Txn::new();
        txn.compare(key.clone(), 0)
            .put(key, encode(&self.account))
            .put(layout::key(name, &self.key.id), encode(&self.key));
        Ok(Planned::new(txn, ()))
    }
}

/// Marks an account as being deleted: its keys, functions and aliases stop
/// at once. Answers its record, whose id the sweep's cleanup needs.
pub struct RetireAccount {
    /// The account.
    pub name: AccountName,
}

impl Command for RetireAccount {
    type Output = AccountRecord;

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<AccountRecord>> {
        let mut record = live_account(snapshot, &self.name)?;
        record.retiring = true;
        let key = layout::account(&self.name);
        let revision = snapshot.stored(&key).map_or(0, |s| s.revision);
        let mut txn = Txn::new();
        txn.compare(key.clone(), revision).put(key, encode(&record));
        Ok(Planned::new(txn, record))
    }
}

/// Whether a sweep has more to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// It removed a batch; run it again.
    More,
    /// Nothing is left.
    Done,
}

/// Removes a batch of a retiring account's records: its own, the grants
/// it received and the cross-account aliases of others that point at it.
/// The last step removes the account's record, which frees the name.
pub struct SweepAccount {
    /// The account.
    pub name: AccountName,
}

impl Command for SweepAccount {
    type Output = Swept;

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<Swept>> {
        let name = &self.name;
        let own = layout::account(name);
        let Some(stored) = snapshot.stored(&own) else {
            return Ok(Planned::nothing(Swept::Done));
        };
        let record: AccountRecord = decode(&stored.value)?;
        if !record.retiring {
            return Err(RegistryError::Conflict(format!("account {name} is not being deleted")));
        }
        let mut keys: Vec<String> = Vec::new();
        for kind in layout::ACCOUNT_KINDS.iter().filter(|k| **k != "accounts") {
            let prefix = layout::of_account(kind, name);
            keys.extend(snapshot.stored_under(name, &prefix).map(|(key, _)| key.clone()));
            if keys.len() >= SWEEP_BATCH {
                break;
            }
        }
        if keys.len() < SWEEP_BATCH {
            keys.extend(
                snapshot
                    .grants_to(name)
                    .map(|g| layout::grant(&g.owner, &g.function, &g.grantee)),
            );
            keys.extend(
                snapshot
                    .cross_aliases_targeting(name)
                    .map(|c| layout::cross_alias(&c.account, &c.name)),
            );
        }
        keys.truncate(SWEEP_BATCH);
        // Compared, and rewritten by each step, so that a write planned
        // before the account was retired cannot put back what a step removed.
        let mut txn = Txn::new();
        txn.compare(own.clone(), stored.revision);
        if keys.is_empty() {
            txn.delete(own);
            return Ok(Planned::new(txn, Swept::Done));
        }
        txn.put(own, stored.value.to_vec());
        for key in keys {
            txn.delete(key);
        }
        Ok(Planned::new(txn, Swept::More))
    }
}

/// Adds a key to an account.
pub struct CreateKey {
    /// The account.
    pub account: AccountName,
    /// The key's record.
    pub key: KeyRecord,
}

impl Command for CreateKey {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, limits: &StorageLimits) -> Result<Planned<()>> {
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, &self.account)?;
        count(
            "keys",
            &self.account,
            snapshot.key_count(&self.account),
            limits.max_keys,
            "--max-keys-per-account",
        )?;
        txn.put(layout::key(&self.account, &self.key.id), encode(&self.key));
        Ok(Planned::new(txn, ()))
    }
}

/// Revokes a key; calls with it fail from the next request on.
pub struct RevokeKey {
    /// The account.
    pub account: AccountName,
    /// The key's id.
    pub id: String,
}

impl Command for RevokeKey {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        live_account(snapshot, &self.account)?;
        let key = layout::key(&self.account, &self.id);
        if snapshot.stored(&key).is_none() {
            return Err(RegistryError::NotFound(format!(
                "account {} has no key {}",
                self.account, self.id
            )));
        }
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, &self.account)?;
        txn.delete(key);
        Ok(Planned::new(txn, ()))
    }
}

/// Sets a host-wide value (the signing keys).
pub struct SetMeta {
    /// Its name.
    pub name: String,
    /// Its bytes.
    pub value: Vec<u8>,
    /// Written only if the value was last written at this revision (0: if
    /// there is none); `None` writes whatever is there. Nodes sharing a
    /// value (the signing keys) write it this way, so that none undoes
    /// another's change.
    pub expected: Option<u64>,
}

impl Command for SetMeta {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let key = layout::meta(&self.name);
        let mut txn = Txn::new();
        if let Some(expected) = self.expected {
            let current = snapshot.stored(&key).map_or(0, |stored| stored.revision);
            if current != expected {
                return Err(RegistryError::Conflict(format!(
                    "{} changed meanwhile (revision {current}, not {expected})",
                    self.name
                )));
            }
            txn.compare(key.clone(), expected);
        }
        txn.put(key, self.value.clone());
        Ok(Planned::new(txn, ()))
    }
}
