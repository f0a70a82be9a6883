//! Writes of grants and cross-account aliases. Like aliases, each is checked
//! against the snapshot under the writer lock, then written and committed.
//! The snapshot's maps serve as the reverse indexes (what targets a
//! function, what an account was granted) that sled transactions cannot scan.

use super::aliases::PutMode;
use super::records::{CrossAliasRecord, GrantRecord, LowerLimits, encode, now};
use super::snapshot::grant_covers;
use super::{Registry, function_key};
use crate::error::ApiError;
use crate::names::{AccountName, AliasName, FunctionName, Qualifier};

pub(super) fn grant_key(owner: &AccountName, function: &FunctionName, grantee: &AccountName) -> Vec<u8> {
    let mut key = function_key(owner, function);
    key.push(b'/');
    key.extend_from_slice(grantee.as_str().as_bytes());
    key
}

pub(super) fn cross_alias_key(account: &AccountName, name: &FunctionName) -> Vec<u8> {
    function_key(account, name)
}

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
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let (owner, rest) = text
            .split_once('/')
            .ok_or_else(|| ApiError::BadRequest(format!("target {text:?} is not OWNER/FN[:QUALIFIER]")))?;
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

impl Registry {
    /// Lets `grantee` alias `owner/function` (only `function:alias`, if given).
    pub async fn put_grant(
        &self,
        owner: &AccountName,
        function: &FunctionName,
        grantee: &AccountName,
        alias: Option<AliasName>,
    ) -> Result<(GrantRecord, bool), ApiError> {
        let _w = self.writer.lock().await;
        let snapshot = self.snapshot();
        let entry = snapshot
            .function(owner, function)
            .ok_or_else(|| ApiError::NotFound(format!("no function {function}")))?;
        if grantee == owner {
            return Err(ApiError::BadRequest(
                "an account needs no grant for its own functions".into(),
            ));
        }
        if !snapshot.accounts.contains_key(grantee) {
            return Err(ApiError::NotFound(format!("no account {grantee}")));
        }
        if let Some(alias) = &alias
            && !entry.aliases.contains_key(alias)
        {
            return Err(ApiError::NotFound(format!("{function} has no alias {alias}")));
        }
        let existing = snapshot.grant(owner, function, grantee);
        let record = GrantRecord {
            owner: owner.clone(),
            function: function.clone(),
            grantee: grantee.clone(),
            alias,
            created_at: existing.map_or_else(now, |g| g.created_at),
        };
        self.trees
            .grants
            .insert(grant_key(owner, function, grantee), encode(&record))
            .map_err(ApiError::internal)?;
        self.commit(&[owner]).await?;
        Ok((record, existing.is_none()))
    }

    /// Revokes a grant; calls through the grantee's aliases fail from the
    /// next one on.
    pub async fn delete_grant(
        &self,
        owner: &AccountName,
        function: &FunctionName,
        grantee: &AccountName,
    ) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let removed = self
            .trees
            .grants
            .remove(grant_key(owner, function, grantee))
            .map_err(ApiError::internal)?;
        if removed.is_none() {
            return Err(ApiError::NotFound(format!("{function} has no grant to {grantee}")));
        }
        self.commit(&[owner]).await
    }

    /// Creates or re-points a cross-account alias `account/name`.
    pub async fn put_cross_alias(
        &self,
        account: &AccountName,
        name: &FunctionName,
        target: CrossTarget,
        limits: LowerLimits,
        mode: PutMode,
    ) -> Result<(CrossAliasRecord, bool), ApiError> {
        let _w = self.writer.lock().await;
        let snapshot = self.snapshot();
        let existing = snapshot.cross_alias(account, name);
        match (mode, existing) {
            (PutMode::Create, Some(_)) => {
                return Err(ApiError::Conflict(format!(
                    "the cross-account alias {name} already exists"
                )));
            }
            (PutMode::Update, None) => return Err(ApiError::NotFound(format!("no cross-account alias {name}"))),
            _ => {}
        }
        if snapshot.function(account, name).is_some() {
            return Err(ApiError::Conflict(format!(
                "{name} is one of your functions; functions and cross-account aliases share one namespace"
            )));
        }
        if existing.is_none() {
            self.limits.check_new_alias(&snapshot, account)?;
        }
        if existing.is_none() && !crate::names::fits_host_label(name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "names may not contain `--`, which separates function and account in host names ({name})"
            )));
        }
        let CrossTarget {
            owner,
            function,
            qualifier,
        } = target;
        if &owner == account {
            return Err(ApiError::BadRequest(
                "a cross-account alias targets another account; use an alias of your function".into(),
            ));
        }
        // The grant first: without one, an existing function, a missing one
        // and another account's private cross-account alias answer alike,
        // so other accounts' names do not leak.
        let grant = snapshot.grant(&owner, &function, account).ok_or_else(|| {
            ApiError::Forbidden(format!(
                "account {owner} has not granted {account} access to {function}"
            ))
        })?;
        if snapshot.function(&owner, &function).is_none() && snapshot.cross_alias(&owner, &function).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{owner}/{function} is itself a cross-account alias; point at the function it names instead"
            )));
        }
        if !grant_covers(grant, &qualifier) {
            let only = grant.alias.as_ref().map_or_else(String::new, |a| a.to_string());
            return Err(ApiError::Forbidden(format!(
                "account {owner} granted {account} only {function}:{only}"
            )));
        }
        snapshot
            .resolve(&owner, &function, &qualifier, None)
            .map_err(|_| ApiError::NotFound(format!("{owner}/{function} has no invocable version {qualifier}")))?;
        if limits.timeout_ms == Some(0) || limits.memory_mb == Some(0) {
            return Err(ApiError::BadRequest("limits must be at least 1".into()));
        }
        let time = now();
        let record = CrossAliasRecord {
            account: account.clone(),
            name: name.clone(),
            owner,
            function,
            qualifier: match qualifier {
                Qualifier::Latest => None,
                other => Some(other.to_string()),
            },
            limits,
            created_at: existing.map_or(time, |c| c.created_at),
            updated_at: time,
        };
        self.trees
            .cross_aliases
            .insert(cross_alias_key(account, name), encode(&record))
            .map_err(ApiError::internal)?;
        self.commit(&[account]).await?;
        Ok((record, existing.is_none()))
    }

    /// Deletes a cross-account alias.
    pub async fn delete_cross_alias(&self, account: &AccountName, name: &FunctionName) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let removed = self
            .trees
            .cross_aliases
            .remove(cross_alias_key(account, name))
            .map_err(ApiError::internal)?;
        if removed.is_none() {
            return Err(ApiError::NotFound(format!("no cross-account alias {name}")));
        }
        self.commit(&[account]).await
    }
}
