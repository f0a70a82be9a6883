//! The [`MetaStore`] of one node: three sled trees in the data directory's
//! database. `store` maps each key to the revision that last changed it and
//! its value; `store_log` keeps the batches of the last transactions by
//! revision, for feeds; `store_meta` holds the current revision.
//!
//! Transactions are applied one at a time by this process (sled's own
//! transactions cannot compare a key's revision and write others atomically
//! with a concurrent writer in between otherwise), each as one sled
//! transaction over the three trees, flushed before it is acknowledged.

use std::sync::{Arc, Mutex};

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{
    Batch, ChangeFeed, Entry, MetaStore, Op, Revision, StoreError, Txn, changes_of, decode_changes, encode_changes,
    local_feed,
};

const REVISION: &[u8] = b"revision";

/// How many transactions' batches a node keeps for feeds by default.
pub const HISTORY: usize = 10_000;

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    data: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
}

/// The store in a sled database.
#[derive(Clone)]
pub struct SledStore {
    trees: Trees,
    /// Serialises commits (see the module documentation).
    commits: Arc<Mutex<()>>,
    newest: tokio::sync::watch::Sender<Revision>,
    history: usize,
}

fn stored(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn split(bytes: &[u8]) -> Result<(Revision, &[u8]), StoreError> {
    if bytes.len() < 8 {
        return Err(StoreError::Backend("a stored record is cut short".into()));
    }
    let (head, value) = bytes.split_at(8);
    let mut be = [0u8; 8];
    be.copy_from_slice(head);
    Ok((u64::from_be_bytes(be), value))
}

fn revision_of(meta: &sled::Tree) -> Result<Revision, StoreError> {
    Ok(match meta.get(REVISION).map_err(StoreError::backend)? {
        Some(bytes) => split(&bytes)?.0,
        None => 0,
    })
}

impl SledStore {
    /// Opens the store's trees in `db`, keeping `history` batches for feeds.
    pub fn open(db: &sled::Db, history: usize) -> sled::Result<Self> {
        let trees = Trees {
            db: db.clone(),
            data: db.open_tree("store")?,
            log: db.open_tree("store_log")?,
            meta: db.open_tree("store_meta")?,
        };
        let revision = revision_of(&trees.meta).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        Ok(Self {
            trees,
            commits: Arc::default(),
            newest: tokio::sync::watch::channel(revision).0,
            history: history.max(1),
        })
    }

    fn commit_blocking(&self, txn: &Txn) -> Result<Revision, StoreError> {
        let _one_at_a_time = self.commits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let t = &self.trees;
        for compare in &txn.compares {
            let have = match t.data.get(&compare.key).map_err(StoreError::backend)? {
                Some(bytes) => split(&bytes)?.0,
                None => 0,
            };
            if have != compare.mod_revision {
                return Err(StoreError::Conflict);
            }
        }
        let mut absent = None;
        let changes = changes_of(&txn.ops, |key| match t.data.contains_key(key) {
            Ok(present) => present,
            Err(err) => {
                absent = Some(StoreError::backend(err));
                false
            }
        });
        if let Some(err) = absent {
            return Err(err);
        }
        let current = revision_of(&t.meta)?;
        if changes.is_empty() {
            return Ok(current);
        }
        let revision = current + 1;
        let entry = encode_changes(&changes);
        let forget = revision.checked_sub(self.history as u64).filter(|r| *r > 0);
        (&t.data, &t.log, &t.meta)
            .transaction(|(data, log, meta)| {
                for op in &txn.ops {
                    match op {
                        Op::Put { key, value } => {
                            data.insert(key.as_slice(), stored(revision, value))?;
                        }
                        Op::Delete { key } => {
                            data.remove(key.as_slice())?;
                        }
                    }
                }
                log.insert(&revision.to_be_bytes(), entry.as_slice())?;
                if let Some(old) = forget {
                    log.remove(&old.to_be_bytes())?;
                }
                meta.insert(REVISION, &revision.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|err| StoreError::Backend(format!("{err:?}")))?;
        t.db.flush().map_err(StoreError::backend)?;
        self.newest.send_replace(revision);
        Ok(revision)
    }
}

fn read_log(trees: &Trees, after: Revision) -> Result<Vec<Batch>, StoreError> {
    let current = revision_of(&trees.meta)?;
    let oldest = match trees.log.first().map_err(StoreError::backend)? {
        Some((key, _)) => split(&key)?.0 - 1,
        None => current,
    };
    if after < oldest {
        return Err(StoreError::Compacted { oldest });
    }
    let mut batches = Vec::new();
    // A bounded read: a feed far behind catches up over several reads.
    for item in trees.log.range((after + 1).to_be_bytes()..).take(1024) {
        let (key, value) = item.map_err(StoreError::backend)?;
        batches.push(Batch {
            revision: split(&key)?.0,
            changes: decode_changes(&value)?,
        });
    }
    Ok(batches)
}

#[async_trait::async_trait]
impl MetaStore for SledStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let Some(bytes) = self.trees.data.get(key).map_err(StoreError::backend)? else {
            return Ok(None);
        };
        let (mod_revision, value) = split(&bytes)?;
        Ok(Some(Entry {
            key: key.to_vec(),
            value: value.to_vec(),
            mod_revision,
        }))
    }

    async fn range(&self, prefix: &[u8]) -> Result<(Vec<Entry>, Revision), StoreError> {
        let store = self.clone();
        let prefix = prefix.to_vec();
        blocking(move || {
            // No commit in between: the entries are those of one revision.
            let _one_at_a_time = store.commits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut entries = Vec::new();
            for item in store.trees.data.scan_prefix(&prefix) {
                let (key, bytes) = item.map_err(StoreError::backend)?;
                let (mod_revision, value) = split(&bytes)?;
                entries.push(Entry {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    mod_revision,
                });
            }
            Ok((entries, revision_of(&store.trees.meta)?))
        })
        .await
    }

    async fn commit(&self, txn: &Txn) -> Result<Revision, StoreError> {
        txn.check_limits()?;
        let store = self.clone();
        let txn = txn.clone();
        blocking(move || store.commit_blocking(&txn)).await
    }

    async fn watch(&self, after: Revision) -> Result<ChangeFeed, StoreError> {
        let trees = self.trees.clone();
        read_log(&trees, after)?;
        Ok(local_feed(after, self.newest.subscribe(), move |after| {
            read_log(&trees, after)
        }))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        revision_of(&self.trees.meta)
    }
}

/// Runs sled's blocking work (a flush waits for the disk) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Backend(format!("a storage task failed: {join}")))?
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sled_store_keeps_the_contract() {
        let dirs = std::sync::Mutex::new(Vec::new());
        super::super::contract::run(|history| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let db = sled::Config::new()
                .path(dir.path())
                .open()
                .unwrap_or_else(|e| panic!("{e}"));
            dirs.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
            let store = super::SledStore::open(&db, history).unwrap_or_else(|e| panic!("{e}"));
            async move { store }
        })
        .await;
    }

    #[tokio::test]
    async fn a_reopened_store_has_its_records_revisions_and_history() {
        use super::super::{MetaStore, Txn};
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let open = || {
            let db = sled::Config::new()
                .path(dir.path())
                .open()
                .unwrap_or_else(|e| panic!("{e}"));
            super::SledStore::open(&db, 10).unwrap_or_else(|e| panic!("{e}"))
        };
        {
            let store = open();
            for i in 0..3u8 {
                let mut txn = Txn::new();
                txn.put(vec![b'k', i], vec![i]);
                store.commit(&txn).await.unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let store = open();
        assert_eq!(store.revision().await.ok(), Some(3));
        let entry = store
            .get(&[b'k', 1])
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("k1"));
        assert_eq!(entry.mod_revision, 2);
        let mut feed = store.watch(1).await.unwrap_or_else(|e| panic!("{e}"));
        let batch = feed
            .next()
            .await
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no batch"));
        assert_eq!(batch.revision, 2);
    }
}
