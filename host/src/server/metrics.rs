//! `/metrics` in Prometheus text format.

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

use crate::runtime::Runtime;
use crate::tenancy::quota::Quotas;

/// Labels of an invocation counter. Sub-tenants are never a label: their
/// number is unbounded, and metrics must not grow with it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// The owner account.
    pub account: String,
    /// The function.
    pub function: String,
    /// The HTTP status class answered, e.g. `2xx`.
    pub status: String,
}

/// Labels of an error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The owner account, or `-` when the call never resolved to a function.
    pub account: String,
    /// The function, or `-`.
    pub function: String,
    /// The stable error code.
    pub code: String,
}

/// Labels of the duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// The owner account.
    pub account: String,
    /// The function.
    pub function: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The host's counters.
pub struct Metrics {
    registry: PromRegistry,
    /// Answered invocations by owner, function and status class.
    pub invocations: Family<InvocationLabels, Counter>,
    /// Error answers by owner, function and code.
    pub errors: Family<ErrorLabels, Counter>,
    /// Time to the response head, by owner and function.
    pub durations: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    /// The store revision the registry snapshot has reached.
    pub registry_revision: prometheus_client::metrics::gauge::Gauge,
    /// How long since the snapshot was last known current.
    pub registry_lag: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    /// Every metric, in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Adds a gauge kept elsewhere (e.g. by the logs) under `stratus_{name}`.
    pub fn register_gauge(&mut self, name: &str, help: &str, gauge: prometheus_client::metrics::gauge::Gauge) {
        self.registry.register(name, help, gauge);
    }

    /// Registers every metric, including the runtime's.
    pub fn new(runtime: &Runtime, quotas: &Quotas) -> Self {
        let mut registry = PromRegistry::with_prefix("stratus");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations answered, by owner, function and status class",
            invocations.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Error answers of the trigger, by owner, function and code",
            errors.clone(),
        );
        let durations: Family<FunctionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "invocation_duration_seconds",
            "Time from request to response head, by owner and function",
            durations.clone(),
        );
        let registry_revision = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "registry_revision",
            "The store revision the registry snapshot has reached",
            registry_revision.clone(),
        );
        let registry_lag = prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "registry_lag_seconds",
            "Time since the registry snapshot was last known current with the store (0 on one node)",
            registry_lag.clone(),
        );
        registry.register(
            "code_cache_hits",
            "Compiled components loaded from the on-disk code cache",
            runtime.stats.cache_hits.clone(),
        );
        registry.register(
            "compiles",
            "Components compiled by Cranelift",
            runtime.stats.compiles.clone(),
        );
        registry.register(
            "tokens_minted",
            "Invocation tokens signed at a guest's request",
            runtime.stats.tokens_minted.clone(),
        );
        registry.register(
            "core_waits",
            "Times a call running past a tick waited for a core: held by others, or handed to a call with a better claim",
            runtime.stats.core_waits.clone(),
        );
        registry.register(
            "live_instances",
            "Environments alive now, running or idle",
            runtime.stats.live_instances.clone(),
        );
        registry.register(
            "idle_instances",
            "Warm environments idle now",
            runtime.stats.idle_instances.clone(),
        );
        registry.register(
            "cold_starts",
            "Calls that found no warm or reserved environment of their partition and waited for a new one",
            runtime.stats.cold_starts.clone(),
        );
        registry.register(
            "warm_hits",
            "Calls served by a warm environment of their partition",
            runtime.stats.warm_hits.clone(),
        );
        registry.register(
            "reserved_instances",
            "Reserved environments instantiated and not yet taken by a call",
            runtime.reserved.gauge.clone(),
        );
        registry.register(
            "reserved_hits",
            "Calls served by a reserved environment",
            runtime.reserved.hits.clone(),
        );
        registry.register(
            "queued_calls",
            "Calls that waited for a concurrency cap, by scope",
            quotas.queued.clone(),
        );
        registry.register(
            "quota_rejections",
            "Calls refused with 429 at a concurrency cap, by scope",
            quotas.rejected.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time calls waited at a concurrency cap, by scope",
            quotas.waits.clone(),
        );
        Self {
            registry,
            invocations,
            errors,
            durations,
            registry_revision,
            registry_lag,
        }
    }

    /// Records one answered trigger call.
    pub fn observe(
        &self,
        function: Option<&(String, String)>,
        status: StatusCode,
        code: Option<&str>,
        elapsed: std::time::Duration,
    ) {
        if let Some(code) = code {
            let (account, function) = function.cloned().unwrap_or_else(|| ("-".into(), "-".into()));
            self.errors
                .get_or_create(&ErrorLabels {
                    account,
                    function,
                    code: code.to_string(),
                })
                .inc();
        }
        let Some((account, function)) = function else { return };
        let status = format!("{}xx", status.as_u16() / 100);
        let labels = InvocationLabels {
            account: account.clone(),
            function: function.clone(),
            status,
        };
        self.invocations.get_or_create(&labels).inc();
        let labels = FunctionLabels {
            account: account.clone(),
            function: function.clone(),
        };
        self.durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}
