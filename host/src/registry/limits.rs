//! What one account may store: counts past these answer 409, sizes 413.

use std::collections::BTreeMap;

use super::error::{RegistryError, Result};
use super::snapshot::Snapshot;
use crate::names::AccountName;

/// The bounds on one account's records.
#[derive(Debug, Clone)]
pub struct StorageLimits {
    /// Account keys.
    pub max_keys: usize,
    /// Functions.
    pub max_functions: usize,
    /// Versions, over all its functions.
    pub max_versions: usize,
    /// Aliases and cross-account aliases together.
    pub max_aliases: usize,
    /// Bytes of environment variables (names and values) one version or
    /// alias may set.
    pub max_env_bytes: usize,
    /// Bytes of components the account has uploaded, in all.
    pub max_blob_bytes: u64,
    /// The functions' key/value store.
    pub kv: super::kv::KvLimits,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_keys: 20,
            max_functions: 200,
            max_versions: 1000,
            max_aliases: 500,
            max_env_bytes: 64 * 1024,
            max_blob_bytes: 2 << 30,
            kv: super::kv::KvLimits::default(),
        }
    }
}

/// Bytes of names and values in an environment.
pub fn env_bytes(env: &BTreeMap<String, String>) -> usize {
    env.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl StorageLimits {
    /// Refuses an environment over the size limit.
    pub fn check_env(&self, env: &BTreeMap<String, String>) -> Result<()> {
        let bytes = env_bytes(env);
        if bytes > self.max_env_bytes {
            return Err(RegistryError::TooLarge(format!(
                "the environment is {bytes} bytes; at most {} are allowed (--max-env-bytes)",
                self.max_env_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a new alias or cross-account alias past the account's bound.
    pub(crate) fn check_new_alias(&self, snapshot: &Snapshot, account: &AccountName) -> Result<()> {
        count(
            "aliases",
            account,
            snapshot.alias_count(account),
            self.max_aliases,
            "--max-aliases-per-account",
        )
    }
}

/// Refuses when `have` has reached `max`, naming `flag`.
pub(crate) fn count(what: &str, account: &AccountName, have: usize, max: usize, flag: &str) -> Result<()> {
    if have >= max {
        return Err(RegistryError::Conflict(format!(
            "account {account} has {have} {what}, its limit ({flag}); delete some first"
        )));
    }
    Ok(())
}
