//! Reserved environments and the host-wide instantiation rate.
//!
//! A reservation keeps environments of one version (through one alias, or
//! none) instantiated but unbound: no caller, no sub-tenant. The first call
//! that takes one binds it to its partition, exactly as a fresh environment
//! would be bound; after that it is an ordinary environment (dropped after a
//! single-use call, kept in the warm pool under its partition otherwise) and
//! the reservation is topped up in the background. Reserved environments hold
//! pool slots like any other, so they come out of the same budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::warm::Env;
use crate::names::SubTenantId;

/// Which calls a reservation's environments serve: those resolving to this
/// version (by id, never by number) through this alias, with this effective
/// configuration (an alias's overrides shape the environment; a change of
/// them makes new ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservedKey {
    /// The version's id.
    pub version: String,
    /// The effective configuration's fingerprint.
    pub config: u64,
    /// The alias, if the reservation is for one.
    pub alias: Option<String>,
}

impl ReservedKey {
    /// The key of calls to `version` (as seen through `alias`).
    pub fn of(version: &crate::registry::records::VersionRecord, alias: Option<&str>) -> Self {
        Self {
            version: version.id.clone(),
            config: super::warm::fingerprint(&version.config),
            alias: alias.map(str::to_string),
        }
    }
}

/// The sizes a reservation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes {
    /// Only this sub-tenant's calls take the environments.
    pub sub_tenant: Option<SubTenantId>,
    /// Kept at all times; instantiated without waiting for the rate limit.
    pub min: u32,
    /// Added while capacity allows.
    pub target: u32,
}

struct Pool {
    sizes: Sizes,
    envs: Vec<Env>,
    /// Being instantiated now, so two top-ups do not overshoot.
    pending: u32,
}

/// Unbound environments by reservation.
pub struct Reserved {
    pools: Mutex<HashMap<ReservedKey, Pool>>,
    /// Whether any reservation exists: without one, calls skip the lock
    /// and the key they would build.
    any: AtomicBool,
    /// Unbound environments now.
    pub gauge: Gauge,
    /// Calls that took one.
    pub hits: Counter,
    /// Wakes the top-up loop after a take.
    pub taken: tokio::sync::Notify,
}

/// What to instantiate for one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// Below `min`: instantiate at once.
    pub urgent: u32,
    /// Between `min` and `target`: as capacity and the rate allow.
    pub optional: u32,
}

impl Reserved {
    /// No reservations yet.
    pub fn new() -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            any: AtomicBool::new(false),
            gauge: Gauge::default(),
            hits: Counter::default(),
            taken: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ReservedKey, Pool>> {
        self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recount(&self, pools: &HashMap<ReservedKey, Pool>) {
        self.gauge.set(pools.values().map(|p| p.envs.len() as i64).sum());
    }

    /// Whether any reservation is kept now.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// An unbound environment for a call of `key` and `sub_tenant`.
    pub fn take(&self, key: &ReservedKey, sub_tenant: Option<&SubTenantId>) -> Option<Env> {
        let env = {
            let mut pools = self.lock();
            let pool = pools.get_mut(key)?;
            if pool.sizes.sub_tenant.is_some() && pool.sizes.sub_tenant.as_ref() != sub_tenant {
                return None;
            }
            let env = pool.envs.pop()?;
            self.recount(&pools);
            env
        };
        self.hits.inc();
        self.taken.notify_one();
        Some(env)
    }

    /// Sets the reservations wanted now. Environments of reservations that
    /// are gone, or past a lowered target, are dropped; calls already holding
    /// one of them are untouched, since a taken environment is no longer here.
    /// Returns what each reservation lacks.
    pub fn set(&self, wanted: &HashMap<ReservedKey, Sizes>) -> HashMap<ReservedKey, Shortfall> {
        let mut dropped = Vec::new();
        let mut lacking = HashMap::new();
        {
            let mut pools = self.lock();
            pools.retain(|key, pool| {
                let keep = wanted.contains_key(key);
                if !keep {
                    dropped.append(&mut pool.envs);
                }
                keep || pool.pending > 0
            });
            for (key, sizes) in wanted {
                let pool = pools.entry(key.clone()).or_insert_with(|| Pool {
                    sizes: sizes.clone(),
                    envs: Vec::new(),
                    pending: 0,
                });
                pool.sizes = sizes.clone();
                let target = sizes.target as usize;
                if pool.envs.len() > target {
                    dropped.extend(pool.envs.drain(target..));
                }
                let have = pool.envs.len() as u32 + pool.pending;
                let shortfall = Shortfall {
                    urgent: sizes.min.saturating_sub(have),
                    optional: sizes.target.saturating_sub(have.max(sizes.min)),
                };
                if shortfall.urgent + shortfall.optional > 0 {
                    lacking.insert(key.clone(), shortfall);
                }
            }
            self.recount(&pools);
            self.any.store(!pools.is_empty(), Ordering::Relaxed);
        }
        // Dropped outside the lock: tearing down a store takes a while.
        drop(dropped);
        lacking
    }

    /// Drops the pools `doomed` picks, with their environments (their
    /// versions were deleted).
    pub fn retire(&self, doomed: impl Fn(&ReservedKey) -> bool) {
        let mut dropped = Vec::new();
        {
            let mut pools = self.lock();
            pools.retain(|key, pool| {
                let doomed = doomed(key);
                if doomed {
                    dropped.append(&mut pool.envs);
                }
                !doomed
            });
            self.recount(&pools);
        }
        drop(dropped);
    }

    /// Marks `n` environments of `key` as being instantiated.
    pub fn begin(&self, key: &ReservedKey, n: u32) {
        if let Some(pool) = self.lock().get_mut(key) {
            pool.pending += n;
        }
    }

    /// Adds an instantiated environment (or, with `None`, records that one
    /// failed); dropped if its reservation went away meanwhile.
    pub fn finish(&self, key: &ReservedKey, env: Option<Env>) {
        let surplus = {
            let mut pools = self.lock();
            let surplus = match pools.get_mut(key) {
                Some(pool) => {
                    pool.pending = pool.pending.saturating_sub(1);
                    match env {
                        Some(env) if (pool.envs.len() as u32) < pool.sizes.target => {
                            pool.envs.push(env);
                            None
                        }
                        other => other,
                    }
                }
                None => env,
            };
            self.recount(&pools);
            surplus
        };
        drop(surplus);
    }

    /// Drops one unbound environment above its reservation's `min`, to free
    /// a slot for a call. False when there is none.
    pub fn shed_optional(&self) -> bool {
        let shed = {
            let mut pools = self.lock();
            let shed = pools
                .values_mut()
                .find(|pool| pool.envs.len() as u32 > pool.sizes.min)
                .and_then(|pool| pool.envs.pop());
            self.recount(&pools);
            shed
        };
        shed.is_some()
    }
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}

/// A host-wide token bucket of instantiations per second; `0` is no limit.
/// Calls that need a fresh environment wait for a token (within the queue
/// wait); a reservation's `min` does not.
pub struct InstantiationRate {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl InstantiationRate {
    /// A bucket refilling at `per_second`, holding at most one second's worth
    /// (and at least one token).
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            state: Mutex::new((per_second.max(1.0), Instant::now())),
        }
    }

    /// Takes a token if one is there.
    pub fn try_take(&self) -> bool {
        self.next_token().is_none()
    }

    /// `None` if a token was taken, else how long until the next one.
    fn next_token(&self) -> Option<Duration> {
        if self.per_second <= 0.0 {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.per_second.max(1.0));
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            None
        } else {
            *state = (tokens, now);
            Some(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }

    /// Takes a token, waiting at most `wait`. False if none came in time.
    pub async fn take(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let Some(until) = self.next_token() else { return true };
            let now = Instant::now();
            if now + until > deadline {
                return false;
            }
            tokio::time::sleep(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InstantiationRate;

    #[test]
    fn the_bucket_refills_at_its_rate() {
        let unlimited = InstantiationRate::new(0.0);
        assert!((0..1000).all(|_| unlimited.try_take()));
        let slow = InstantiationRate::new(0.5);
        assert!(slow.try_take(), "one token to start with");
        assert!(!slow.try_take(), "then one every two seconds");
        let fast = InstantiationRate::new(100.0);
        assert_eq!((0..200).filter(|_| fast.try_take()).count(), 100);
    }
}
