//! Commands on aliases: names for one version of a function, or for two
//! with a weighted split.

use super::command::{Command, Planned, guard_account};
use super::error::{RegistryError, Result};
use super::layout;
use super::limits::StorageLimits;
use super::records::{AliasRecord, Overrides, VersionState, Weight, encode};
use super::snapshot::{Snapshot, target_qualifier};
use super::store::Txn;
use crate::names::{AccountName, AliasName, FunctionName, Qualifier};

/// Whether a write may create, replace, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Only if the name is free (409 otherwise).
    Create,
    /// Only if the name exists (404 otherwise).
    Update,
    /// Either.
    Upsert,
}

/// Where an alias points and what it changes.
#[derive(Debug, Clone)]
pub struct AliasSpec {
    /// The version that gets the calls not sent to `weight.version`.
    pub version: u32,
    /// A second version and its share.
    pub weight: Option<Weight>,
    /// Environment and lower limits.
    pub overrides: Overrides,
}

/// Creates or re-points an alias; answers it and whether it is new.
pub struct PutAlias {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// The alias.
    pub name: AliasName,
    /// Where it points.
    pub spec: AliasSpec,
    /// Create, update or either.
    pub mode: PutMode,
    /// When, Unix seconds.
    pub at: u64,
}

impl Command for PutAlias {
    type Output = (AliasRecord, bool);

    fn plan(&self, snapshot: &Snapshot, limits: &StorageLimits) -> Result<Planned<Self::Output>> {
        let (account, function, name, spec) = (&self.account, &self.function, &self.name, &self.spec);
        if name.as_str() == "latest" {
            return Err(RegistryError::Invalid(
                "`latest` names the newest version; choose another alias name".into(),
            ));
        }
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        let entry = snapshot
            .function(account, function)
            .ok_or_else(|| RegistryError::NotFound(format!("no function {function}")))?;
        let existing = entry.aliases.get(name);
        match (self.mode, existing) {
            (PutMode::Create, Some(_)) => {
                return Err(RegistryError::Conflict(format!(
                    "{function} already has an alias {name}; update it instead"
                )));
            }
            (PutMode::Update, None) => {
                return Err(RegistryError::NotFound(format!("{function} has no alias {name}")));
            }
            _ => {}
        }
        let mut targets = vec![spec.version];
        if let Some(weight) = spec.weight {
            if weight.version == spec.version {
                return Err(RegistryError::Invalid(
                    "the weighted version must differ from the alias's version".into(),
                ));
            }
            if !(1..=99).contains(&weight.percent) {
                return Err(RegistryError::Invalid(
                    "a weight's percent must be between 1 and 99".into(),
                ));
            }
            targets.push(weight.version);
        }
        for number in &targets {
            let version = entry
                .versions
                .get(number)
                .ok_or_else(|| RegistryError::NotFound(format!("{function} has no version {number}")))?;
            if version.state != VersionState::Ready {
                return Err(RegistryError::Conflict(format!(
                    "version {number} of {function} is not ready to serve"
                )));
            }
            let config = &version.config;
            if spec
                .overrides
                .timeout_ms
                .is_some_and(|t| t == 0 || t > config.timeout_ms)
            {
                return Err(RegistryError::Invalid(format!(
                    "an alias may only lower limits: timeout_ms must be between 1 and {} (version {number})",
                    config.timeout_ms
                )));
            }
            if spec.overrides.memory_mb.is_some_and(|m| m == 0 || m > config.memory_mb) {
                return Err(RegistryError::Invalid(format!(
                    "an alias may only lower limits: memory_mb must be between 1 and {} (version {number})",
                    config.memory_mb
                )));
            }
        }
        if let Some(key) = stratus_wire::config::bad_env_name(&spec.overrides.env) {
            return Err(RegistryError::Invalid(format!(
                "{key:?} is not an environment variable name"
            )));
        }
        limits.check_env(&spec.overrides.env)?;
        if existing.is_none() {
            limits.check_new_alias(snapshot, account)?;
        }
        let record = AliasRecord {
            account: account.clone(),
            function: function.clone(),
            name: name.clone(),
            version: spec.version,
            weight: spec.weight,
            overrides: spec.overrides.clone(),
            created_at: existing.map_or(self.at, |e| e.record.created_at),
            updated_at: self.at,
        };
        txn.put(layout::alias(account, function, name), encode(&record));
        Ok(Planned::new(txn, (record, existing.is_none())))
    }
}

/// Deletes an alias no other account's alias targets.
pub struct DeleteAlias {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// The alias.
    pub name: AliasName,
}

impl Command for DeleteAlias {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let (account, function, name) = (&self.account, &self.function, &self.name);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        let target = Qualifier::Alias(name.clone());
        if let Some(user) = snapshot
            .cross_aliases_to(account, function)
            .find(|c| target_qualifier(c) == target)
        {
            return Err(RegistryError::Conflict(format!(
                "alias {name} of {function} is the target of account {}'s alias {}",
                user.account, user.name
            )));
        }
        let exists = snapshot
            .function(account, function)
            .is_some_and(|f| f.aliases.contains_key(name));
        if !exists {
            return Err(RegistryError::NotFound(format!("{function} has no alias {name}")));
        }
        txn.delete(layout::alias(account, function, name));
        Ok(Planned::new(txn, ()))
    }
}
