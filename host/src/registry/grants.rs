//! Commands on grants and cross-account aliases. A grant lets another
//! account alias a function; a cross-account alias is that alias, a name in
//! the grantee's namespace. Each relies on the other account's state, so
//! its plan compares that account's record too.

use super::aliases::PutMode;
use super::command::{Command, Planned, guard_account, live_account, rely_on_account};
use super::error::{RegistryError, Result};
use super::layout;
use super::limits::StorageLimits;
use super::records::{CrossAliasRecord, GrantRecord, LowerLimits, encode};
use super::snapshot::{Snapshot, grant_covers};
use super::store::Txn;
use crate::names::{AccountName, AliasName, FunctionName, Qualifier};

/// What a cross-account alias points at.
#[derive(Debug, Clone)]
pub struct CrossTarget {
    /// The function's owner.
    pub owner: AccountName,
    /// The function.
    pub function: FunctionName,
    /// A version or alias of it.
    pub qualifier: Qualifier,
}

impl CrossTarget {
    /// Parses `OWNER/FN[:QUALIFIER]`.
    pub fn parse(text: &str) -> Result<Self> {
        let (owner, rest) = text
            .split_once('/')
            .ok_or_else(|| RegistryError::Invalid(format!("target {text:?} is not OWNER/FN[:QUALIFIER]")))?;
        let (function, qualifier) = match rest.split_once(':') {
            Some((function, qualifier)) => (function, Qualifier::parse(qualifier)?),
            None => (rest, Qualifier::Latest),
        };
        Ok(Self {
            owner: AccountName::parse(owner)?,
            function: FunctionName::parse(function)?,
            qualifier,
        })
    }
}

/// Lets `grantee` alias `owner/function` (only `function:alias`, if given);
/// answers the grant and whether it is new.
pub struct PutGrant {
    /// The granting account.
    pub owner: AccountName,
    /// Its function.
    pub function: FunctionName,
    /// The account that may alias it.
    pub grantee: AccountName,
    /// The only alias it may target.
    pub alias: Option<AliasName>,
    /// When, Unix seconds.
    pub at: u64,
}

impl Command for PutGrant {
    type Output = (GrantRecord, bool);

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<Self::Output>> {
        let (owner, function, grantee) = (&self.owner, &self.function, &self.grantee);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, owner)?;
        let entry = snapshot
            .function(owner, function)
            .ok_or_else(|| RegistryError::NotFound(format!("no function {function}")))?;
        if grantee == owner {
            return Err(RegistryError::Invalid(
                "an account needs no grant for its own functions".into(),
            ));
        }
        rely_on_account(&mut txn, snapshot, grantee)?;
        if let Some(alias) = &self.alias
            && !entry.aliases.contains_key(alias)
        {
            return Err(RegistryError::NotFound(format!("{function} has no alias {alias}")));
        }
        let existing = snapshot.grant(owner, function, grantee);
        let record = GrantRecord {
            owner: owner.clone(),
            function: function.clone(),
            grantee: grantee.clone(),
            alias: self.alias.clone(),
            created_at: existing.map_or(self.at, |g| g.created_at),
        };
        txn.put(layout::grant(owner, function, grantee), encode(&record));
        Ok(Planned::new(txn, (record, existing.is_none())))
    }
}

/// Revokes a grant; calls through the grantee's aliases fail from the next
/// one on.
pub struct DeleteGrant {
    /// The granting account.
    pub owner: AccountName,
    /// Its function.
    pub function: FunctionName,
    /// The account it was given to.
    pub grantee: AccountName,
}

impl Command for DeleteGrant {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let (owner, function, grantee) = (&self.owner, &self.function, &self.grantee);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, owner)?;
        if snapshot.grant(owner, function, grantee).is_none() {
            return Err(RegistryError::NotFound(format!("{function} has no grant to {grantee}")));
        }
        txn.delete(layout::grant(owner, function, grantee));
        Ok(Planned::new(txn, ()))
    }
}

/// Creates or re-points the cross-account alias `account/name`; answers it
/// and whether it is new.
pub struct PutCrossAlias {
    /// The account whose namespace holds it.
    pub account: AccountName,
    /// The name.
    pub name: FunctionName,
    /// What it points at.
    pub target: CrossTarget,
    /// Lower limits for calls through it.
    pub limits: LowerLimits,
    /// Create, update or either.
    pub mode: PutMode,
    /// When, Unix seconds.
    pub at: u64,
}

impl Command for PutCrossAlias {
    type Output = (CrossAliasRecord, bool);

    fn plan(&self, snapshot: &Snapshot, limits: &StorageLimits) -> Result<Planned<Self::Output>> {
        let (account, name) = (&self.account, &self.name);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        let existing = snapshot.cross_alias(account, name);
        match (self.mode, existing) {
            (PutMode::Create, Some(_)) => {
                return Err(RegistryError::Conflict(format!(
                    "the cross-account alias {name} already exists"
                )));
            }
            (PutMode::Update, None) => {
                return Err(RegistryError::NotFound(format!("no cross-account alias {name}")));
            }
            _ => {}
        }
        if snapshot.function(account, name).is_some() {
            return Err(RegistryError::Conflict(format!(
                "{name} is one of your functions; functions and cross-account aliases share one namespace"
            )));
        }
        if existing.is_none() {
            limits.check_new_alias(snapshot, account)?;
        }
        if existing.is_none() && !crate::names::fits_host_label(name.as_str()) {
            return Err(RegistryError::Invalid(format!(
                "names may not contain `--`, which separates function and account in host names ({name})"
            )));
        }
        let CrossTarget {
            owner,
            function,
            qualifier,
        } = &self.target;
        if owner == account {
            return Err(RegistryError::Invalid(
                "a cross-account alias targets another account; use an alias of your function".into(),
            ));
        }
        // The grant first: without one, an existing function, a missing one
        // and another account's private cross-account alias answer alike,
        // so other accounts' names do not leak.
        let denied = || {
            RegistryError::Forbidden(format!(
                "account {owner} has not granted {account} access to {function}"
            ))
        };
        let grant = snapshot.grant(owner, function, account).ok_or_else(denied)?;
        if live_account(snapshot, owner).is_err() {
            return Err(denied());
        }
        // The grant and the target are the owner's, and the owner's deletes
        // check what targets them: its record is compared and rewritten, so
        // a delete planned before this alias existed is planned again.
        guard_account(&mut txn, snapshot, owner)?;
        if snapshot.function(owner, function).is_none() && snapshot.cross_alias(owner, function).is_some() {
            return Err(RegistryError::Invalid(format!(
                "{owner}/{function} is itself a cross-account alias; point at the function it names instead"
            )));
        }
        if !grant_covers(grant, qualifier) {
            let only = grant.alias.as_ref().map_or_else(String::new, |a| a.to_string());
            return Err(RegistryError::Forbidden(format!(
                "account {owner} granted {account} only {function}:{only}"
            )));
        }
        snapshot
            .resolve(owner, function, qualifier, None)
            .map_err(|_| RegistryError::NotFound(format!("{owner}/{function} has no invocable version {qualifier}")))?;
        if self.limits.timeout_ms == Some(0) || self.limits.memory_mb == Some(0) {
            return Err(RegistryError::Invalid("limits must be at least 1".into()));
        }
        let record = CrossAliasRecord {
            account: account.clone(),
            name: name.clone(),
            owner: owner.clone(),
            function: function.clone(),
            qualifier: match qualifier {
                Qualifier::Latest => None,
                other => Some(other.to_string()),
            },
            limits: self.limits,
            created_at: existing.map_or(self.at, |c| c.created_at),
            updated_at: self.at,
        };
        txn.put(layout::cross_alias(account, name), encode(&record));
        Ok(Planned::new(txn, (record, existing.is_none())))
    }
}

/// Deletes a cross-account alias.
pub struct DeleteCrossAlias {
    /// The account whose namespace holds it.
    pub account: AccountName,
    /// The name.
    pub name: FunctionName,
}

impl Command for DeleteCrossAlias {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, &self.account)?;
        if snapshot.cross_alias(&self.account, &self.name).is_none() {
            return Err(RegistryError::NotFound(format!("no cross-account alias {}", self.name)));
        }
        txn.delete(layout::cross_alias(&self.account, &self.name));
        Ok(Planned::new(txn, ()))
    }
}
