//! The `stratus:function/credentials` import: the invocation's claims, and
//! tokens minted only when the guest asks for one.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::bindings::stratus::function::credentials::{Host, InvocationClaims};

pub use crate::credentials::mint::{Invocation, Minter};

/// A call's view of its own invocation.
pub struct CredentialsAccess {
    /// The current invocation; replaced at the start of every call.
    pub invocation: Invocation,
    pub(crate) minter: Arc<dyn Minter>,
    pub(crate) minted: Counter,
}

impl Host for CredentialsAccess {
    async fn claims(&mut self) -> InvocationClaims {
        let i = &self.invocation;
        InvocationClaims {
            invocation_id: i.id.clone(),
            owner: i.owner.clone(),
            caller: i.caller.clone(),
            sub_tenant: i.sub_tenant.clone(),
            function: i.function.clone(),
            version: i.version,
            alias: i.alias.clone(),
            scopes: i.scopes.clone(),
            expires_at: i.expires_at,
        }
    }

    async fn token(&mut self) -> wasmtime::Result<String> {
        self.minted.inc();
        self.minter
            .mint(&self.invocation, None)
            .await
            .map_err(|e| wasmtime::format_err!("minting a token failed: {e:#}"))
    }

    async fn token_for(&mut self, audience: String) -> wasmtime::Result<String> {
        self.minted.inc();
        self.minter
            .mint(&self.invocation, Some(&audience))
            .await
            .map_err(|e| wasmtime::format_err!("minting a token failed: {e:#}"))
    }
}
