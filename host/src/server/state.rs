//! What every request shares: the registry, the runtime, the settings and
//! the host-wide bounds, and which routes a listener serves.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::records::VersionRecord;
use crate::runtime::{HostState, Runtime};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::{logs, metrics};

/// Shared by every request.
pub struct AppState {
    /// Accounts, functions and versions.
    pub registry: Arc<Registry>,
    /// The engine.
    pub runtime: Arc<Runtime>,
    /// SHA-256 of the operator key.
    pub operator: [u8; 32],
    /// Settings.
    pub config: ServeConfig,
    /// Signing keys and verified tokens.
    pub tokens: Arc<crate::credentials::tokens::Tokens>,
    /// Concurrency caps per account and sub-tenant.
    pub quotas: crate::tenancy::quota::Quotas,
    /// Counters.
    pub metrics: metrics::Metrics,
    /// The trigger listener's address, once bound: a guest's requests to it
    /// are nested calls.
    pub listening: std::sync::OnceLock<SocketAddr>,
    /// What guests printed, per function.
    pub logs: logs::Logs,
    /// Component uploads in progress, per account.
    pub uploads: Arc<crate::tenancy::inflight::InFlight>,
    /// Uploads whose bodies are being received, host-wide.
    pub upload_slots: tokio::sync::Semaphore,
    /// Uploads being hashed and validated: one at a time, so that checking
    /// tens of MiB never takes more than one core from serving.
    pub upload_checks: tokio::sync::Semaphore,
    /// The cluster this node is one of, if any.
    pub cluster: Option<ClusterNode>,
}

/// What a cluster node keeps of its cluster.
pub struct ClusterNode {
    /// How it reaches the cluster and names itself.
    pub config: crate::cluster::ClusterConfig,
    /// Its etcd connection.
    pub client: etcd_client::Client,
    /// The URL it announced, once it listens.
    pub advertise: std::sync::OnceLock<String>,
    /// The live nodes, refreshed every second.
    pub peers: std::sync::Arc<crate::cluster::members::Directory>,
    /// Where the cluster's reservations are kept, refreshed twice a second.
    pub placement: std::sync::Arc<crate::cluster::placement::View>,
    /// Its entry among the live nodes, once it listens.
    pub membership: std::sync::OnceLock<crate::cluster::members::Membership>,
}

impl AppState {
    /// The pre-instantiated component of a ready version, loading it (from the
    /// code cache, or by compiling) on first use.
    pub async fn prepare_version(&self, version: &VersionRecord) -> Result<ProxyPre<HostState>, ApiError> {
        if let Some(pre) = self.runtime.loaded(&version.sha256) {
            return Ok(pre);
        }
        Ok(self
            .runtime
            .prepare(
                &version.sha256,
                &version.account_id,
                None,
                self.component(&version.sha256),
            )
            .await?
            .pre)
    }

    /// The stored bytes of component `sha256`, read when a compile needs them.
    pub async fn component(&self, sha256: &str) -> Result<bytes::Bytes, ApiError> {
        self.registry
            .blob(sha256)
            .await?
            .ok_or_else(|| ApiError::InvalidComponent(format!("the component {sha256} is no longer stored")))
    }

    /// The id of the account that holds `account` now (empty if none does).
    pub fn account_id(&self, account: &crate::names::AccountName) -> String {
        self.registry
            .snapshot()
            .account_id(account)
            .unwrap_or_default()
            .to_string()
    }
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Trigger, and admin unless a separate admin listener exists.
    Main,
    /// Admin API and open metrics only.
    Admin,
}
