//! The JSON bodies the admin API reads. Each refuses unknown fields, so a
//! misspelt setting is an error rather than a silently ignored default.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{LowerLimits, Overrides, Reuse, Tenancy, Weight};
use crate::names::{AliasName, SubTenantId};

/// The body of `POST /accounts`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Lowercase letters, digits and `-`; `anonymous` is reserved.
    pub name: String,
}

/// The body of `POST /accounts/{account}/sub-tenant-tokens`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueSubTenantToken {
    /// The sub-tenant the token acts for.
    pub sub_tenant: String,
    /// Seconds it lives: default 3600, at most 86400.
    pub ttl_s: Option<u64>,
}

/// The body of `POST …/functions/{function}/versions`: a deploy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The SHA-256 of a component uploaded to this account's blobs.
    pub blob: String,
    /// Callable without credentials.
    #[serde(default)]
    pub public: bool,
    /// Whether calls name a sub-tenant.
    #[serde(default)]
    pub tenancy: Tenancy,
    /// Whether an environment may serve further calls of its partition.
    #[serde(default)]
    pub reuse: Reuse,
    /// Deadline per call (host default if absent; at most the host's maximum).
    pub timeout_ms: Option<u64>,
    /// Linear memory limit (host default if absent).
    pub memory_mb: Option<u32>,
    /// Environment variables the function sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `HOST[:PORT]` the function may call out to.
    #[serde(default)]
    pub allow_outbound: Vec<String>,
    /// Concurrent calls per sub-tenant, in place of the host default.
    pub max_concurrency_per_sub_tenant: Option<u32>,
}

/// The body of `PUT …/aliases/{alias}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAlias {
    /// The version the alias points at.
    pub version: u32,
    /// A second version and the share of calls it gets.
    pub weight: Option<Weight>,
    /// Environment variables added, limits lowered.
    #[serde(default)]
    pub overrides: Overrides,
}

/// The body of `PUT …/grants/{grantee}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGrant {
    /// Only this alias may be called (any version or alias if absent).
    #[schema(value_type = Option<String>)]
    pub alias: Option<AliasName>,
}

/// The body of `PUT …/reservations/{qualifier}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutReservation {
    /// Environments started at once, past the host's instantiation rate.
    pub min: u32,
    /// Environments kept ready as capacity allows (at least `min`).
    pub target: u32,
    /// Bind them to one sub-tenant's partition.
    #[schema(value_type = Option<String>)]
    pub sub_tenant: Option<SubTenantId>,
}

/// The body of `PUT …/cross-aliases/{name}`. Read field by field so that a
/// field that would change the owner's code or config is refused by name.
#[derive(utoipa::ToSchema)]
pub struct PutCrossAlias {
    /// `OWNER/FUNCTION[:QUALIFIER]`, a function the owner granted to this account.
    pub target: String,
    /// Limits, only lower than the owner's.
    pub limits: Option<LowerLimits>,
}
