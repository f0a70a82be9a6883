//! Turning stored records into a [`Snapshot`]: all of them once, then one
//! batch of changes at a time. A batch re-derives only the accounts whose
//! records it changed, from the snapshot's own copy of their records, so it
//! costs what it changed and never reads the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::layout::{self, Partition};
use super::records::{
    AccountRecord, CrossAliasRecord, FunctionRecord, GrantRecord, KeyRecord, ReservationRecord, VersionRecord,
    VersionState, decode,
};
use super::snapshot::{self, Decoded, FunctionEntry, Records, Snapshot, Stored};
use super::store::{Batch, Entry, Revision};
use crate::names::{AccountName, FunctionName};

/// The snapshot of `entries`, all as of `revision`.
pub(crate) fn build(entries: Vec<Entry>, revision: Revision) -> anyhow::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut accounts: BTreeMap<String, Records> = BTreeMap::new();
    let mut host = Records::new();
    for entry in entries {
        let key = String::from_utf8(entry.key)?;
        let stored = Stored::new(&key, entry.value.into(), entry.mod_revision)?;
        match layout::partition(&key) {
            Partition::Host => {
                host.insert(key, stored);
            }
            Partition::Account(account) => {
                let account = account.to_string();
                accounts.entry(account).or_default().insert(key, stored);
            }
        }
    }
    for (account, records) in accounts {
        let account = AccountName::parse(&account)?;
        load_account(&mut snapshot, &account, &records)?;
        snapshot.records.insert(account, Arc::new(records));
    }
    snapshot.host = Arc::new(host);
    snapshot.revision = revision;
    Ok(snapshot)
}

/// `current` with `batch` applied.
pub(crate) fn apply(current: &Snapshot, batch: &Batch) -> anyhow::Result<Snapshot> {
    let mut next = current.clone();
    let mut touched: BTreeMap<AccountName, Records> = BTreeMap::new();
    let mut host: Option<Records> = None;
    for change in &batch.changes {
        let key = String::from_utf8(change.key.clone())?;
        let records = match layout::partition(&key) {
            Partition::Host => host.get_or_insert_with(|| (*next.host).clone()),
            Partition::Account(account) => {
                let account = AccountName::parse(account)?;
                touched
                    .entry(account)
                    .or_insert_with_key(|account| next.records.get(account).map(|r| (**r).clone()).unwrap_or_default())
            }
        };
        match &change.value {
            Some(value) => {
                let stored = Stored::new(&key, value.as_slice().into(), batch.revision)?;
                records.insert(key, stored);
            }
            None => {
                records.remove(&key);
            }
        }
    }
    if let Some(host) = host {
        next.host = Arc::new(host);
    }
    for (account, records) in touched {
        unload_account(&mut next, &account);
        if records.is_empty() {
            next.records.remove(&account);
        } else {
            load_account(&mut next, &account, &records)?;
            next.records.insert(account, Arc::new(records));
        }
    }
    next.revision = batch.revision;
    Ok(next)
}

/// `account`'s records of one kind, in key order.
fn of_kind<'a>(records: &'a Records, kind: &str, account: &AccountName) -> impl Iterator<Item = &'a Stored> + 'a {
    let prefix = layout::of_account(kind, account);
    records
        .range(prefix.clone()..)
        .take_while(move |(key, _)| key.starts_with(&prefix))
        .map(|(_, stored)| stored)
}

/// The values of `account`'s records of one kind, in key order.
fn values<'a>(records: &'a Records, kind: &str, account: &AccountName) -> impl Iterator<Item = &'a [u8]> + 'a {
    of_kind(records, kind, account).map(|stored| &stored.value[..])
}

/// Derives what the hot path reads from `account`'s records, into a
/// snapshot that holds nothing of it yet: its record, keys, functions with
/// their versions and aliases, the grants it gave, its cross-account aliases
/// and reservations. An account or function being deleted is left out.
fn load_account(snapshot: &mut Snapshot, account: &AccountName, records: &Records) -> anyhow::Result<()> {
    // Counted while the account is being deleted too: its components are
    // not collected before its records are gone.
    let mut blobs = Vec::new();
    let prefix = layout::of_account("blob_owners", account);
    for key in records
        .range(prefix.clone()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(&prefix))
    {
        let sha = key[prefix.len()..].to_string();
        *snapshot.blob_users.get_or_default(sha.clone()) += 1;
        blobs.push(sha);
    }
    let record = match records.get(&layout::account(account)) {
        Some(stored) => Some(decode::<AccountRecord>(&stored.value)?),
        None => None,
    };
    let record = match record {
        Some(record) if !record.retiring => record,
        // Its sweep has not removed every record yet, or is under way.
        gone_or_retiring => {
            if let Some(record) = gone_or_retiring {
                snapshot.retiring.insert(record.name.clone(), record);
            }
            snapshot.owned.insert(
                account.clone(),
                snapshot::Owned {
                    blobs,
                    ..Default::default()
                },
            );
            return Ok(());
        }
    };
    snapshot.accounts.insert(record.name.clone(), record);
    let mut owned = snapshot::Owned {
        blobs,
        ..Default::default()
    };
    for value in values(records, "keys", account) {
        let record: KeyRecord = decode(value)?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&record.hash, &mut hash)?;
        snapshot
            .key_ids
            .get_or_default(record.account.clone())
            .insert(record.id.clone());
        owned.key_hashes.push(hash);
        snapshot.keys.insert(hash, record);
    }
    let mut functions: BTreeMap<FunctionName, FunctionEntry> = BTreeMap::new();
    for value in values(records, "functions", account) {
        let record: FunctionRecord = decode(value)?;
        if record.retiring {
            continue;
        }
        functions.insert(
            record.name.clone(),
            FunctionEntry {
                record,
                versions: Default::default(),
                latest: None,
                public: false,
                aliases: Default::default(),
            },
        );
    }
    for stored in of_kind(records, "versions", account) {
        let Decoded::Version(record) = &stored.decoded else {
            anyhow::bail!("a version record was not decoded");
        };
        if let Some(entry) = functions.get_mut(&record.function) {
            if record.state == VersionState::Ready {
                entry.public |= record.config.public;
                if entry.latest.is_none_or(|n| n < record.number) {
                    entry.latest = Some(record.number);
                }
            }
            entry.versions.insert(record.number, record.clone());
        }
    }
    for stored in of_kind(records, "aliases", account) {
        let Decoded::Alias(record) = &stored.decoded else {
            anyhow::bail!("an alias record was not decoded");
        };
        if let Some(entry) = functions.get_mut(&record.function) {
            // Each target as seen through the alias, built once here rather
            // than on every call (and shared when the alias changes nothing).
            let through = |number: u32| {
                entry
                    .versions
                    .get(&number)
                    .filter(|v| v.state == VersionState::Ready)
                    .map(|v| {
                        if record.overrides == Default::default() {
                            return v.clone();
                        }
                        Arc::new(VersionRecord {
                            config: record.overrides.apply(&v.config),
                            ..v.as_ref().clone()
                        })
                    })
            };
            let main = through(record.version);
            let minor = record.weight.and_then(|w| through(w.version).map(|v| (w.percent, v)));
            entry.aliases.insert(
                record.name.clone(),
                snapshot::AliasEntry {
                    record: record.clone(),
                    main,
                    minor,
                },
            );
        }
    }
    for value in values(records, "grants", account) {
        let record: GrantRecord = decode(value)?;
        if !functions.contains_key(&record.function) {
            continue;
        }
        let key = (record.owner.clone(), record.function.clone());
        if !owned.grant_functions.contains(&record.function) {
            owned.grant_functions.push(record.function.clone());
        }
        snapshot
            .grants
            .get_or_default(key)
            .insert(record.grantee.clone(), Arc::new(record));
    }
    for value in values(records, "reservations", account) {
        let record: ReservationRecord = decode(value)?;
        if !functions.contains_key(&record.function) {
            continue;
        }
        let qualifier = record.qualifier.clone().unwrap_or_else(|| "latest".into());
        let key = (record.account.clone(), record.function.clone(), qualifier);
        owned.reservations.push(key.clone());
        snapshot.reservations.insert(key, Arc::new(record));
    }
    if !functions.is_empty() {
        snapshot.functions.insert(account.clone(), functions);
    }
    let mut cross = BTreeMap::new();
    for value in values(records, "cross_aliases", account) {
        let record: CrossAliasRecord = decode(value)?;
        cross.insert(record.name.clone(), Arc::new(record));
    }
    if !cross.is_empty() {
        snapshot.cross_aliases.insert(account.clone(), cross);
    }
    snapshot.owned.insert(account.clone(), owned);
    Ok(())
}

/// Takes everything derived from `account` out of `snapshot` (what
/// [`load_account`] put in).
fn unload_account(snapshot: &mut Snapshot, account: &AccountName) {
    snapshot.accounts.remove(account);
    snapshot.retiring.remove(account);
    snapshot.key_ids.remove(account);
    snapshot.functions.remove(account);
    snapshot.cross_aliases.remove(account);
    if let Some(owned) = snapshot.owned.remove(account) {
        for hash in &owned.key_hashes {
            snapshot.keys.remove(hash);
        }
        for function in owned.grant_functions {
            snapshot.grants.remove(&(account.clone(), function));
        }
        for key in &owned.reservations {
            snapshot.reservations.remove(key);
        }
        for sha in owned.blobs {
            let left = snapshot.blob_users.get_mut(&sha).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == Some(0) {
                snapshot.blob_users.remove(&sha);
            }
        }
    }
}
