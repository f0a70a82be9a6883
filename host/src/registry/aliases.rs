//! Writes of aliases. Checked against the snapshot under the writer lock,
//! which is exactly what the trees hold, then written and committed.

use super::records::{AliasRecord, Overrides, VersionState, Weight, encode, now};
use super::{Registry, function_key};
use crate::error::ApiError;
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

pub(super) fn alias_key(account: &AccountName, function: &FunctionName, alias: &AliasName) -> Vec<u8> {
    let mut key = function_key(account, function);
    key.push(b'/');
    key.extend_from_slice(alias.as_str().as_bytes());
    key
}

impl Registry {
    /// Creates or re-points an alias; returns it and whether it is new.
    pub async fn put_alias(
        &self,
        account: &AccountName,
        function: &FunctionName,
        name: &AliasName,
        spec: AliasSpec,
        mode: PutMode,
    ) -> Result<(AliasRecord, bool), ApiError> {
        if name.as_str() == "latest" {
            return Err(ApiError::BadRequest(
                "`latest` names the newest version; choose another alias name".into(),
            ));
        }
        let _w = self.writer.lock().await;
        let snapshot = self.snapshot();
        let entry = snapshot
            .function(account, function)
            .ok_or_else(|| ApiError::NotFound(format!("no function {function}")))?;
        let existing = entry.aliases.get(name);
        match (mode, existing) {
            (PutMode::Create, Some(_)) => {
                return Err(ApiError::Conflict(format!(
                    "{function} already has an alias {name}; update it instead"
                )));
            }
            (PutMode::Update, None) => {
                return Err(ApiError::NotFound(format!("{function} has no alias {name}")));
            }
            _ => {}
        }
        let mut targets = vec![spec.version];
        if let Some(weight) = spec.weight {
            if weight.version == spec.version {
                return Err(ApiError::BadRequest(
                    "the weighted version must differ from the alias's version".into(),
                ));
            }
            if !(1..=99).contains(&weight.percent) {
                return Err(ApiError::BadRequest(
                    "a weight's percent must be between 1 and 99".into(),
                ));
            }
            targets.push(weight.version);
        }
        for number in &targets {
            let version = entry
                .versions
                .get(number)
                .ok_or_else(|| ApiError::NotFound(format!("{function} has no version {number}")))?;
            if version.state != VersionState::Ready {
                return Err(ApiError::Conflict(format!(
                    "version {number} of {function} is not ready to serve"
                )));
            }
            let config = &version.config;
            if spec
                .overrides
                .timeout_ms
                .is_some_and(|t| t == 0 || t > config.timeout_ms)
            {
                return Err(ApiError::BadRequest(format!(
                    "an alias may only lower limits: timeout_ms must be between 1 and {} (version {number})",
                    config.timeout_ms
                )));
            }
            if spec.overrides.memory_mb.is_some_and(|m| m == 0 || m > config.memory_mb) {
                return Err(ApiError::BadRequest(format!(
                    "an alias may only lower limits: memory_mb must be between 1 and {} (version {number})",
                    config.memory_mb
                )));
            }
        }
        if let Some(key) = stratus_wire::config::bad_env_name(&spec.overrides.env) {
            return Err(ApiError::BadRequest(format!(
                "{key:?} is not an environment variable name"
            )));
        }
        self.limits.check_env(&spec.overrides.env)?;
        if existing.is_none() {
            self.limits.check_new_alias(&snapshot, account)?;
        }
        let time = now();
        let record = AliasRecord {
            account: account.clone(),
            function: function.clone(),
            name: name.clone(),
            version: spec.version,
            weight: spec.weight,
            overrides: spec.overrides,
            created_at: existing.map_or(time, |e| e.record.created_at),
            updated_at: time,
        };
        self.trees
            .aliases
            .insert(alias_key(account, function, name), encode(&record))
            .map_err(ApiError::internal)?;
        self.commit(&[account]).await?;
        Ok((record, existing.is_none()))
    }

    /// Deletes an alias.
    pub async fn delete_alias(
        &self,
        account: &AccountName,
        function: &FunctionName,
        name: &AliasName,
    ) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let snapshot = self.snapshot();
        let target = Qualifier::Alias(name.clone());
        if let Some(user) = snapshot
            .cross_aliases_to(account, function)
            .find(|c| super::snapshot::target_qualifier(c) == target)
        {
            return Err(ApiError::Conflict(format!(
                "alias {name} of {function} is the target of account {}'s alias {}",
                user.account, user.name
            )));
        }
        let removed = self
            .trees
            .aliases
            .remove(alias_key(account, function, name))
            .map_err(ApiError::internal)?;
        if removed.is_none() {
            return Err(ApiError::NotFound(format!("{function} has no alias {name}")));
        }
        self.commit(&[account]).await
    }
}
