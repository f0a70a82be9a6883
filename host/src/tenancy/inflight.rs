//! Per-account bounds on things in progress: uploads, queued compiles, log
//! followers. Each is counted while its [`Ticket`] lives, so an account past
//! its bound is refused at once (409) instead of taking what others need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::ApiError;

/// In-progress counts by account id, each bounded by `cap`.
#[derive(Debug)]
pub struct InFlight {
    counts: Mutex<HashMap<String, u32>>,
    cap: u32,
    /// What is counted, plural, for refusals ("uploads in progress").
    what: &'static str,
    /// The flag that sets the cap, for refusals.
    flag: &'static str,
}

/// One counted thing; dropping it ends it.
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<InFlight>,
    account: String,
}

impl InFlight {
    /// At most `cap` at once per account.
    pub fn new(cap: u32, what: &'static str, flag: &'static str) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
            cap,
            what,
            flag,
        })
    }

    /// Counts one more for `account` (its id; `name` for the message), or
    /// refuses with 409 when it is at its bound.
    pub fn enter(self: &Arc<Self>, account: &str, name: &str) -> Result<Ticket, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(account.to_string()).or_default();
        if *count >= self.cap {
            return Err(ApiError::Conflict(format!(
                "account {name} has {} {} already, its limit ({}); wait for one to finish",
                self.cap, self.what, self.flag
            )));
        }
        *count += 1;
        Ok(Ticket {
            owner: self.clone(),
            account: account.to_string(),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_has_its_own_bound_and_tickets_give_back() {
        let uploads = InFlight::new(2, "uploads in progress", "--max-uploads-per-account");
        let a1 = uploads.enter("a", "acme");
        let a2 = uploads.enter("a", "acme");
        assert!(a1.is_ok() && a2.is_ok());
        let refused = uploads.enter("a", "acme");
        assert!(matches!(refused, Err(ApiError::Conflict(ref m)) if m.contains("acme")));
        assert!(uploads.enter("b", "globex").is_ok(), "another account is not held up");
        drop(a1);
        assert!(uploads.enter("a", "acme").is_ok());
        drop(a2);
        assert!(uploads.counts.lock().unwrap_or_else(PoisonError::into_inner).is_empty());
    }
}
