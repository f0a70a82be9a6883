//! Concurrency caps per caller account and per sub-tenant.
//!
//! Each cap is a FIFO semaphore of its own, taken in the order sub-tenant →
//! account before the call asks the runtime for an environment. A sub-tenant
//! past its cap therefore queues only behind itself: it holds at most its cap
//! of the account's permits, and the other sub-tenants' calls pass it by.
//! Waiting is bounded in time and in the number of waiters, so a flood turns
//! into 429s, not memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::names::SubTenantId;

/// Default caps and waits.
#[derive(Debug, Clone)]
pub struct QuotaLimits {
    /// Calls one caller account may run at once.
    pub per_account: u32,
    /// Calls one sub-tenant (of one caller account) may run at once.
    pub per_sub_tenant: u32,
    /// How long a call over a cap waits for its turn before 429.
    pub queue_wait: Duration,
    /// Calls that may wait per cap, as a multiple of the cap.
    pub queue_factor: u32,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            per_account: 128,
            per_sub_tenant: 32,
            queue_wait: Duration::from_secs(2),
            queue_factor: 4,
        }
    }
}

/// Labels of the queue counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `account` or `sub_tenant`.
    pub scope: &'static str,
}

struct Bucket {
    semaphore: Arc<Semaphore>,
    cap: u32,
    waiting: AtomicUsize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    /// Caller, sub-tenant, and the function when it overrides the cap.
    SubTenant(String, SubTenantId, Option<String>),
}

/// The caps of the whole host.
pub struct Quotas {
    limits: QuotaLimits,
    buckets: Mutex<HashMap<Key, Arc<Bucket>>>,
    /// Calls that had to wait for a cap, by scope.
    pub queued: Family<ScopeLabels, Counter>,
    /// Calls refused with 429, by scope.
    pub rejected: Family<ScopeLabels, Counter>,
    /// How long calls waited at a cap (admitted or not), by scope.
    pub waits: Family<ScopeLabels, Histogram, fn() -> Histogram>,
}

fn wait_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
}

/// The permits a running call holds; dropping it frees them.
pub struct Admission {
    _permits: Vec<OwnedSemaphorePermit>,
}

impl Quotas {
    /// Caps with these defaults.
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
            queued: Family::default(),
            rejected: Family::default(),
            waits: Family::new_with_constructor(wait_histogram),
        }
    }

    fn bucket(&self, key: Key, cap: u32) -> Arc<Bucket> {
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() > 4096 {
            // Forget caps nobody holds or waits on, so a stream of one-off
            // sub-tenants cannot grow this map without bound.
            buckets.retain(|_, b| Arc::strong_count(b) > 1 || b.semaphore.available_permits() < b.cap as usize);
        }
        let bucket = buckets.entry(key).or_insert_with(|| {
            Arc::new(Bucket {
                semaphore: Arc::new(Semaphore::new(cap as usize)),
                cap,
                waiting: AtomicUsize::new(0),
            })
        });
        bucket.clone()
    }

    /// Takes a permit of `bucket`; `what` names the cap in a refusal, and is
    /// only called then, so the common path formats nothing.
    async fn take(
        &self,
        bucket: &Bucket,
        scope: &'static str,
        what: impl Fn() -> String,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = bucket.semaphore.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let labels = ScopeLabels { scope };
        let refuse = |why: String| {
            self.rejected.get_or_create(&labels).inc();
            ApiError::QuotaExceeded {
                message: why,
                retry_after: 1,
            }
        };
        let max_waiting = (bucket.cap * self.limits.queue_factor) as usize;
        if bucket.waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            bucket.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(refuse(format!(
                "{} is at its limit of {} concurrent calls, with a full queue",
                what(),
                bucket.cap
            )));
        }
        self.queued.get_or_create(&labels).inc();
        let started = std::time::Instant::now();
        let waited = tokio::time::timeout(self.limits.queue_wait, bucket.semaphore.clone().acquire_owned()).await;
        bucket.waiting.fetch_sub(1, Ordering::AcqRel);
        self.waits
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::Unavailable {
                message: "the host is shutting down".into(),
                retry_after: 1,
            }),
            Err(_) => Err(refuse(format!(
                "{} is at its limit of {} concurrent calls; waited {} ms",
                what(),
                bucket.cap,
                self.limits.queue_wait.as_millis()
            ))),
        }
    }

    /// Admits a call of `caller` (an id; `name` says who it is in a
    /// refusal) and `sub_tenant`, waiting a bounded time in its own queues.
    /// A function that sets its own per-sub-tenant cap (`function_cap`: the
    /// function's id and cap) gets a queue of its own.
    pub async fn admit(
        &self,
        caller: &str,
        name: &str,
        sub_tenant: Option<&SubTenantId>,
        function_cap: Option<(String, u32)>,
    ) -> Result<Admission, ApiError> {
        let mut permits = Vec::with_capacity(2);
        if let Some(sub) = sub_tenant {
            let (function, cap) = match function_cap {
                Some((function, cap)) => (Some(function), cap),
                None => (None, self.limits.per_sub_tenant),
            };
            let bucket = self.bucket(Key::SubTenant(caller.to_string(), sub.clone(), function), cap.max(1));
            permits.push(self.take(&bucket, "sub_tenant", || format!("sub-tenant {sub}")).await?);
        }
        let bucket = self.bucket(Key::Account(caller.to_string()), self.limits.per_account.max(1));
        permits.push(self.take(&bucket, "account", || name.to_string()).await?);
        Ok(Admission { _permits: permits })
    }
}
