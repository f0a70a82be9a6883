//! `MetaStore`: where the registry's records live, shaped after etcd v3 so
//! that one node (sled) and a cluster (etcd) are two implementations of the
//! same contract rather than two registries.
//!
//! The contract, which [`contract`] checks against every implementation:
//!
//! - every committed transaction advances one store-wide revision, and each
//!   key remembers the revision that last changed it;
//! - a transaction is a list of compares (this key was last changed at
//!   revision R, or is absent) and a list of puts and deletes, applied all
//!   at once or, when any compare fails, not at all ([`StoreError::Conflict`]);
//! - a transaction holds at most [`MAX_TXN_OPS`] operations and
//!   [`MAX_TXN_BYTES`] bytes, etcd's default limits, so a caller tested here
//!   never writes one etcd would refuse;
//! - [`MetaStore::watch`] yields every change after a revision, one batch
//!   per transaction, in order, the caller's own included; history older
//!   than the store keeps answers [`StoreError::Compacted`], after which a
//!   reader starts again from [`MetaStore::range`];
//! - a batch with no changes reports progress: nothing changed up to its
//!   revision. A store whose revisions are also spent on other data (etcd)
//!   sends them, so that a reader waiting for the revision that
//!   [`MetaStore::revision`] returned is not left waiting.

pub mod etcd;
#[cfg(test)]
pub mod mem;
pub mod sled;

#[cfg(test)]
pub(crate) mod contract;

use std::pin::Pin;

use futures::Stream;

/// A store-wide revision: the number of transactions that changed something.
pub type Revision = u64;

/// At most this many compares, and this many operations, in one transaction
/// (etcd's `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// At most this many bytes of keys and values in one transaction (etcd's
/// default request limit, 1.5 MiB).
pub const MAX_TXN_BYTES: usize = 1536 * 1024;

/// A stored value and the revision that last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of the transaction that last wrote it.
    pub mod_revision: Revision,
}

/// A condition a transaction holds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: Vec<u8>,
    /// The revision that must have last changed it; 0 means it must be absent.
    pub mod_revision: Revision,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a key.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes a key (nothing happens if it is absent).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// Compares and writes applied as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// All must hold.
    pub compares: Vec<Compare>,
    /// Then all of these apply.
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to have been last changed at `mod_revision` (0: absent).
    pub fn compare(&mut self, key: impl Into<Vec<u8>>, mod_revision: Revision) -> &mut Self {
        self.compares.push(Compare {
            key: key.into(),
            mod_revision,
        });
        self
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values it carries.
    pub fn bytes(&self) -> usize {
        let compares: usize = self.compares.iter().map(|c| c.key.len() + 8).sum();
        let ops: usize = self
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => key.len() + value.len(),
                Op::Delete { key } => key.len(),
            })
            .sum();
        compares + ops
    }

    /// Refuses what etcd would refuse, before anything is sent: more than
    /// its limits, or two writes of one key.
    pub fn check_limits(&self) -> Result<(), StoreError> {
        let (compares, ops, bytes) = (self.compares.len(), self.ops.len(), self.bytes());
        if compares > MAX_TXN_OPS || ops > MAX_TXN_OPS || bytes > MAX_TXN_BYTES {
            return Err(StoreError::TooLarge { compares, ops, bytes });
        }
        let mut keys: Vec<&[u8]> = self
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key } => key.as_slice(),
            })
            .collect();
        keys.sort_unstable();
        if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(StoreError::Backend(format!(
                "a transaction writes {:?} twice",
                String::from_utf8_lossy(pair[0])
            )));
        }
        Ok(())
    }
}

/// One key's change in a batch: its new value, or none once deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: Vec<u8>,
    /// The value it has now; `None` if it was deleted.
    pub value: Option<Vec<u8>>,
}

/// What one transaction changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The transaction's revision, which every change in it carries.
    pub revision: Revision,
    /// Its changes, in the order of its operations.
    pub changes: Vec<Change>,
}

/// Every change after a revision, as it happens.
pub type ChangeFeed = Pin<Box<dyn Stream<Item = Result<Batch, StoreError>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A compare did not hold: someone changed what the caller read.
    #[error("the records changed while the change was prepared")]
    Conflict,
    /// The transaction is over etcd's limits.
    #[error(
        "a transaction of {compares} compares, {ops} operations and {bytes} bytes is over the limits of {MAX_TXN_OPS} and {MAX_TXN_BYTES} bytes"
    )]
    TooLarge {
        /// Its compares.
        compares: usize,
        /// Its operations.
        ops: usize,
        /// Its bytes.
        bytes: usize,
    },
    /// The history asked for is no longer kept.
    #[error("the change history before revision {oldest} is no longer kept")]
    Compacted {
        /// The oldest revision a feed can start after.
        oldest: Revision,
    },
    /// The storage itself failed.
    #[error("storage failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// A failure of the storage underneath.
    pub fn backend(err: impl std::fmt::Display) -> Self {
        Self::Backend(err.to_string())
    }
}

/// The registry's storage. See the module documentation for the contract.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// One key, with the revision that last changed it.
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// Every key starting with `prefix`, in key order, all as of the
    /// returned revision.
    async fn range(&self, prefix: &[u8]) -> Result<(Vec<Entry>, Revision), StoreError>;

    /// Applies `txn` if every compare holds; returns the revision it was
    /// applied at (the current one, if it changed nothing). Durable once
    /// this returns.
    async fn commit(&self, txn: &Txn) -> Result<Revision, StoreError>;

    /// Every batch after `after`, those already committed first, then each
    /// new one as it is committed.
    async fn watch(&self, after: Revision) -> Result<ChangeFeed, StoreError>;

    /// The newest revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Whether other processes write to the store too (a feed can then
    /// fall behind them; a local store's feed is current by construction).
    fn shared(&self) -> bool {
        false
    }
}

/// Applies `ops` to a map of key → (revision, value), returning the batch
/// of what changed at `revision` (deletes of absent keys change nothing).
/// Shared by the implementations that keep their own history.
pub(crate) fn changes_of(ops: &[Op], mut current: impl FnMut(&[u8]) -> bool) -> Vec<Change> {
    let mut changes = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put { key, value } => changes.push(Change {
                key: key.clone(),
                value: Some(value.clone()),
            }),
            Op::Delete { key } => {
                // Absent before this transaction, and not put earlier in it.
                let put_here = changes.iter().any(|c| c.key == *key && c.value.is_some());
                if put_here || current(key) {
                    changes.push(Change {
                        key: key.clone(),
                        value: None,
                    });
                }
            }
        }
    }
    changes
}

/// Encodes a batch's changes for a log: per change, the key's length (u32
/// BE) and bytes, then 0 for a delete or 1, the value's length and bytes.
pub(crate) fn encode_changes(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    for change in changes {
        out.extend_from_slice(&(change.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&change.key);
        match &change.value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    out
}

/// Reads what [`encode_changes`] wrote.
pub(crate) fn decode_changes(mut bytes: &[u8]) -> Result<Vec<Change>, StoreError> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        if bytes.len() < n {
            return Err(StoreError::Backend("a change log entry is cut short".into()));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn length(bytes: &mut &[u8]) -> Result<usize, StoreError> {
        let mut be = [0u8; 4];
        be.copy_from_slice(take(bytes, 4)?);
        Ok(u32::from_be_bytes(be) as usize)
    }
    let mut changes = Vec::new();
    while !bytes.is_empty() {
        let n = length(&mut bytes)?;
        let key = take(&mut bytes, n)?.to_vec();
        let value = match take(&mut bytes, 1)?[0] {
            0 => None,
            _ => {
                let n = length(&mut bytes)?;
                Some(take(&mut bytes, n)?.to_vec())
            }
        };
        changes.push(Change { key, value });
    }
    Ok(changes)
}

/// A feed built on a local history: `read(after)` returns the kept batches
/// after a revision (or `Compacted`), and `newest` says when there are more.
pub(crate) fn local_feed<F>(after: Revision, newest: tokio::sync::watch::Receiver<Revision>, read: F) -> ChangeFeed
where
    F: Fn(Revision) -> Result<Vec<Batch>, StoreError> + Send + Sync + 'static,
{
    struct State<F> {
        after: Revision,
        newest: tokio::sync::watch::Receiver<Revision>,
        read: F,
        ready: std::collections::VecDeque<Batch>,
    }
    let state = State {
        after,
        newest,
        read,
        ready: Default::default(),
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            if let Some(batch) = state.ready.pop_front() {
                state.after = batch.revision;
                return Some((Ok(batch), Some(state)));
            }
            // Marked seen before reading, so a commit in between wakes us.
            state.newest.borrow_and_update();
            match (state.read)(state.after) {
                Ok(batches) if !batches.is_empty() => state.ready.extend(batches),
                Ok(_) => {
                    if state.newest.changed().await.is_err() {
                        // The store is gone: the feed ends.
                        return None;
                    }
                }
                // An error ends the feed after it is seen.
                Err(err) => return Some((Err(err), None)),
            }
        }
    }))
}
