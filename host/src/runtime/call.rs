//! Who a call runs for.

use std::time::{Duration, Instant};

use super::credentials::Invocation;
use crate::names::SubTenantId;
use crate::registry::records::VersionRecord;
use crate::tenancy::lineage::Lineage;

/// Who a call runs for, as established by the trigger from authenticated data.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// The invocation's id.
    pub invocation_id: &'a str,
    /// The calling account's name, or `anonymous`.
    pub caller: &'a str,
    /// The calling account's id, or `anonymous`: partitions and KV
    /// namespaces are keyed by it.
    pub caller_id: &'a str,
    /// The caller's key (or token issuer), for nested calls to check.
    pub key_id: &'a str,
    /// The sub-tenant, if the credential named one.
    pub sub_tenant: Option<&'a SubTenantId>,
    /// The invocation this one was called from, for a nested call.
    pub parent: Option<&'a Lineage>,
    /// The alias the call came through.
    pub alias: Option<&'a crate::names::AliasName>,
    /// The cross-account alias the call came through (`account/name`): its
    /// lower limits make its environments differ.
    pub via: Option<&'a str>,
}

/// What a call of a version is: its deadline (its own, or its parent's if
/// sooner), its place in its chain, and what its tokens say.
pub(super) struct Identity {
    /// When it is stopped.
    pub deadline: Instant,
    /// How long it has from now.
    pub timeout: Duration,
    /// Where it sits in its chain.
    pub lineage: Lineage,
    /// What its tokens say.
    pub invocation: Invocation,
}

impl CallContext<'_> {
    /// This call's identity for `version`.
    pub(super) fn identity(&self, version: &VersionRecord) -> Identity {
        let call = self;
        let config = &version.config;
        let started = Instant::now();
        let mut deadline = started + Duration::from_millis(config.timeout_ms);
        if let Some(parent) = &call.parent {
            deadline = deadline.min(parent.deadline);
        }
        let timeout = deadline.saturating_duration_since(started);
        let lineage = Lineage {
            depth: call.parent.as_ref().map_or(0, |parent| parent.depth + 1),
            deadline,
            caller_id: call.caller_id.into(),
            key_id: call.key_id.into(),
            owner_id: version.account_id.as_str().into(),
        };
        let invocation = Invocation {
            id: call.invocation_id.to_string(),
            owner: version.account.to_string(),
            caller: call.caller.to_string(),
            sub_tenant: call.sub_tenant.map(|s| s.to_string()),
            function: version.function.to_string(),
            version: version.number,
            alias: call.alias.map(|a| a.to_string()),
            scopes: vec!["invoke".into(), "kv:rw".into()],
            // The deadline in whole seconds, rounded down: a token never
            // claims to live past its call.
            expires_at: (std::time::SystemTime::now() + timeout)
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        };
        Identity {
            deadline,
            timeout,
            lineage,
            invocation,
        }
    }
}
