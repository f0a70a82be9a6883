//! What a version is configured with, and what aliases and cross-account
//! aliases may change of it: plain data, stored with each record and read
//! from deploy and alias bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The first name in `env` that cannot be an environment variable's (empty,
/// or holding `=` or NUL), if any.
pub fn bad_env_name(env: &BTreeMap<String, String>) -> Option<&str> {
    env.keys()
        .map(String::as_str)
        .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
}

/// Whether a function serves sub-tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tenancy {
    /// Calls with or without a sub-tenant.
    #[default]
    Single,
    /// Calls must name a sub-tenant.
    Multi,
}

/// Whether an environment may serve more than one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Reuse {
    /// A fresh instance per call.
    #[default]
    SingleUse,
    /// An instance may serve further calls of the same partition.
    Warm,
}

/// The configuration fixed into a version at deploy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionConfig {
    /// Callable without credentials.
    pub public: bool,
    /// Sub-tenant requirement.
    pub tenancy: Tenancy,
    /// Environment reuse.
    pub reuse: Reuse,
    /// Hard deadline per invocation.
    pub timeout_ms: u64,
    /// Linear memory limit.
    pub memory_mb: u32,
    /// Environment variables the guest sees.
    pub env: BTreeMap<String, String>,
    /// Outbound `HOST[:PORT]` entries, exact match.
    pub allow_outbound: Vec<String>,
    /// Concurrent calls per sub-tenant, overriding the host default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency_per_sub_tenant: Option<u32>,
}

/// Part of an alias's calls sent to a second version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Weight {
    /// The second version.
    pub version: u32,
    /// The share of calls it gets, 1–99.
    pub percent: u8,
}

/// What an alias changes for the versions it points at: environment
/// variables added or replaced, limits only lowered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overrides {
    /// Variables set on top of the version's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A lower deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A lower memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

impl Overrides {
    /// `config` as seen through these overrides.
    pub fn apply(&self, config: &VersionConfig) -> VersionConfig {
        let mut config = config.clone();
        config.env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(timeout) = self.timeout_ms {
            config.timeout_ms = config.timeout_ms.min(timeout);
        }
        if let Some(memory) = self.memory_mb {
            config.memory_mb = config.memory_mb.min(memory);
        }
        config
    }
}

/// Limits a cross-account alias sets on another account's code: only lower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LowerLimits {
    /// A lower deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A lower memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

impl LowerLimits {
    /// `config` with these limits, where lower.
    pub fn apply(&self, config: &VersionConfig) -> VersionConfig {
        Overrides {
            env: BTreeMap::new(),
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
        }
        .apply(config)
    }
}
