//! A [`MetaStore`] in memory, for unit tests: the same contract as the
//! durable ones, limits included, with a history short enough to compact.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Batch, ChangeFeed, Entry, MetaStore, Op, Revision, StoreError, Txn, changes_of, local_feed};

#[derive(Default)]
struct State {
    revision: Revision,
    data: BTreeMap<Vec<u8>, (Revision, Vec<u8>)>,
    history: VecDeque<Batch>,
}

/// An in-memory store keeping the last `history` batches.
#[derive(Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
    newest: tokio::sync::watch::Sender<Revision>,
    history: usize,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::with_history(10_000)
    }
}

impl MemStore {
    /// An empty store that keeps the last `history` batches for feeds.
    pub fn with_history(history: usize) -> Self {
        Self {
            state: Arc::default(),
            newest: tokio::sync::watch::channel(0).0,
            history: history.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl MetaStore for MemStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        Ok(self.lock().data.get(key).map(|(revision, value)| Entry {
            key: key.to_vec(),
            value: value.clone(),
            mod_revision: *revision,
        }))
    }

    async fn range(&self, prefix: &[u8]) -> Result<(Vec<Entry>, Revision), StoreError> {
        let state = self.lock();
        let entries = state
            .data
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (revision, value))| Entry {
                key: key.clone(),
                value: value.clone(),
                mod_revision: *revision,
            })
            .collect();
        Ok((entries, state.revision))
    }

    async fn commit(&self, txn: &Txn) -> Result<Revision, StoreError> {
        txn.check_limits()?;
        let mut state = self.lock();
        for compare in &txn.compares {
            let have = state.data.get(&compare.key).map_or(0, |(revision, _)| *revision);
            if have != compare.mod_revision {
                return Err(StoreError::Conflict);
            }
        }
        let changes = changes_of(&txn.ops, |key| state.data.contains_key(key));
        if changes.is_empty() {
            return Ok(state.revision);
        }
        let revision = state.revision + 1;
        for op in &txn.ops {
            match op {
                Op::Put { key, value } => {
                    state.data.insert(key.clone(), (revision, value.clone()));
                }
                Op::Delete { key } => {
                    state.data.remove(key);
                }
            }
        }
        state.revision = revision;
        state.history.push_back(Batch { revision, changes });
        while state.history.len() > self.history {
            state.history.pop_front();
        }
        drop(state);
        self.newest.send_replace(revision);
        Ok(revision)
    }

    async fn watch(&self, after: Revision) -> Result<ChangeFeed, StoreError> {
        let state = self.state.clone();
        let read = move |after: Revision| {
            let state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let oldest = state.history.front().map_or(state.revision, |b| b.revision - 1);
            if after < oldest {
                return Err(StoreError::Compacted { oldest });
            }
            Ok(state.history.iter().filter(|b| b.revision > after).cloned().collect())
        };
        // Refused at once, as etcd refuses a watch from a compacted revision.
        read(after)?;
        Ok(local_feed(after, self.newest.subscribe(), read))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_in_memory_store_keeps_the_contract() {
        super::super::contract::run(|history| async move { super::MemStore::with_history(history) }).await;
    }
}
