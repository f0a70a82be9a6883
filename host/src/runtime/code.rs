//! Compiled components: loaded once per component and engine, from the
//! code cache or by a compile that waits its account's turn for the one
//! compile slot; unloaded when no version uses them.

use std::sync::Arc;
use std::time::Instant;

use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::compile;
use super::engine::Runtime;
use super::state::HostState;
use crate::error::ApiError;

/// What a compile produced.
pub struct Compiled {
    /// Ready to instantiate.
    pub pre: ProxyPre<HostState>,
}

impl Runtime {
    /// The pre-instantiated component for `sha256`, if already loaded.
    pub fn loaded(&self, sha256: &str) -> Option<ProxyPre<HostState>> {
        let map = match self.loaded.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(sha256).cloned()
    }

    /// Loads `sha256` from the disk cache, or compiles it and caches it.
    /// The compile is `account`'s (its id): it waits in that account's line
    /// for the one compile slot, and only then are its bytes read, by
    /// awaiting `bytes`. A deploy passes its place in the account's bound of queued
    /// compiles ([`Runtime::enqueue_compile`]).
    pub async fn prepare<B>(
        self: &Arc<Self>,
        sha256: &str,
        account: &str,
        queued: Option<compile::Ticket>,
        bytes: impl Future<Output = Result<B, ApiError>>,
    ) -> Result<Compiled, ApiError>
    where
        B: AsRef<[u8]>,
    {
        if let Some(pre) = self.loaded(sha256) {
            return Ok(Compiled { pre });
        }
        let started = Instant::now();
        let path = self.code_cache.artifact_path(sha256);
        let mut bytes = Some(bytes);
        let mut queued = queued;
        // A second round only when a cached artifact turned out unusable.
        let mut shared = self.shared_code.get().cloned();
        let mut republish = None;
        for _ in 0..2 {
            let mut compiled_now = false;
            // Another node of the cluster may have compiled it already.
            if !self.code_cache.contains(sha256)
                && let Some(shared) = &shared
            {
                shared.fetch(sha256, &path).await;
            }
            if !self.code_cache.contains(sha256) {
                // One node of the cluster compiles; the others wait for it
                // and fetch what it published.
                let _lock = match &shared {
                    Some(shared) => shared.lock(sha256).await,
                    None => None,
                };
                if !self.code_cache.contains(sha256)
                    && let Some(shared) = &shared
                {
                    shared.fetch(sha256, &path).await;
                }
                if !self.code_cache.contains(sha256) {
                    let _turn = self.compiler.turn(account, queued.take()).await?;
                    // Another compile of the same bytes may have finished meanwhile.
                    if !self.code_cache.contains(sha256) {
                        let fetch = bytes.take().ok_or_else(|| {
                            ApiError::internal(anyhow::anyhow!("a fresh artifact of {sha256} is unusable"))
                        })?;
                        let bytes = fetch.await?;
                        self.compiler.compile(bytes.as_ref(), &path).await?;
                        self.stats.compiles.inc();
                        compiled_now = true;
                        if let Some(shared) = shared.as_ref().or(republish.as_ref()) {
                            shared.publish(sha256, &path).await;
                        }
                    }
                }
            }
            let this = self.clone();
            let sha = sha256.to_string();
            let loaded = tokio::task::spawn_blocking(move || this.load_blocking(&sha, started, !compiled_now))
                .await
                .map_err(ApiError::internal)??;
            let Some(compiled) = loaded else {
                // Unusable (truncated, or from another build): compile again,
                // without fetching, and publish it in place of the bad one.
                self.code_cache.discard(sha256);
                republish = shared.take();
                continue;
            };
            let mut map = match self.loaded.write() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.insert(sha256.to_string(), compiled.pre.clone());
            return Ok(compiled);
        }
        Err(ApiError::internal(anyhow::anyhow!(
            "the compiled component {} could not be loaded",
            path.display()
        )))
    }

    /// Loads a compiled artifact from the cache and pre-instantiates it.
    /// `None` when the artifact is unusable.
    fn load_blocking(&self, sha256: &str, started: Instant, cache_hit: bool) -> Result<Option<Compiled>, ApiError> {
        let Some(component) = self.code_cache.load(&self.engine, sha256) else {
            return Ok(None);
        };
        if cache_hit {
            self.stats.cache_hits.inc();
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ApiError::InvalidComponent(format!("the component cannot be linked: {e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| {
            ApiError::InvalidComponent(format!(
                "the component does not export wasi:http/incoming-handler: {e:#}"
            ))
        })?;
        let compile_ms = started.elapsed().as_millis() as u64;
        tracing::info!(sha256, compile_ms, cache_hit, "component ready");
        Ok(Some(Compiled { pre }))
    }

    /// Unloads the compiled code of `shas` that `in_use` says no version
    /// uses any more, and removes its cached artifact: code of deleted
    /// versions does not stay in memory or on disk.
    pub fn evict_code(&self, shas: &[String], in_use: impl Fn(&str) -> bool) {
        let unused: Vec<&String> = shas.iter().filter(|sha| !in_use(sha)).collect();
        if unused.is_empty() {
            return;
        }
        {
            let mut map = match self.loaded.write() {
                Ok(map) => map,
                Err(poisoned) => poisoned.into_inner(),
            };
            for sha in &unused {
                map.remove(sha.as_str());
            }
        }
        for sha in &unused {
            self.code_cache.forget(sha);
        }
        if let Some(shared) = self.shared_code.get().cloned() {
            let shas: Vec<String> = unused.into_iter().cloned().collect();
            tokio::spawn(async move {
                for sha in shas {
                    shared.forget(&sha).await;
                }
            });
        }
    }

    /// A deploy's place in `account`'s bound of queued compiles (id, and
    /// name for the refusal): 409 when the account is at it.
    pub fn enqueue_compile(&self, account: &str, name: &str) -> Result<compile::Ticket, ApiError> {
        self.compiler.enqueue(account, name)
    }
}
