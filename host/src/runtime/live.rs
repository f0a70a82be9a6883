//! The invocations running now: where each sits in its chain (what its
//! tokens and nested calls are checked against) and its task, so that
//! deleting an account stops what runs for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::tenancy::lineage::Lineage;

/// A running invocation: where it sits in its chain, and its task, so that
/// deleting its account can stop it.
struct Running {
    lineage: Lineage,
    task: Option<tokio::task::AbortHandle>,
}

/// Every running invocation, by id.
#[derive(Default)]
pub struct LiveSet {
    running: Mutex<HashMap<String, Running>>,
}

impl LiveSet {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks invocation `id` live until the guard is dropped.
    pub fn enter(self: &Arc<Self>, id: String, lineage: Lineage) -> LiveGuard {
        self.lock().insert(id.clone(), Running { lineage, task: None });
        LiveGuard { set: self.clone(), id }
    }

    /// Records the task of the running invocation `id`.
    pub fn attach(&self, id: &str, task: tokio::task::AbortHandle) {
        if let Some(running) = self.lock().get_mut(id) {
            running.task = Some(task);
        }
    }

    /// Stops every running invocation of the account with id `account`, as
    /// owner or as caller.
    pub fn stop_account(&self, account: &str) {
        for running in self.lock().values() {
            let lineage = &running.lineage;
            if (&*lineage.owner_id == account || &*lineage.caller_id == account)
                && let Some(task) = &running.task
            {
                task.abort();
            }
        }
    }

    /// Where the running invocation `id` sits in its chain.
    pub fn lineage(&self, id: &str) -> Option<Lineage> {
        self.lock().get(id).map(|running| running.lineage.clone())
    }
}

/// Marks an invocation live until dropped.
pub struct LiveGuard {
    set: Arc<LiveSet>,
    id: String,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}
