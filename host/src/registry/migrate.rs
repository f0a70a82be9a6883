//! Databases written before the registry had its own store kept each kind
//! of record in a sled tree of its own. Opening one moves its records into
//! the store once, in transactions within the store's limits, then marks
//! the move done and drops the old trees. A crash part-way leaves the old
//! trees in place and the move is made again (its writes are idempotent).

use std::collections::HashMap;

use sled::Transactional;

use super::blobs::BlobStore;
use super::functions::owner_value;
use super::layout;
use super::records::{self, AccountRecord, FunctionRecord, VersionRecord, decode, encode};
use super::store::{MAX_TXN_BYTES, MAX_TXN_OPS, MetaStore, Txn};

/// The old trees, by name.
const TREES: &[&str] = &[
    "accounts",
    "keys",
    "functions",
    "versions",
    "blobs",
    "blob_owners",
    "meta",
    "aliases",
    "grants",
    "cross_aliases",
    "reservations",
    "version_counters",
];

/// Marks the move done.
const MOVED: &str = "moved_from_trees";

/// Moves the records of a database from before the store into `store`.
pub(crate) async fn from_trees(db: &sled::Db, store: &dyn MetaStore, blobs: &dyn BlobStore) -> anyhow::Result<()> {
    let names: Vec<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
    let present = |name: &str| names.iter().any(|n| n == name.as_bytes());
    if !TREES.iter().any(|t| present(t)) {
        return Ok(());
    }
    if store.get(layout::meta(MOVED).as_bytes()).await?.is_none() {
        let tree = |name: &str| db.open_tree(name);
        let old = |name: &str| -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(tree(name)?
                .iter()
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<_, _>>()?)
        };
        assign_ids(db)?;
        move_blobs_out_of_sled(&tree("blobs")?, blobs).await?;
        let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        for (_, value) in old("accounts")? {
            let record: AccountRecord = decode(&value)?;
            writes.push((layout::account(&record.name), value));
        }
        for (key, value) in old("keys")? {
            writes.push((format!("keys/{}", text(&key)), value));
        }
        for (key, value) in old("functions")? {
            writes.push((format!("functions/{}", text(&key)), value));
        }
        for (_, value) in old("versions")? {
            let record: VersionRecord = decode(&value)?;
            writes.push((layout::version(&record.account, &record.function, record.number), value));
        }
        for kind in ["aliases", "grants", "cross_aliases", "reservations"] {
            for (key, value) in old(kind)? {
                writes.push((format!("{kind}/{}", text(&key)), value));
            }
        }
        for (key, value) in old("version_counters")? {
            writes.push((format!("counters/{}", text(&key)), value));
        }
        for (key, value) in old("blob_owners")? {
            // `{sha}/{account}` becomes `blob_owners/{account}/{sha}`, with
            // the size of records written before sizes were.
            let key = text(&key);
            let Some((sha, account)) = key.split_once('/') else {
                continue;
            };
            let value = match value.len() {
                16.. => value,
                _ => {
                    let at = value
                        .get(..8)
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
                    owner_value(at, blobs.size(sha).await?.unwrap_or(0))
                }
            };
            writes.push((format!("blob_owners/{account}/{sha}"), value));
        }
        for (key, value) in old("meta")? {
            writes.push((layout::meta(&text(&key)), value));
        }
        let mut txn = Txn::new();
        for (key, value) in writes {
            if txn.ops.len() == MAX_TXN_OPS || txn.bytes() + key.len() + value.len() > MAX_TXN_BYTES / 2 {
                store.commit(&txn).await?;
                txn = Txn::new();
            }
            txn.put(key, value);
        }
        txn.put(layout::meta(MOVED), vec![1]);
        store.commit(&txn).await?;
    }
    for name in TREES {
        if present(name) {
            db.drop_tree(name)?;
        }
    }
    db.flush()?;
    Ok(())
}

/// Gives records written before ids existed their ids: accounts and
/// versions get fresh random ids, and KV data moves from name-keyed
/// namespaces to id-keyed ones. KV data whose owner or caller account no
/// longer exists is what a deleted account left behind; it is dropped
/// rather than handed to whoever takes the name. Version numbers in use
/// survive a delete of their function from then on.
fn assign_ids(db: &sled::Db) -> anyhow::Result<()> {
    let accounts = db.open_tree("accounts")?;
    let versions = db.open_tree("versions")?;
    let functions = db.open_tree("functions")?;
    let counters = db.open_tree("version_counters")?;
    let meta = db.open_tree("meta")?;
    let mut ids = HashMap::new();
    for item in accounts.iter() {
        let (key, value) = item?;
        let mut record: AccountRecord = decode(&value)?;
        if record.id.is_empty() {
            record.id = records::new_id();
            accounts.insert(key, encode(&record))?;
        }
        ids.insert(record.name.to_string(), record.id);
    }
    for item in versions.iter() {
        let (key, value) = item?;
        let mut record: VersionRecord = decode(&value)?;
        if record.id.is_empty() || record.account_id.is_empty() {
            if record.id.is_empty() {
                record.id = records::new_id();
            }
            record.account_id = ids.get(record.account.as_str()).cloned().unwrap_or_default();
            versions.insert(key, encode(&record))?;
        }
    }
    for item in functions.iter() {
        let (key, value) = item?;
        let record: FunctionRecord = decode(&value)?;
        if counters.get(&key)?.is_none() {
            counters.insert(key, &record.next_version.to_be_bytes()[..])?;
        }
    }
    const KV_BY_ID: &str = "kv_namespaces_by_id";
    if meta.get(KV_BY_ID)?.is_none() {
        let data = db.open_tree("kv")?;
        let usage = db.open_tree("kv_usage")?;
        // `{owner}/{caller}/{sub}/…` with names becomes the same with ids.
        let rename = |key: &[u8]| -> Option<Vec<u8>> {
            let text = std::str::from_utf8(key).ok()?;
            let mut parts = text.splitn(3, '/');
            let owner = ids.get(parts.next()?)?;
            let caller = match parts.next()? {
                records::ANONYMOUS => records::ANONYMOUS,
                name => ids.get(name)?.as_str(),
            };
            Some(format!("{owner}/{caller}/{}", parts.next()?).into_bytes())
        };
        // Read first: a sled transaction cannot scan, and iterating a tree
        // inside a transaction on it deadlocks.
        let entries = |tree: &sled::Tree| -> sled::Result<Vec<(sled::IVec, sled::IVec)>> { tree.iter().collect() };
        let (old_data, old_usage) = (entries(&data)?, entries(&usage)?);
        (&data, &usage, &meta)
            .transaction(|(tx_data, tx_usage, meta)| {
                for (tx, old) in [(tx_data, &old_data), (tx_usage, &old_usage)] {
                    for (key, value) in old {
                        tx.remove(key)?;
                        if let Some(renamed) = rename(key) {
                            tx.insert(renamed, value)?;
                        }
                    }
                }
                meta.insert(KV_BY_ID, &[1u8][..])?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("moving KV data to id-keyed namespaces failed: {e:?}"))?;
    }
    db.flush()?;
    Ok(())
}

/// Moves components stored in the database (before the blob store) into
/// `store`, each checked against its address, and empties the tree. Safe to
/// repeat after a crash: a blob is removed from the tree only once stored.
async fn move_blobs_out_of_sled(tree: &sled::Tree, store: &dyn BlobStore) -> anyhow::Result<()> {
    use sha2::Digest as _;
    for item in tree.iter() {
        let (sha, bytes) = item?;
        let sha = String::from_utf8_lossy(&sha).into_owned();
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        anyhow::ensure!(actual == sha, "the stored component {sha} hashes to {actual}");
        store.put(&sha, bytes::Bytes::copy_from_slice(&bytes)).await?;
        tree.remove(sha.as_bytes())?;
    }
    tree.flush()?;
    Ok(())
}
