//! The in-memory picture of the registry that the hot path reads.
//!
//! It follows the store's change feed (see `follow.rs`): each batch is
//! applied to a clone of the current snapshot (its maps share their
//! shards, so that is cheap), re-deriving only the accounts the batch
//! touched, and the result is swapped in whole. A reader always sees one
//! consistent state, that of one store revision, and never touches the
//! store; a write costs what it changed, not the size of the registry.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::names::{AccountName, AliasName, FunctionName, Qualifier, SubTenantId};

use super::records::{
    AccountRecord, AliasRecord, CrossAliasRecord, FunctionRecord, GrantRecord, KeyRecord, ReservationRecord,
    VersionRecord, VersionState,
};
use super::sharded::Sharded;
use super::store::Revision;

/// A stored record as the snapshot last saw it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The revision that last changed it: what a command compares.
    pub revision: Revision,
    /// Its bytes.
    pub value: Arc<[u8]>,
    /// The record decoded once, for the kinds an account holds many of
    /// and whose environments make decoding dear: re-deriving an account
    /// then decodes only what changed.
    pub decoded: Decoded,
}

/// A record kept decoded beside its bytes.
#[derive(Debug, Clone)]
pub(crate) enum Decoded {
    /// Decoded where it is used.
    No,
    /// A version.
    Version(Arc<VersionRecord>),
    /// An alias.
    Alias(Arc<AliasRecord>),
}

impl Stored {
    /// The record at `key` with `value`, last changed at `revision`.
    pub(crate) fn new(key: &str, value: Arc<[u8]>, revision: Revision) -> anyhow::Result<Self> {
        let decoded = match super::layout::partition(key) {
            super::layout::Partition::Account(_) if key.starts_with("versions/") => {
                Decoded::Version(Arc::new(super::records::decode(&value)?))
            }
            super::layout::Partition::Account(_) if key.starts_with("aliases/") => {
                Decoded::Alias(Arc::new(super::records::decode(&value)?))
            }
            _ => Decoded::No,
        };
        Ok(Self {
            revision,
            value,
            decoded,
        })
    }
}

/// Records by key.
pub(crate) type Records = BTreeMap<String, Stored>;

/// A function with its versions.
#[derive(Debug, Clone)]
pub struct FunctionEntry {
    /// The function record.
    pub record: FunctionRecord,
    /// Every version, by number.
    pub versions: BTreeMap<u32, Arc<VersionRecord>>,
    /// The newest version that compiled.
    pub latest: Option<u32>,
    /// Whether any ready version is public, i.e. whether callers outside the
    /// account may learn that the function exists. Each call still checks
    /// that the version it resolves to is public.
    pub public: bool,
    /// Aliases by name.
    pub aliases: BTreeMap<AliasName, AliasEntry>,
}

/// An alias with the versions it routes to, overrides already applied.
#[derive(Debug, Clone)]
pub struct AliasEntry {
    /// The alias record.
    pub record: Arc<AliasRecord>,
    /// The version that gets the calls not sent to `minor`, as seen through
    /// the alias; `None` if it is not ready.
    pub main: Option<Arc<VersionRecord>>,
    /// The weighted second version and its share.
    pub minor: Option<(u8, Arc<VersionRecord>)>,
}

impl AliasEntry {
    /// Picks the version for one call. With a sub-tenant the choice is a
    /// hash of it, so each sub-tenant stays on one version while the weights
    /// stand (and a sub-tenant moved to the minor version by a share stays
    /// there as the share grows); without one it is random.
    fn pick(&self, sub_tenant: Option<&SubTenantId>) -> Option<&Arc<VersionRecord>> {
        let main = self.main.as_ref()?;
        let Some((percent, minor)) = &self.minor else {
            return Some(main);
        };
        let roll = match sub_tenant {
            Some(sub) => {
                let r = &self.record;
                let digest = Sha256::digest(format!("{}/{}/{}/{sub}", r.account, r.function, r.name).as_bytes());
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest[..8]);
                (u64::from_be_bytes(first) % 100) as u8
            }
            None => rand::random_range(0..100u8),
        };
        Some(if roll < *percent { minor } else { main })
    }
}

/// What a name resolved to.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The version to run, with the alias's overrides applied.
    pub version: &'a Arc<VersionRecord>,
    /// The alias it was called through.
    pub alias: Option<&'a AliasName>,
}

/// A consistent view of accounts, keys and functions.
///
/// Cloning one is cheap (its maps share their shards), which is how a write
/// makes the next snapshot: clone, re-read the accounts it touched, swap.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Accounts by name.
    pub(super) accounts: Sharded<AccountName, AccountRecord>,
    /// Account keys by SHA-256 of the key text.
    pub(super) keys: Sharded<[u8; 32], KeyRecord>,
    /// Live key ids by account, so tokens issued with a key die with it.
    pub(super) key_ids: Sharded<AccountName, HashSet<String>>,
    /// Functions by owner, then by name (in order, for listings).
    pub(super) functions: Sharded<AccountName, BTreeMap<FunctionName, FunctionEntry>>,
    /// Grants by owner and function, then by grantee.
    pub(super) grants: Sharded<(AccountName, FunctionName), BTreeMap<AccountName, Arc<GrantRecord>>>,
    /// Cross-account aliases by the account whose namespace holds them.
    pub(super) cross_aliases: Sharded<AccountName, BTreeMap<FunctionName, Arc<CrossAliasRecord>>>,
    /// Reservations by owner, function and qualifier (`latest`, `7`, `prod`).
    pub(super) reservations: Sharded<(AccountName, FunctionName, String), Arc<ReservationRecord>>,
    /// What each account put in the maps keyed by something else than its
    /// name, so that re-reading an account takes exactly that out.
    pub(super) owned: Sharded<AccountName, Owned>,
    /// Every stored record of each account (those of accounts being
    /// deleted too), as of `revision`: what commands check and compare.
    pub(super) records: Sharded<AccountName, Arc<Records>>,
    /// The host-wide records.
    pub(super) host: Arc<Records>,
    /// Accounts being deleted: not served, not listed, their names not free.
    pub(super) retiring: Sharded<AccountName, AccountRecord>,
    /// How many accounts store each component, by its SHA-256.
    pub(super) blob_users: Sharded<String, u32>,
    /// The store revision this is the picture of.
    pub(super) revision: Revision,
}

/// The entries of one account under other keys than its name.
#[derive(Debug, Default, Clone)]
pub(super) struct Owned {
    /// Its keys' hashes (in `keys`).
    pub key_hashes: Vec<[u8; 32]>,
    /// Its functions that have grants (in `grants`).
    pub grant_functions: Vec<FunctionName>,
    /// Its reservations' keys (in `reservations`).
    pub reservations: Vec<(AccountName, FunctionName, String)>,
    /// The components it stores (counted in `blob_users`).
    pub blobs: Vec<String>,
}

/// Why a cross-account alias did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrossError {
    /// The owner no longer grants it (or the function is gone).
    Revoked,
    /// The target's version or alias does not exist (any more).
    NoQualifier,
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such account or function.
    NoFunction,
    /// The function exists but not the version or alias.
    NoQualifier,
}

impl Snapshot {
    /// The store revision this snapshot shows.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The stored record at `key`, as of this snapshot.
    pub(crate) fn stored(&self, key: &str) -> Option<&Stored> {
        match super::layout::partition(key) {
            super::layout::Partition::Host => self.host.get(key),
            super::layout::Partition::Account(account) => {
                let account = AccountName::parse(account).ok()?;
                self.records.get(&account)?.get(key)
            }
        }
    }

    /// The stored records of `account` whose keys start with `prefix`.
    pub(crate) fn stored_under<'a>(
        &'a self,
        account: &AccountName,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Stored)> + 'a {
        self.records
            .get(account)
            .into_iter()
            .flat_map(move |records| records.range(prefix.to_string()..))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Whether any account stores component `sha256`.
    pub fn blob_is_stored(&self, sha256: &str) -> bool {
        self.blob_users.get(&sha256.to_string()).is_some_and(|n| *n > 0)
    }

    /// Whether `account` is being deleted.
    pub fn is_retiring(&self, account: &AccountName) -> bool {
        self.retiring.contains_key(account)
    }

    /// The accounts being deleted.
    pub(crate) fn retiring(&self) -> impl Iterator<Item = &AccountRecord> {
        self.retiring.values()
    }

    /// The account `name`, if it exists (and is not being deleted).
    pub fn account(&self, name: &AccountName) -> Option<&AccountRecord> {
        self.accounts.get(name)
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountRecord> {
        self.accounts.values()
    }

    /// How many accounts there are.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The live key whose text hashes to `hash`.
    pub fn key_by_hash(&self, hash: &[u8; 32]) -> Option<&KeyRecord> {
        self.keys.get(hash)
    }

    /// Every reservation, with its (account, function, qualifier).
    pub fn reservations(
        &self,
    ) -> impl Iterator<Item = (&(AccountName, FunctionName, String), &Arc<ReservationRecord>)> {
        self.reservations.iter()
    }

    /// The reservation of `account/function:qualifier`.
    pub fn reservation(
        &self,
        account: &AccountName,
        function: &FunctionName,
        qualifier: &str,
    ) -> Option<&Arc<ReservationRecord>> {
        self.reservations
            .get(&(account.clone(), function.clone(), qualifier.to_string()))
    }

    /// The grants `owner` gave for `function`, by grantee.
    pub fn grants_of(&self, owner: &AccountName, function: &FunctionName) -> impl Iterator<Item = &Arc<GrantRecord>> {
        self.grants
            .get(&(owner.clone(), function.clone()))
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// Every grant `owner` gave, for all its functions.
    pub fn grants_given<'a>(&'a self, owner: &'a AccountName) -> impl Iterator<Item = &'a Arc<GrantRecord>> + 'a {
        self.owned
            .get(owner)
            .into_iter()
            .flat_map(|o| o.grant_functions.iter())
            .flat_map(move |f| self.grants_of(owner, f))
    }

    /// Every reservation of `account`'s functions, with its key.
    pub fn reservations_of<'a>(
        &'a self,
        account: &'a AccountName,
    ) -> impl Iterator<Item = (&'a (AccountName, FunctionName, String), &'a Arc<ReservationRecord>)> + 'a {
        self.owned
            .get(account)
            .into_iter()
            .flat_map(|o| o.reservations.iter())
            .filter_map(move |key| self.reservations.get(key).map(|r| (key, r)))
    }

    /// Every grant `grantee` holds.
    pub fn grants_to<'a>(&'a self, grantee: &'a AccountName) -> impl Iterator<Item = &'a Arc<GrantRecord>> + 'a {
        self.grants
            .values()
            .flat_map(BTreeMap::values)
            .filter(move |g| &g.grantee == grantee)
    }

    /// Every cross-account alias that targets a function of `owner`.
    pub fn cross_aliases_targeting<'a>(
        &'a self,
        owner: &'a AccountName,
    ) -> impl Iterator<Item = &'a Arc<CrossAliasRecord>> + 'a {
        self.cross_aliases
            .values()
            .flat_map(BTreeMap::values)
            .filter(move |c| &c.owner == owner)
    }

    /// The cross-account aliases `account` holds, by name.
    pub fn cross_aliases_of(&self, account: &AccountName) -> impl Iterator<Item = &Arc<CrossAliasRecord>> {
        self.cross_aliases.get(account).into_iter().flat_map(BTreeMap::values)
    }

    /// The ids of `account`'s live keys.
    pub fn key_count(&self, account: &AccountName) -> usize {
        self.key_ids.get(account).map_or(0, HashSet::len)
    }

    /// The function `account/name`, if it exists.
    pub fn function(&self, account: &AccountName, name: &FunctionName) -> Option<&FunctionEntry> {
        self.functions.get(account)?.get(name)
    }

    /// Every function of `account`, by name.
    pub fn functions_of(&self, account: &AccountName) -> impl Iterator<Item = &FunctionEntry> {
        self.functions.get(account).into_iter().flat_map(BTreeMap::values)
    }

    /// Every function of every account.
    pub fn all_functions(&self) -> impl Iterator<Item = &FunctionEntry> {
        self.functions.values().flat_map(BTreeMap::values)
    }

    /// Aliases and cross-account aliases `account` holds.
    pub fn alias_count(&self, account: &AccountName) -> usize {
        self.functions_of(account).map(|f| f.aliases.len()).sum::<usize>()
            + self.cross_aliases.get(account).map_or(0, |c| c.len())
    }

    /// The id of the account that holds this name now.
    pub fn account_id(&self, account: &AccountName) -> Option<&str> {
        self.accounts.get(account).map(|a| a.id.as_str())
    }

    /// Whether key `id` of `account` still exists.
    pub fn has_key(&self, account: &AccountName, id: &str) -> bool {
        self.key_ids.get(account).is_some_and(|ids| ids.contains(id))
    }

    /// Resolves `account/name[:qualifier]` to an invocable version; a
    /// weighted alias picks one for `sub_tenant` (see [`AliasEntry`]).
    pub fn resolve(
        &self,
        account: &AccountName,
        name: &FunctionName,
        qualifier: &Qualifier,
        sub_tenant: Option<&SubTenantId>,
    ) -> Result<Resolved<'_>, ResolveError> {
        let entry = self.function(account, name).ok_or(ResolveError::NoFunction)?;
        let number = match qualifier {
            Qualifier::Latest => entry.latest.ok_or(ResolveError::NoQualifier)?,
            Qualifier::Version(n) => *n,
            Qualifier::Alias(alias) => {
                let alias_entry = entry.aliases.get(alias).ok_or(ResolveError::NoQualifier)?;
                let version = alias_entry.pick(sub_tenant).ok_or(ResolveError::NoQualifier)?;
                return Ok(Resolved {
                    version,
                    alias: Some(&alias_entry.record.name),
                });
            }
        };
        let version = entry
            .versions
            .get(&number)
            .filter(|v| v.state == VersionState::Ready)
            .ok_or(ResolveError::NoQualifier)?;
        Ok(Resolved { version, alias: None })
    }

    /// The grant `owner` gave `grantee` for `function`.
    pub fn grant(&self, owner: &AccountName, function: &FunctionName, grantee: &AccountName) -> Option<&GrantRecord> {
        self.grants
            .get(&(owner.clone(), function.clone()))?
            .get(grantee)
            .map(Arc::as_ref)
    }

    /// The cross-account alias `name` of `account`.
    pub fn cross_alias(&self, account: &AccountName, name: &FunctionName) -> Option<&Arc<CrossAliasRecord>> {
        self.cross_aliases.get(account)?.get(name)
    }

    /// Every cross-account alias that targets `owner/function`.
    pub fn cross_aliases_to<'a>(
        &'a self,
        owner: &'a AccountName,
        function: &'a FunctionName,
    ) -> impl Iterator<Item = &'a Arc<CrossAliasRecord>> + 'a {
        self.cross_aliases
            .values()
            .flat_map(BTreeMap::values)
            .filter(move |c| &c.owner == owner && &c.function == function)
    }

    /// Resolves a cross-account alias through its grant, which is checked on
    /// every call so a revocation takes effect at once.
    pub fn resolve_cross(
        &self,
        alias: &CrossAliasRecord,
        sub_tenant: Option<&SubTenantId>,
    ) -> Result<Resolved<'_>, CrossError> {
        let qualifier = target_qualifier(alias);
        let granted = self
            .grant(&alias.owner, &alias.function, &alias.account)
            .is_some_and(|grant| grant_covers(grant, &qualifier));
        if !granted {
            return Err(CrossError::Revoked);
        }
        self.resolve(&alias.owner, &alias.function, &qualifier, sub_tenant)
            .map_err(|err| match err {
                ResolveError::NoFunction => CrossError::Revoked,
                ResolveError::NoQualifier => CrossError::NoQualifier,
            })
    }

    /// The version a reservation of `account/name[:qualifier]` keeps
    /// environments for, with the alias it goes through: for a weighted
    /// alias, its main version.
    pub fn reserved_version(
        &self,
        account: &AccountName,
        name: &FunctionName,
        qualifier: &Qualifier,
    ) -> Option<(&Arc<VersionRecord>, Option<&AliasName>)> {
        let entry = self.function(account, name)?;
        match qualifier {
            Qualifier::Alias(alias) => {
                let alias = entry.aliases.get(alias)?;
                Some((alias.main.as_ref()?, Some(&alias.record.name)))
            }
            other => self.resolve(account, name, other, None).ok().map(|r| (r.version, None)),
        }
    }

    /// Whether callers outside the account may learn that `account/name` exists.
    pub fn is_public(&self, account: &AccountName, name: &FunctionName) -> bool {
        self.function(account, name).is_some_and(|f| f.public)
    }
}

/// The qualifier a cross-account alias targets.
pub fn target_qualifier(alias: &CrossAliasRecord) -> Qualifier {
    // Stored from a parsed qualifier; an unreadable one matches nothing.
    alias
        .qualifier
        .as_deref()
        .map_or(Ok(Qualifier::Latest), Qualifier::parse)
        .unwrap_or(Qualifier::Version(0))
}

/// Whether `grant` lets its grantee target `qualifier`.
pub fn grant_covers(grant: &GrantRecord, qualifier: &Qualifier) -> bool {
    match &grant.alias {
        None => true,
        Some(only) => matches!(qualifier, Qualifier::Alias(a) if a == only),
    }
}
