//! `/metrics` in Prometheus text format.

use http::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as PromRegistry;

use super::respond::{self, Body};
use super::{AppState, Role};
use crate::error::ApiError;
use crate::runtime::Runtime;
use crate::tenancy::quota::Quotas;
use crate::tenancy::{self, Principal};

/// Labels of an invocation counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// The owner account.
    pub account: String,
    /// The HTTP status class answered, e.g. `2xx`.
    pub status: String,
}

/// The host's counters.
pub struct Metrics {
    registry: PromRegistry,
    /// Finished invocations by owner and status.
    pub invocations: Family<InvocationLabels, Counter>,
}

impl Metrics {
    /// Registers every metric, including the runtime's.
    pub fn new(runtime: &Runtime, quotas: &Quotas) -> Self {
        let mut registry = PromRegistry::with_prefix("stratus");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations answered, by owner account and status class",
            invocations.clone(),
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
            "warm_hits",
            "Calls served by a warm environment of their partition",
            runtime.stats.warm_hits.clone(),
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
        Self { registry, invocations }
    }

    /// Counts one answered invocation.
    pub fn invoked(&self, account: &str, status: StatusCode) {
        let status = format!("{}xx", status.as_u16() / 100);
        self.invocations
            .get_or_create(&InvocationLabels {
                account: account.to_string(),
                status,
            })
            .inc();
    }
}

/// Serves the metrics; on the main listener they name accounts, so only the
/// operator may read them there.
pub fn handle(state: &AppState, req: &Request<hyper::body::Incoming>, role: Role) -> Response<Body> {
    if role == Role::Main {
        match tenancy::authenticate_admin(req.headers(), &state.registry.snapshot(), &state.operator) {
            Ok(Principal::Operator) => {}
            Ok(Principal::Account { .. }) => {
                return respond::error(&ApiError::Forbidden("metrics need the operator key".into()));
            }
            Err(err) => return respond::error(&err),
        }
    }
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry) {
        return respond::error(&ApiError::internal(err));
    }
    respond::text(
        StatusCode::OK,
        text,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}
