//! Which environment a call runs in: an idle one of its own partition, a
//! reserved one bound to it now, or a fresh one in a pool slot (taken at
//! once, by evicting an idle environment, or after a bounded wait), within
//! the host's instantiation rate. Reservations are filled the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::call::CallContext;
use super::engine::Runtime;
use super::state::HostState;
use super::{credentials, reserve, warm};
use crate::error::ApiError;
use crate::registry::kv::Namespace;
use crate::registry::records::VersionRecord;

/// Where a call's environment comes from.
pub(super) enum Source {
    /// An idle environment of the call's partition.
    Warm(warm::Env),
    /// A new one: its slot and its store, to instantiate in the call's task.
    Fresh(tokio::sync::OwnedSemaphorePermit, Store<HostState>),
}

impl Runtime {
    /// The environment for a call of `version` in `partition` (warm
    /// versions reuse one when they can), counted against the slots.
    pub(super) async fn environment(
        &self,
        version: &VersionRecord,
        call: CallContext<'_>,
        partition: Option<&warm::Partition>,
        invocation: &credentials::Invocation,
    ) -> Result<Source, ApiError> {
        if let Some(env) = partition.and_then(|p| self.warm.take(p)) {
            self.stats.warm_hits.inc();
            return Ok(Source::Warm(env));
        }
        if let Some(env) = self.take_reserved(version, call) {
            return Ok(Source::Warm(env));
        }
        if !self.rate.take(self.queue_wait).await {
            return Err(ApiError::Unavailable {
                message: "the host is starting environments as fast as it allows".into(),
                retry_after: 1,
            });
        }
        let slot = self.acquire_slot().await?;
        // Neither warm nor reserved: this call waits for an instantiation.
        self.stats.cold_starts.inc();
        Ok(Source::Fresh(slot, self.new_store(version, call, invocation.clone())))
    }

    /// Takes a pool slot for a new environment: at once if one is free, else
    /// by evicting an idle warm environment, else after a bounded wait.
    async fn acquire_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return Ok(permit);
            }
            if !self.warm.evict_oldest() && !self.reserved.shed_optional() {
                break;
            }
        }
        match tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::Unavailable {
                message: "the host is shutting down".into(),
                retry_after: 1,
            }),
            Err(_) => Err(ApiError::Unavailable {
                message: format!("no free environment within {} ms", self.queue_wait.as_millis()),
                retry_after: 1,
            }),
        }
    }

    /// A reserved environment for this call, bound to its partition.
    fn take_reserved(&self, version: &VersionRecord, call: CallContext<'_>) -> Option<warm::Env> {
        // A cross-account alias may lower limits: its calls never take an
        // environment made for the function's own settings.
        if call.via.is_some() || !self.reserved.any() {
            return None;
        }
        let key = reserve::ReservedKey::of(version, call.alias.map(|a| a.as_str()));
        let mut env = self.reserved.take(&key, call.sub_tenant)?;
        env.store.data_mut().kv.namespace = Namespace::new(&version.account_id, call.caller_id, call.sub_tenant);
        Some(env)
    }

    /// Instantiates environments a reservation lacks: those below `min` at
    /// once (waiting for a slot like a call would, but not for the rate
    /// limit), the rest only while a slot is free and the rate allows.
    pub async fn top_up(
        self: &Arc<Self>,
        key: &reserve::ReservedKey,
        pre: &ProxyPre<HostState>,
        version: &VersionRecord,
        shortfall: reserve::Shortfall,
    ) {
        let mut permits = Vec::new();
        for _ in 0..shortfall.urgent {
            match self.acquire_slot().await {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        for _ in 0..shortfall.optional {
            if !self.rate.try_take() {
                break;
            }
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        self.reserved.begin(key, permits.len() as u32);
        for permit in permits {
            let env = self.instantiate_unbound(pre, version, permit).await;
            if let Err(err) = &env {
                tracing::warn!(error = %err, function = %version.function, "could not fill a reservation");
            }
            self.reserved.finish(key, env.ok());
        }
    }

    /// An environment of `version` bound to no one yet.
    async fn instantiate_unbound(
        &self,
        pre: &ProxyPre<HostState>,
        version: &VersionRecord,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<warm::Env, ApiError> {
        let call = CallContext {
            invocation_id: "",
            caller: "",
            caller_id: "",
            key_id: "",
            sub_tenant: None,
            parent: None,
            alias: None,
            via: None,
        };
        let invocation = credentials::Invocation {
            id: String::new(),
            owner: version.account.to_string(),
            caller: String::new(),
            sub_tenant: None,
            function: version.function.to_string(),
            version: version.number,
            alias: None,
            scopes: Vec::new(),
            expires_at: 0,
        };
        let mut store = self.new_store(version, call, invocation);
        store.data_mut().set_deadline(Instant::now() + Duration::from_secs(10));
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| ApiError::GuestError(format!("instantiation failed: {e:#}")))?;
        Ok(warm::Env::new(store, proxy, permit, self.stats.live_instances.clone()))
    }
}
