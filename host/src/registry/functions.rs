//! Commands on functions, their versions, and the components they run.
//! Deleting a function retires it in one transaction, then sweeps its
//! versions, aliases, grants and reservations a bounded batch at a time.

use super::accounts::{SWEEP_BATCH, Swept};
use super::command::{Command, Planned, guard_account};
use super::error::{RegistryError, Result};
use super::layout;
use super::limits::{StorageLimits, count};
use super::records::{FunctionRecord, VersionConfig, VersionRecord, VersionState, decode, encode};
use super::snapshot::{Snapshot, target_qualifier};
use super::store::Txn;
use crate::names::{AccountName, FunctionName, Qualifier};

/// The bytes of an owner record: when (Unix seconds), and the size.
pub(crate) fn owner_value(at: u64, size: u64) -> Vec<u8> {
    let mut value = at.to_be_bytes().to_vec();
    value.extend_from_slice(&size.to_be_bytes());
    value
}

/// The size an owner record gives.
pub(crate) fn owned_size(value: &[u8]) -> u64 {
    value
        .get(8..16)
        .map_or(0, |size| u64::from_be_bytes(size.try_into().unwrap_or_default()))
}

/// Records that `account` stores a component (whose bytes are in the blob
/// store already), within its bound on stored bytes. Answers whether the
/// account had not stored it before.
pub struct OwnBlob {
    /// The uploader.
    pub account: AccountName,
    /// The component's address.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// When, Unix seconds.
    pub at: u64,
}

impl Command for OwnBlob {
    type Output = bool;

    fn plan(&self, snapshot: &Snapshot, limits: &StorageLimits) -> Result<Planned<bool>> {
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, &self.account)?;
        let key = layout::blob_owner(&self.account, &self.sha256);
        let created = snapshot.stored(&key).is_none();
        if created {
            let prefix = layout::of_account("blob_owners", &self.account);
            let stored: u64 = snapshot
                .stored_under(&self.account, &prefix)
                .map(|(_, s)| owned_size(&s.value))
                .sum();
            let max = limits.max_blob_bytes;
            if stored + self.size > max {
                return Err(RegistryError::TooLarge(format!(
                    "account {} stores {stored} bytes of components; this one would take it past its limit of {max} (--max-blob-bytes-per-account); delete versions it no longer needs",
                    self.account
                )));
            }
        }
        txn.put(key, owner_value(self.at, self.size));
        Ok(Planned::new(txn, created))
    }
}

/// The size of a component `account` stores, from its owner record.
pub(crate) fn stored_size(snapshot: &Snapshot, account: &AccountName, sha256: &str) -> Option<u64> {
    snapshot
        .stored(&layout::blob_owner(account, sha256))
        .map(|s| owned_size(&s.value))
}

/// The host's bounds on a version's configuration, from its settings.
#[derive(Debug, Clone, Copy)]
pub struct VersionBounds {
    /// The longest deadline a version may ask for (`--max-timeout`).
    pub max_timeout_ms: u64,
    /// The most memory a version may ask for: the environment slot size.
    pub max_memory_mb: u32,
}

impl VersionBounds {
    /// Refuses a configuration the host would not run as asked.
    pub fn check(&self, config: &VersionConfig) -> Result<()> {
        if config.timeout_ms == 0 || config.timeout_ms > self.max_timeout_ms {
            return Err(RegistryError::Invalid(format!(
                "timeout_ms must be between 1 and {}",
                self.max_timeout_ms
            )));
        }
        if config.memory_mb == 0 || config.memory_mb > self.max_memory_mb {
            return Err(RegistryError::Invalid(format!(
                "memory_mb must be between 1 and {} (the host's environment slot size)",
                self.max_memory_mb
            )));
        }
        if let Some(key) = stratus_wire::config::bad_env_name(&config.env) {
            return Err(RegistryError::Invalid(format!(
                "{key:?} is not an environment variable name"
            )));
        }
        for entry in &config.allow_outbound {
            let host = entry.rsplit_once(':').map_or(entry.as_str(), |(h, _)| h);
            if host.is_empty() || entry.contains('/') || entry.contains(' ') {
                return Err(RegistryError::Invalid(format!("{entry:?} is not HOST[:PORT]")));
            }
        }
        if config.max_concurrency_per_sub_tenant == Some(0) {
            return Err(RegistryError::Invalid(
                "max_concurrency_per_sub_tenant must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Records a new version in state `Compiling`, creating the function if needed.
pub struct CreateVersion {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// The new version's id.
    pub id: String,
    /// Its component.
    pub sha256: String,
    /// The component's size.
    pub size: u64,
    /// Its configuration.
    pub config: VersionConfig,
    /// What the host allows of it.
    pub bounds: VersionBounds,
    /// When, Unix seconds.
    pub at: u64,
}

impl Command for CreateVersion {
    type Output = VersionRecord;

    fn plan(&self, snapshot: &Snapshot, limits: &StorageLimits) -> Result<Planned<VersionRecord>> {
        let (account, function) = (&self.account, &self.function);
        self.bounds.check(&self.config)?;
        limits.check_env(&self.config.env)?;
        let mut txn = Txn::new();
        let owner = guard_account(&mut txn, snapshot, account)?;
        let versions: usize = snapshot.functions_of(account).map(|f| f.versions.len()).sum();
        count(
            "versions",
            account,
            versions,
            limits.max_versions,
            "--max-versions-per-account",
        )?;
        if snapshot.cross_alias(account, function).is_some() {
            return Err(RegistryError::Conflict(format!(
                "{function} is one of your cross-account aliases; functions and cross-account aliases share one namespace"
            )));
        }
        let fkey = layout::function(account, function);
        let ckey = layout::counter(account, function);
        let mut record = match snapshot.stored(&fkey) {
            Some(stored) => {
                let record: FunctionRecord = decode(&stored.value)?;
                if record.retiring {
                    return Err(RegistryError::Conflict(format!(
                        "function {function} is being deleted; deploy it again in a moment"
                    )));
                }
                record
            }
            None => {
                let functions = snapshot.functions_of(account).count();
                count(
                    "functions",
                    account,
                    functions,
                    limits.max_functions,
                    "--max-functions-per-account",
                )?;
                if !crate::names::fits_host_label(function.as_str()) {
                    return Err(RegistryError::Invalid(format!(
                        "function names may not contain `--`, which separates function and account in host names ({function})"
                    )));
                }
                // A name deployed again continues the numbering of the
                // function it had before.
                let next_version = snapshot.stored(&ckey).map_or(1, |s| read_counter(&s.value));
                FunctionRecord {
                    account: account.clone(),
                    name: function.clone(),
                    created_at: self.at,
                    next_version,
                    retiring: false,
                }
            }
        };
        let version = VersionRecord {
            id: self.id.clone(),
            account_id: owner.id,
            account: account.clone(),
            function: function.clone(),
            number: record.next_version,
            sha256: self.sha256.clone(),
            size: self.size,
            config: self.config.clone(),
            state: VersionState::Compiling,
            created_at: self.at,
            compile_ms: None,
        };
        record.next_version += 1;
        txn.put(ckey, record.next_version.to_be_bytes().to_vec())
            .put(fkey, encode(&record))
            .put(layout::version(account, function, version.number), encode(&version));
        Ok(Planned::new(txn, version))
    }
}

/// Reads a stored version counter.
pub(crate) fn read_counter(bytes: &[u8]) -> u32 {
    let mut be = [0u8; 4];
    let n = bytes.len().min(4);
    be[..n].copy_from_slice(&bytes[..n]);
    u32::from_be_bytes(be).max(1)
}

/// Records the outcome of compiling a version; `latest` follows from it.
pub struct FinishVersion {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// The version.
    pub number: u32,
    /// Ready, or failed and why.
    pub state: VersionState,
    /// How long the compile took.
    pub compile_ms: Option<u64>,
}

impl Command for FinishVersion {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let key = layout::version(&self.account, &self.function, self.number);
        let Some(stored) = snapshot.stored(&key) else {
            // Deleted while compiling: nothing left to update.
            return Ok(Planned::nothing(()));
        };
        let retiring = snapshot
            .stored(&layout::function(&self.account, &self.function))
            .map(|s| decode::<FunctionRecord>(&s.value))
            .transpose()?
            .is_none_or(|f| f.retiring);
        if retiring {
            return Ok(Planned::nothing(()));
        }
        let mut record: VersionRecord = decode(&stored.value)?;
        record.state = self.state.clone();
        record.compile_ms = self.compile_ms;
        let mut txn = Txn::new();
        if guard_account(&mut txn, snapshot, &self.account).is_err() {
            // The account is being deleted: so is the version.
            return Ok(Planned::nothing(()));
        }
        txn.put(key, encode(&record));
        Ok(Planned::new(txn, ()))
    }
}

/// Deletes one version no alias uses; answers its record.
pub struct DeleteVersion {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// The version.
    pub number: u32,
}

impl Command for DeleteVersion {
    type Output = VersionRecord;

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<VersionRecord>> {
        let (account, function, number) = (&self.account, &self.function, self.number);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        let entry = snapshot
            .function(account, function)
            .ok_or_else(|| RegistryError::NotFound(format!("no function {function}")))?;
        let record = entry
            .versions
            .get(&number)
            .ok_or_else(|| RegistryError::NotFound(format!("function {function} has no version {number}")))?;
        let users: Vec<&str> = entry
            .aliases
            .values()
            .filter(|a| a.record.version == number || a.record.weight.is_some_and(|w| w.version == number))
            .map(|a| a.record.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(RegistryError::Conflict(format!(
                "version {number} of {function} is used by alias {}; re-point or delete it first",
                users.join(", ")
            )));
        }
        if let Some(user) = snapshot
            .cross_aliases_to(account, function)
            .find(|c| target_qualifier(c) == Qualifier::Version(number))
        {
            return Err(RegistryError::Conflict(format!(
                "version {number} of {function} is the target of account {}'s alias {}",
                user.account, user.name
            )));
        }
        txn.delete(layout::version(account, function, number));
        Ok(Planned::new(txn, record.as_ref().clone()))
    }
}

/// Gives up `account`'s ownership of those of `shas` that none of its
/// versions uses any more, so that a deleted version's code does not count
/// against it. Answers the ones given up.
pub struct ReleaseBlobs {
    /// The owner.
    pub account: AccountName,
    /// The components that may have lost their last version.
    pub shas: Vec<String>,
}

impl Command for ReleaseBlobs {
    type Output = Vec<String>;

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<Vec<String>>> {
        let mut txn = Txn::new();
        if guard_account(&mut txn, snapshot, &self.account).is_err() {
            // Being deleted: its sweep releases everything.
            return Ok(Planned::nothing(Vec::new()));
        }
        let in_use: std::collections::HashSet<&str> = snapshot
            .functions_of(&self.account)
            .flat_map(|f| f.versions.values().map(|v| v.sha256.as_str()))
            .collect();
        let mut released = Vec::new();
        for sha in &self.shas {
            let key = layout::blob_owner(&self.account, sha);
            if !in_use.contains(sha.as_str()) && snapshot.stored(&key).is_some() && !released.contains(sha) {
                txn.delete(key);
                released.push(sha.clone());
            }
        }
        if released.is_empty() {
            return Ok(Planned::nothing(released));
        }
        Ok(Planned::new(txn, released))
    }
}

/// Marks a function as being deleted: it stops serving at once. References
/// to it (aliases, grants, other accounts' cross-account aliases) make this
/// a 409 unless `force`, whose sweep removes them too. Answers the
/// components its versions used.
pub struct RetireFunction {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// Remove what refers to it as well.
    pub force: bool,
}

impl Command for RetireFunction {
    type Output = Vec<String>;

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<Vec<String>>> {
        let (account, function) = (&self.account, &self.function);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        let entry = snapshot
            .function(account, function)
            .ok_or_else(|| RegistryError::NotFound(format!("no function {function}")))?;
        if !self.force {
            let mut uses = Vec::new();
            if !entry.aliases.is_empty() {
                uses.push(format!("{} alias(es)", entry.aliases.len()));
            }
            let grants = snapshot.grants_of(account, function).count();
            if grants > 0 {
                uses.push(format!("{grants} grant(s)"));
            }
            let cross = snapshot.cross_aliases_to(account, function).count();
            if cross > 0 {
                uses.push(format!("{cross} cross-account alias(es)"));
            }
            if !uses.is_empty() {
                return Err(RegistryError::Conflict(format!(
                    "function {function} is referred to by {}; remove them first, or force the delete",
                    uses.join(", ")
                )));
            }
        }
        let record = FunctionRecord {
            retiring: true,
            ..entry.record.clone()
        };
        txn.put(layout::function(account, function), encode(&record));
        let shas = entry.versions.values().map(|v| v.sha256.clone()).collect();
        Ok(Planned::new(txn, shas))
    }
}

/// Removes a batch of a retiring function's records; the last step removes
/// the function's record, which frees the name (its numbering is kept).
pub struct SweepFunction {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
}

impl Command for SweepFunction {
    type Output = Swept;

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<Swept>> {
        let (account, function) = (&self.account, &self.function);
        let fkey = layout::function(account, function);
        let Some(stored) = snapshot.stored(&fkey) else {
            return Ok(Planned::nothing(Swept::Done));
        };
        let record: FunctionRecord = decode(&stored.value)?;
        if !record.retiring {
            return Err(RegistryError::Conflict(format!(
                "function {function} is not being deleted"
            )));
        }
        let mut keys: Vec<String> = Vec::new();
        for kind in ["versions", "aliases", "grants", "reservations"] {
            let prefix = layout::of_function(kind, account, function);
            keys.extend(snapshot.stored_under(account, &prefix).map(|(key, _)| key.clone()));
        }
        keys.extend(
            snapshot
                .cross_aliases_to(account, function)
                .map(|c| layout::cross_alias(&c.account, &c.name)),
        );
        keys.truncate(SWEEP_BATCH);
        // Each step is a write to the account like any other, so that a
        // write planned before it (a compile finishing) cannot put back
        // what it removed.
        let mut txn = Txn::new();
        if guard_account(&mut txn, snapshot, account).is_err() {
            // The account is being deleted: its own sweep removes all this.
            return Ok(Planned::nothing(Swept::Done));
        }
        if keys.is_empty() {
            txn.compare(fkey.clone(), stored.revision).delete(fkey);
            return Ok(Planned::new(txn, Swept::Done));
        }
        for key in keys {
            txn.delete(key);
        }
        Ok(Planned::new(txn, Swept::More))
    }
}
