//! A map split into shards that are shared between snapshots until written.
//!
//! Cloning one copies the shard handles only; writing a key copies the one
//! shard it falls in. A registry write therefore costs what it changed (one
//! account's shard per map), not the size of the registry, while a read is
//! one extra hash on top of a `HashMap` lookup.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use crate::names::{AccountName, FunctionName};

/// Shards per map: at 30,000 accounts a write copies about 30 entries.
const SHARDS: usize = 1024;

/// Which shard a key lives in. Cheap (it is on every call's path) and the
/// same in every snapshot; an account's entries of the maps keyed by
/// (account, ...) share its shard.
pub trait ShardKey {
    /// Any well-spread number; its remainder picks the shard.
    fn shard_hash(&self) -> u64;
}

/// FNV-1a: a handful of nanoseconds for a name.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ShardKey for AccountName {
    fn shard_hash(&self) -> u64 {
        fnv(self.as_str().as_bytes())
    }
}

impl ShardKey for String {
    fn shard_hash(&self) -> u64 {
        fnv(self.as_bytes())
    }
}

/// A SHA-256 is spread already.
impl ShardKey for [u8; 32] {
    fn shard_hash(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self[..8]);
        u64::from_le_bytes(first)
    }
}

impl ShardKey for (AccountName, FunctionName) {
    fn shard_hash(&self) -> u64 {
        self.0.shard_hash()
    }
}

impl ShardKey for (AccountName, FunctionName, String) {
    fn shard_hash(&self) -> u64 {
        self.0.shard_hash()
    }
}

/// A `HashMap` in copy-on-write shards.
#[derive(Debug)]
pub struct Sharded<K, V> {
    shards: Vec<Arc<HashMap<K, V>>>,
    len: usize,
}

impl<K, V> Clone for Sharded<K, V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
            len: 0,
        }
    }
}

fn shard_of<K: ShardKey>(key: &K) -> usize {
    (key.shard_hash() % SHARDS as u64) as usize
}

impl<K: ShardKey + Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    /// The value at `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[shard_of(key)].get(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|shard| shard.values())
    }

    fn shard_mut(&mut self, key: &K) -> &mut HashMap<K, V> {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// Sets `key`; the old value, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.shard_mut(&key).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; its value, if any.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        if !self.contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value at `key`, to change in place.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.contains_key(key) {
            return None;
        }
        self.shard_mut(key).get_mut(key)
    }

    /// The value at `key`, inserted as the default first if absent.
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        if !self.contains_key(&key) {
            self.len += 1;
        }
        self.shard_mut(&key).entry(key).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_shards_until_one_is_written() {
        let mut a: Sharded<String, u32> = Sharded::default();
        for i in 0..1000 {
            a.insert(i.to_string(), i);
        }
        let mut b = a.clone();
        b.insert("7".into(), 70);
        *b.get_or_default("new".into()) += 1;
        b.remove(&"8".to_string());
        assert_eq!((a.get(&"7".into()), b.get(&"7".into())), (Some(&7), Some(&70)));
        assert_eq!((a.len(), b.len()), (1000, 1000));
        assert!(a.contains_key(&"8".into()) && !b.contains_key(&"8".into()));
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 3, "only the written shards were copied: {shared}");
        assert_eq!(b.iter().count(), b.len());
    }
}
