//! The local snapshot follows the store's change feed: every node's writes,
//! this node's own included, reach readers the same way. A write is
//! acknowledged once it is durable and the snapshot has reached its
//! revision, so whoever wrote reads what it wrote.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;

use super::apply;
use super::error::{RegistryError, Result};
use super::snapshot::Snapshot;
use super::store::{MetaStore, Revision, StoreError};

/// How long a write waits for the snapshot to show it before it answers
/// 503: a feed that far behind means the store is failing.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The snapshot readers see, and the revision it has reached.
pub(crate) struct View {
    snapshot: RwLock<Arc<Snapshot>>,
    applied: tokio::sync::watch::Sender<Revision>,
    /// When the feed last showed the snapshot current: its last batch or
    /// progress report. `None` for a store no one else writes.
    current_at: Option<std::sync::Mutex<std::time::Instant>>,
}

impl View {
    /// A view showing `snapshot`; `shared` when others write to the store.
    pub(crate) fn new(snapshot: Snapshot, shared: bool) -> Self {
        let revision = snapshot.revision();
        Self {
            snapshot: RwLock::new(Arc::new(snapshot)),
            applied: tokio::sync::watch::channel(revision).0,
            current_at: shared.then(|| std::sync::Mutex::new(std::time::Instant::now())),
        }
    }

    /// How long since the feed last showed the snapshot current (zero for a
    /// store no one else writes, whose feed cannot fall behind).
    pub(crate) fn lag(&self) -> Duration {
        self.current_at.as_ref().map_or(Duration::ZERO, |at| {
            at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
        })
    }

    fn mark_current(&self) {
        if let Some(at) = &self.current_at {
            *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
        }
    }

    /// The current snapshot.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, next: Snapshot) {
        let revision = next.revision();
        let next = Arc::new(next);
        match self.snapshot.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.applied.send_replace(revision);
    }

    /// Waits until the snapshot shows `revision`.
    pub(crate) async fn reached(&self, revision: Revision) -> Result<()> {
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(CATCH_UP, applied.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RegistryError::Busy(format!(
                "the registry has not caught up with revision {revision} within {} s; the store may be failing",
                CATCH_UP.as_secs()
            ))),
        }
    }
}

/// Reads everything again: at start, and when the feed's history is gone.
pub(crate) async fn load(store: &dyn MetaStore) -> Result<Snapshot> {
    let (entries, revision) = store.range(b"").await?;
    Ok(apply::build(entries, revision)?)
}

/// Applies the store's changes to `view` for as long as the store lasts.
pub(crate) async fn follow(store: Arc<dyn MetaStore>, view: Arc<View>) {
    loop {
        let after = view.current().revision();
        let mut feed = match store.watch(after).await {
            Ok(feed) => feed,
            Err(err) => {
                recover(&*store, &view, err).await;
                continue;
            }
        };
        while let Some(item) = feed.next().await {
            let batch = match item {
                Ok(batch) => batch,
                Err(err) => {
                    recover(&*store, &view, err).await;
                    break;
                }
            };
            view.mark_current();
            let current = view.current();
            if batch.revision <= current.revision() {
                continue;
            }
            match apply::apply(&current, &batch) {
                Ok(next) => view.swap(next),
                Err(err) => {
                    tracing::error!(%err, revision = batch.revision, "a change could not be applied; reading the registry again");
                    reload(&*store, &view).await;
                    break;
                }
            }
        }
        // The feed ended or failed; a moment before asking for another.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a feed failed: history that is gone means reading everything
/// again; anything else, a pause before the feed is asked for again.
async fn recover(store: &dyn MetaStore, view: &View, err: StoreError) {
    match err {
        StoreError::Compacted { .. } => reload(store, view).await,
        err => {
            tracing::warn!(%err, "the registry's change feed failed; asking again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Reads everything again and shows it; on failure, a pause before the
/// feed is asked for again.
async fn reload(store: &dyn MetaStore, view: &View) {
    match load(store).await {
        Ok(snapshot) => {
            view.swap(snapshot);
            view.mark_current();
        }
        Err(err) => {
            tracing::error!(%err, "reading the registry again failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
