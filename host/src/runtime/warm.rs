//! Environments and the warm pool.
//!
//! An [`Env`] is a store with its instance and the admission permit of its
//! pool slot. Single-use environments are dropped after one call; warm ones go
//! back to the pool under their [`Partition`] and are only ever taken out for
//! a call of that same partition.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::state::HostState;
use crate::names::SubTenantId;
use crate::registry::records::VersionConfig;

/// A digest of the configuration an environment was made with (env,
/// limits, outbound hosts), after alias overrides and cross-account limits.
/// Only the version's owner chooses that configuration, so the hash needs
/// no secret key: a collision could only hand an owner its own environment.
pub fn fingerprint(config: &VersionConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    config.hash(&mut hasher);
    hasher.finish()
}

/// Who an environment belongs to, from its first call on: one version of a
/// function, one caller, one sub-tenant (or none).
///
/// Version and caller are immutable ids, never names or numbers, which come
/// back after a delete: an environment can only ever serve the code, the
/// configuration and the caller it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partition {
    /// The version's id.
    pub version: String,
    /// The effective configuration (see [`fingerprint`]): an alias whose
    /// env or limits change gets fresh environments.
    pub config: u64,
    /// The caller's account id, or `anonymous`.
    pub caller: String,
    /// The sub-tenant.
    pub sub_tenant: Option<SubTenantId>,
    /// The alias called through: its environment overrides make its
    /// environments differ from the version's own.
    pub alias: Option<String>,
    /// The cross-account alias called through, `account/name`.
    pub via: Option<String>,
}

/// A live environment.
pub struct Env {
    /// The store with the guest's state.
    pub store: Store<HostState>,
    /// The instance's exports.
    pub proxy: Proxy,
    /// Its slot in the pool's budget; released when the environment drops.
    _permit: OwnedSemaphorePermit,
    live: Gauge,
}

impl Env {
    /// Wraps a freshly instantiated environment.
    pub fn new(store: Store<HostState>, proxy: Proxy, permit: OwnedSemaphorePermit, live: Gauge) -> Self {
        live.inc();
        Self {
            store,
            proxy,
            _permit: permit,
            live,
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.live.dec();
    }
}

/// Limits of the warm pool.
#[derive(Debug, Clone)]
pub struct WarmLimits {
    /// How long an idle environment is kept.
    pub idle_ttl: Duration,
    /// Idle environments kept per partition.
    pub max_idle_per_partition: usize,
    /// Idle environments kept host-wide; past it the least recently used goes.
    pub max_idle_total: usize,
}

struct Idle<E> {
    env: E,
    /// Identifies this idle period in `order`.
    seq: u64,
}

struct Inner<E> {
    by_partition: HashMap<Partition, Vec<Idle<E>>>,
    /// Idle periods oldest first. Entries whose environment was taken again
    /// stay behind as stale entries and are skipped.
    order: VecDeque<(Partition, u64, Instant)>,
    next_seq: u64,
    total: usize,
}

impl<E> Default for Inner<E> {
    fn default() -> Self {
        Self {
            by_partition: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            total: 0,
        }
    }
}

impl<E> Inner<E> {
    fn is_idle(&self, partition: &Partition, seq: u64) -> bool {
        self.by_partition
            .get(partition)
            .is_some_and(|list| list.iter().any(|idle| idle.seq == seq))
    }
}

/// Idle warm environments, by partition. Generic over what it keeps only
/// so that its decisions can be tested without instantiating anything.
pub struct WarmPool<E = Env> {
    inner: Mutex<Inner<E>>,
    limits: WarmLimits,
    idle_gauge: Gauge,
}

impl<E> WarmPool<E> {
    /// An empty pool.
    pub fn new(limits: WarmLimits, idle_gauge: Gauge) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            idle_gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<E>> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// An idle environment of exactly this partition, newest first.
    pub fn take(&self, partition: &Partition) -> Option<E> {
        let mut inner = self.lock();
        let list = inner.by_partition.get_mut(partition)?;
        let idle = list.pop()?;
        if list.is_empty() {
            inner.by_partition.remove(partition);
        }
        inner.total -= 1;
        // Its entry in `order` goes stale; `evict_oldest` skips stale entries.
        self.idle_gauge.set(inner.total as i64);
        Some(idle.env)
    }

    /// Keeps an environment for later calls of its partition; drops it (and
    /// frees its slot) when the partition or the host is at its idle limit.
    pub fn put(&self, partition: Partition, env: E) {
        let evicted;
        {
            let mut inner = self.lock();
            let full = inner
                .by_partition
                .get(&partition)
                .is_some_and(|l| l.len() >= self.limits.max_idle_per_partition);
            if full {
                drop(inner);
                return;
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner
                .by_partition
                .entry(partition.clone())
                .or_default()
                .push(Idle { env, seq });
            inner.order.push_back((partition, seq, Instant::now()));
            inner.total += 1;
            evicted = if inner.total > self.limits.max_idle_total {
                Self::pop_oldest(&mut inner)
            } else {
                None
            };
            self.idle_gauge.set(inner.total as i64);
        }
        // Dropped outside the lock: tearing down a store takes a while.
        drop(evicted);
    }

    fn pop_oldest(inner: &mut Inner<E>) -> Option<E> {
        while let Some((partition, seq, _)) = inner.order.pop_front() {
            let Some(list) = inner.by_partition.get_mut(&partition) else {
                continue;
            };
            let Some(pos) = list.iter().position(|idle| idle.seq == seq) else {
                continue;
            };
            let idle = list.remove(pos);
            if list.is_empty() {
                inner.by_partition.remove(&partition);
            }
            inner.total -= 1;
            return Some(idle.env);
        }
        None
    }

    /// Drops the least recently used idle environment, freeing its slot for a
    /// call that needs a fresh one. False when nothing was idle.
    pub fn evict_oldest(&self) -> bool {
        let evicted = {
            let mut inner = self.lock();
            let evicted = Self::pop_oldest(&mut inner);
            self.idle_gauge.set(inner.total as i64);
            evicted
        };
        evicted.is_some()
    }

    /// Drops environments idle for longer than the TTL.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut inner = self.lock();
            while let Some((partition, seq, since)) = inner.order.front().cloned() {
                if !inner.is_idle(&partition, seq) {
                    inner.order.pop_front();
                    continue;
                }
                if now.duration_since(since) < self.limits.idle_ttl {
                    break;
                }
                // The front entry is live, so this pops exactly it.
                if let Some(env) = Self::pop_oldest(&mut inner) {
                    expired.push(env);
                }
            }
            self.idle_gauge.set(inner.total as i64);
        }
        drop(expired);
    }

    /// Drops every idle environment whose partition `doomed` picks: those of
    /// a deleted version, or of a deleted caller.
    pub fn retire(&self, doomed: impl Fn(&Partition) -> bool) {
        let mut retired = Vec::new();
        {
            let mut inner = self.lock();
            let keys: Vec<Partition> = inner.by_partition.keys().filter(|p| doomed(p)).cloned().collect();
            for key in keys {
                if let Some(list) = inner.by_partition.remove(&key) {
                    inner.total -= list.len();
                    retired.extend(list.into_iter().map(|idle| idle.env));
                }
            }
            // Their entries in `order` go stale and are skipped.
            self.idle_gauge.set(inner.total as i64);
        }
        drop(retired);
    }

    /// Idle environments now.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Stands for an environment: counts its drops (a freed slot).
    struct Fake {
        name: &'static str,
        dropped: Arc<AtomicUsize>,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Pool {
        pool: WarmPool<Fake>,
        dropped: Arc<AtomicUsize>,
        gauge: Gauge,
    }

    impl Pool {
        fn new(per_partition: usize, total: usize, ttl: Duration) -> Self {
            let gauge = Gauge::default();
            let limits = WarmLimits {
                idle_ttl: ttl,
                max_idle_per_partition: per_partition,
                max_idle_total: total,
            };
            Self {
                pool: WarmPool::new(limits, gauge.clone()),
                dropped: Arc::default(),
                gauge,
            }
        }

        fn put(&self, partition: &Partition, name: &'static str) {
            let env = Fake {
                name,
                dropped: self.dropped.clone(),
            };
            self.pool.put(partition.clone(), env);
        }

        fn take(&self, partition: &Partition) -> Option<&'static str> {
            self.pool.take(partition).map(|env| env.name)
        }

        fn dropped(&self) -> usize {
            self.dropped.load(Ordering::SeqCst)
        }
    }

    fn partition(caller: &str, sub_tenant: Option<&str>) -> Partition {
        Partition {
            version: "v1".into(),
            config: 7,
            caller: caller.into(),
            sub_tenant: sub_tenant.map(|s| SubTenantId::parse(s).unwrap_or_else(|e| panic!("{e}"))),
            alias: None,
            via: None,
        }
    }

    #[test]
    fn an_environment_serves_only_its_own_partition() {
        let pool = Pool::new(4, 100, Duration::from_secs(60));
        let alice = partition("acme-id", Some("alice"));
        pool.put(&alice, "alice's");
        let others = [
            partition("acme-id", Some("bob")),
            partition("acme-id", None),
            partition("globex-id", Some("alice")),
            Partition {
                version: "v2".into(),
                ..alice.clone()
            },
            Partition {
                config: 8,
                ..alice.clone()
            },
            Partition {
                alias: Some("prod".into()),
                ..alice.clone()
            },
            Partition {
                via: Some("globex/theirs".into()),
                ..alice.clone()
            },
        ];
        for other in &others {
            assert_eq!(pool.take(other), None, "{other:?} got alice's environment");
        }
        assert_eq!(pool.take(&alice), Some("alice's"));
        assert_eq!(pool.take(&alice), None, "an environment is taken once");
    }

    #[test]
    fn the_newest_idle_environment_is_taken_first_and_limits_drop_the_rest() {
        let pool = Pool::new(2, 3, Duration::from_secs(60));
        let (a, b) = (partition("a", None), partition("b", None));
        pool.put(&a, "a1");
        pool.put(&a, "a2");
        pool.put(&a, "a3");
        assert_eq!(
            pool.dropped(),
            1,
            "past the per-partition limit, the environment is dropped"
        );
        pool.put(&b, "b1");
        pool.put(&b, "b2");
        // Past the host-wide limit, the least recently idle goes (a1).
        assert_eq!(pool.dropped(), 2);
        assert_eq!(pool.gauge.get(), 3);
        assert_eq!(pool.take(&a), Some("a2"));
        assert_eq!(pool.take(&a), None);
        assert_eq!(pool.take(&b), Some("b2"));
        assert_eq!(pool.gauge.get(), 1);
    }

    #[test]
    fn eviction_takes_the_least_recently_idle_and_skips_those_taken_since() {
        let pool = Pool::new(4, 100, Duration::from_secs(60));
        let (a, b) = (partition("a", None), partition("b", None));
        pool.put(&a, "a1");
        pool.put(&b, "b1");
        pool.put(&a, "a2");
        // a2 is taken and put back: it is now the most recent.
        assert_eq!(pool.take(&a), Some("a2"));
        pool.put(&a, "a2");
        assert!(pool.pool.evict_oldest());
        assert_eq!(pool.take(&a), Some("a2"), "a1 was the oldest");
        assert!(pool.pool.evict_oldest());
        assert_eq!(pool.take(&b), None, "then b1");
        assert!(!pool.pool.evict_oldest(), "nothing left to evict");
        // Two evicted, and the two taken (each dropped by `take` here).
        assert_eq!(pool.dropped(), 4);
    }

    #[test]
    fn idle_environments_expire_after_their_ttl_and_retire_with_their_version_or_caller() {
        let pool = Pool::new(4, 100, Duration::from_millis(50));
        let (a, b) = (partition("a", None), partition("b", None));
        pool.put(&a, "old");
        std::thread::sleep(Duration::from_millis(80));
        pool.put(&b, "new");
        pool.pool.expire();
        assert_eq!(pool.take(&a), None, "idle past the TTL");
        assert_eq!(pool.pool.idle(), 1);
        pool.put(&a, "again");
        pool.pool.retire(|p| p.caller == "b");
        assert_eq!(pool.take(&b), None, "retired with its caller");
        assert_eq!(pool.take(&a), Some("again"));
        assert_eq!(pool.gauge.get(), 0);
    }
}
