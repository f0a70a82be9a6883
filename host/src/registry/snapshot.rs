//! The in-memory picture of the registry that the hot path reads.
//!
//! It is rebuilt by the single writer after each acknowledged change and
//! swapped in whole, so a reader always sees one consistent state and never
//! touches disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::names::{AccountName, FunctionName, Qualifier};

use super::records::{AccountRecord, FunctionRecord, KeyRecord, VersionRecord, VersionState};

/// A function with its versions.
#[derive(Debug, Clone)]
pub struct FunctionEntry {
    /// The function record.
    pub record: FunctionRecord,
    /// Every version, by number.
    pub versions: BTreeMap<u32, Arc<VersionRecord>>,
    /// The newest version that compiled.
    pub latest: Option<u32>,
    /// Whether any ready version is public, i.e. whether callers outside the
    /// account may learn that the function exists. Each call still checks
    /// that the version it resolves to is public.
    pub public: bool,
}

/// A consistent view of accounts, keys and functions.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Accounts by name.
    pub accounts: HashMap<AccountName, AccountRecord>,
    /// Account keys by SHA-256 of the key text.
    pub keys: HashMap<[u8; 32], KeyRecord>,
    /// Live key ids by account, so tokens issued with a key die with it.
    pub key_ids: HashMap<AccountName, HashSet<String>>,
    /// Functions by owner, then by name (in order, for listings).
    pub functions: HashMap<AccountName, BTreeMap<FunctionName, FunctionEntry>>,
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such account or function.
    NoFunction,
    /// The function exists but not the version or alias.
    NoQualifier,
}

impl Snapshot {
    /// The function `account/name`, if it exists.
    pub fn function(&self, account: &AccountName, name: &FunctionName) -> Option<&FunctionEntry> {
        self.functions.get(account)?.get(name)
    }

    /// Every function of `account`, by name.
    pub fn functions_of(&self, account: &AccountName) -> impl Iterator<Item = &FunctionEntry> {
        self.functions.get(account).into_iter().flat_map(BTreeMap::values)
    }

    /// Every function of every account.
    pub fn all_functions(&self) -> impl Iterator<Item = &FunctionEntry> {
        self.functions.values().flat_map(BTreeMap::values)
    }

    /// Whether key `id` of `account` still exists.
    pub fn has_key(&self, account: &AccountName, id: &str) -> bool {
        self.key_ids.get(account).is_some_and(|ids| ids.contains(id))
    }

    /// Resolves `account/name[:qualifier]` to an invocable version.
    pub fn resolve(
        &self,
        account: &AccountName,
        name: &FunctionName,
        qualifier: &Qualifier,
    ) -> Result<&Arc<VersionRecord>, ResolveError> {
        let entry = self.function(account, name).ok_or(ResolveError::NoFunction)?;
        let number = match qualifier {
            Qualifier::Latest => entry.latest.ok_or(ResolveError::NoQualifier)?,
            Qualifier::Version(n) => *n,
            // Aliases arrive with their own registry trees.
            Qualifier::Alias(_) => return Err(ResolveError::NoQualifier),
        };
        entry
            .versions
            .get(&number)
            .filter(|v| v.state == VersionState::Ready)
            .ok_or(ResolveError::NoQualifier)
    }

    /// Whether callers outside the account may learn that `account/name` exists.
    pub fn is_public(&self, account: &AccountName, name: &FunctionName) -> bool {
        self.function(account, name).is_some_and(|f| f.public)
    }
}
