//! Where an invocation sits in a chain of nested calls: what a nested call
//! made with an invocation token is checked against.

use std::sync::Arc;
use std::time::Instant;

/// Where an invocation sits in a chain of nested calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// 0 for a call from outside; one more for each nested call.
    pub depth: u8,
    /// The invocation's deadline; nested calls end by it too.
    pub deadline: Instant,
    /// The id of the account the chain acts for (`anonymous` for none):
    /// a nested call checks it is still that account.
    pub caller_id: Arc<str>,
    /// The key (or sub-tenant token issuer) the chain's first call came
    /// with: a nested call checks it is not revoked.
    pub key_id: Arc<str>,
    /// The id of the account whose code holds the token: a nested call
    /// reaches that account's functions only while it is still that
    /// account, never one that took its name after a delete.
    pub owner_id: Arc<str>,
}

/// How many nested calls deep a chain may go.
pub const MAX_NESTING_DEPTH: u8 = 4;
