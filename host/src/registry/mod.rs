//! The registry: accounts, keys, functions, versions, aliases, grants and
//! reservations, kept in a [`MetaStore`](store::MetaStore), and the
//! [`Snapshot`] of them that the hot path reads.
//!
//! Every change is a typed [`Command`](command::Command): planned against the
//! current snapshot, committed as one guarded transaction, retried against a
//! newer snapshot when another writer got there first, and acknowledged once
//! durable and visible in the snapshot. Component bytes are in a
//! [`BlobStore`](blobs::BlobStore), function data in a
//! [`KvBackend`](kv::KvBackend).

pub mod accounts;
pub mod aliases;
mod apply;
pub mod blobs;
pub mod command;
pub mod error;
mod follow;
pub mod functions;
pub mod grants;
pub mod kv;
pub mod layout;
pub mod limits;
mod migrate;
pub mod records;
pub mod reservations;
pub mod sharded;
pub mod snapshot;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::credentials::keys::{self, AccountKey};
use crate::names::{AccountName, AliasName, FunctionName, Qualifier};
use accounts::Swept;
pub use aliases::{AliasSpec, PutMode};
use command::Command;
pub use error::RegistryError;
use error::Result;
pub use grants::CrossTarget;
pub use limits::{StorageLimits, env_bytes};
use records::{
    AccountRecord, AliasRecord, CrossAliasRecord, GrantRecord, KeyRecord, ReservationRecord, VersionConfig,
    VersionRecord, VersionState, now,
};
pub use reservations::{ReservationBounds, ReservationSpec};
pub use snapshot::{CrossError, FunctionEntry, ResolveError, Resolved, Snapshot};
use store::{MetaStore, StoreError};

/// Bytes of sled's page cache.
const SLED_CACHE_BYTES: u64 = 64 << 20;

/// How many times a command is planned again after others changed what it
/// read, before it answers busy.
const ATTEMPTS: usize = 64;

/// Why the registry could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled refused the directory.
    #[error("cannot open the database in {path}: {source} (is another `stratus serve` using it?)")]
    Sled {
        /// The data directory.
        path: String,
        /// sled's error.
        source: sled::Error,
    },
    /// The component store could not be opened or filled.
    #[error("cannot open the component store: {0}")]
    Blobs(#[from] blobs::BlobError),
    /// The records could not be read.
    #[error("the database in {path} holds records this build cannot read: {source}")]
    Corrupt {
        /// The data directory.
        path: String,
        /// What failed.
        source: anyhow::Error,
    },
    /// The store failed while the registry was read.
    #[error("cannot read the registry: {0}")]
    Store(#[from] RegistryError),
}

/// The registry handle shared by the server.
pub struct Registry {
    store: Arc<dyn MetaStore>,
    kv: Arc<dyn kv::KvBackend>,
    /// Component bytes; who stores which (and its size) is in the records.
    blobs: Arc<dyn blobs::BlobStore>,
    view: Arc<follow::View>,
    follower: tokio::task::JoinHandle<()>,
    /// Held by an upload from storing its bytes until its owner record is
    /// in, and by a collection of unowned components, so that a collection
    /// never removes what an upload is about to own.
    blob_gate: tokio::sync::Mutex<()>,
    /// The database the sled store and KV live in, for the final flush.
    db: Option<sled::Db>,
    /// What each account may store.
    limits: StorageLimits,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Registry {
    /// Opens (or creates) the registry in `dir` with the default limits.
    pub async fn open(dir: &Path) -> Result<Self, OpenError> {
        Self::open_with(dir, StorageLimits::default()).await
    }

    /// Opens (or creates) the registry in `dir`, one node's: records in a
    /// sled store, components in files, KV in sled. Accounts may store
    /// what `limits` allow.
    pub async fn open_with(dir: &Path, limits: StorageLimits) -> Result<Self, OpenError> {
        let path = dir.display().to_string();
        let sled_error = |source| OpenError::Sled {
            path: path.clone(),
            source,
        };
        let db = sled::Config::new()
            .path(dir.join("registry"))
            // The hot path reads the in-memory snapshot, not sled; a small
            // page cache keeps the database from filling memory (sled's
            // default is 1 GiB).
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(sled_error)?;
        let store = store::sled::SledStore::open(&db, store::sled::HISTORY).map_err(sled_error)?;
        let blobs = blobs::FsBlobStore::open(&dir.join("blobs"))?;
        migrate::from_trees(&db, &store, &blobs)
            .await
            .map_err(|source| OpenError::Corrupt {
                path: path.clone(),
                source,
            })?;
        let kv = kv::Kv::open(&db, limits.kv.clone()).map_err(sled_error)?;
        let mut registry = Self::start(Arc::new(store), Arc::new(kv), Arc::new(blobs), limits)
            .await
            .map_err(|err| match err {
                RegistryError::Internal(source) => OpenError::Corrupt { path, source },
                other => OpenError::Store(other),
            })?;
        registry.db = Some(db);
        Ok(registry)
    }

    /// A registry on the given stores: reads everything once, follows the
    /// store's changes from then on, and finishes deletes a crash cut short.
    pub async fn start(
        store: Arc<dyn MetaStore>,
        kv: Arc<dyn kv::KvBackend>,
        blobs: Arc<dyn blobs::BlobStore>,
        limits: StorageLimits,
    ) -> Result<Self> {
        let view = Arc::new(follow::View::new(follow::load(&*store).await?));
        let follower = tokio::spawn(follow::follow(store.clone(), view.clone()));
        let registry = Self {
            store,
            kv,
            blobs,
            view,
            follower,
            blob_gate: Default::default(),
            db: None,
            limits,
        };
        registry.finish_deletes().await?;
        registry.collect_unowned_blobs(None).await?;
        Ok(registry)
    }

    /// What each account may store.
    pub fn limits(&self) -> &StorageLimits {
        &self.limits
    }

    /// The key/value store of functions.
    pub fn kv(&self) -> Arc<dyn kv::KvBackend> {
        self.kv.clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.view.current()
    }

    /// Applies `command`: plans it against the current snapshot, commits
    /// the plan, and answers once the snapshot shows it. When someone else
    /// changed what the plan read, it is planned again against the newer
    /// snapshot.
    pub async fn apply<C: Command>(&self, command: C) -> Result<C::Output> {
        for _ in 0..ATTEMPTS {
            let snapshot = self.snapshot();
            let planned = command.plan(&snapshot, &self.limits)?;
            if planned.txn.is_empty() {
                return Ok(planned.output);
            }
            match self.store.commit(&planned.txn).await {
                Ok(revision) => {
                    self.view.reached(revision).await?;
                    return Ok(planned.output);
                }
                Err(StoreError::Conflict) => {
                    // Plan again once the snapshot shows what overtook it.
                    let newest = self.store.revision().await?;
                    self.view.reached(newest).await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(RegistryError::Busy(format!(
            "the records this change reads kept changing ({ATTEMPTS} attempts); retry"
        )))
    }

    /// Reads a host-wide value.
    pub fn meta(&self, name: &str) -> Option<Vec<u8>> {
        self.snapshot()
            .stored(&layout::meta(name))
            .map(|stored| stored.value.to_vec())
    }

    /// Writes a host-wide value, durably.
    pub async fn set_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.apply(accounts::SetMeta {
            name: name.to_string(),
            value: value.to_vec(),
        })
        .await
    }

    /// Creates an account and its first key.
    pub async fn create_account(&self, name: &AccountName) -> Result<(AccountRecord, AccountKey)> {
        let account = AccountRecord {
            name: name.clone(),
            id: records::new_id(),
            created_at: now(),
            retiring: false,
        };
        let key = keys::generate(name);
        self.apply(accounts::CreateAccount {
            account: account.clone(),
            key: key_record(&key, name),
        })
        .await?;
        Ok((account, key))
    }

    /// Deletes an account with everything it owns. Its keys, functions and
    /// aliases stop at once (one transaction); its records then go in
    /// bounded batches, its KV data and unshared components after them.
    pub async fn delete_account(&self, name: &AccountName) -> Result<()> {
        let record = self.apply(accounts::RetireAccount { name: name.clone() }).await?;
        self.sweep_account(&record).await
    }

    async fn sweep_account(&self, record: &AccountRecord) -> Result<()> {
        while self
            .apply(accounts::SweepAccount {
                name: record.name.clone(),
            })
            .await?
            == Swept::More
        {}
        // Its data as an owner and as a caller of other accounts' functions:
        // an account that takes the name later starts with nothing.
        self.kv.drop_account(&record.id).map_err(anyhow::Error::from)?;
        self.collect_unowned_blobs(None).await
    }

    async fn sweep_function(&self, account: &AccountName, function: &FunctionName, shas: Vec<String>) -> Result<()> {
        let sweep = || functions::SweepFunction {
            account: account.clone(),
            function: function.clone(),
        };
        while self.apply(sweep()).await? == Swept::More {}
        self.release_blobs(account, shas).await
    }

    /// Deletes that a crash cut short, finished.
    async fn finish_deletes(&self) -> Result<()> {
        let snapshot = self.snapshot();
        for record in snapshot.retiring() {
            tracing::info!(account = %record.name, "finishing the delete of an account");
            self.sweep_account(record).await?;
        }
        for (account, function) in retiring_functions(&snapshot)? {
            tracing::info!(%account, %function, "finishing the delete of a function");
            self.sweep_function(&account, &function, Vec::new()).await?;
        }
        Ok(())
    }

    /// Every account.
    pub fn list_accounts(&self) -> Vec<AccountRecord> {
        let snapshot = self.snapshot();
        let mut accounts: Vec<_> = snapshot.accounts().cloned().collect();
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        accounts
    }

    /// Adds a key to an account.
    pub async fn create_key(&self, account: &AccountName) -> Result<(KeyRecord, AccountKey)> {
        let key = keys::generate(account);
        let record = key_record(&key, account);
        self.apply(accounts::CreateKey {
            account: account.clone(),
            key: record.clone(),
        })
        .await?;
        Ok((record, key))
    }

    /// Revokes a key; calls with it fail from the next request on.
    pub async fn revoke_key(&self, account: &AccountName, id: &str) -> Result<()> {
        self.apply(accounts::RevokeKey {
            account: account.clone(),
            id: id.to_string(),
        })
        .await
    }

    /// The keys of an account (never their secrets).
    pub fn list_keys(&self, account: &AccountName) -> Vec<KeyRecord> {
        let snapshot = self.snapshot();
        let prefix = layout::of_account("keys", account);
        let mut keys: Vec<KeyRecord> = snapshot
            .stored_under(account, &prefix)
            .filter_map(|(_, stored)| records::decode(&stored.value).ok())
            .collect();
        if snapshot.account(account).is_none() {
            keys.clear();
        }
        keys.sort_by_key(|k: &KeyRecord| (k.created_at, k.id.clone()));
        keys
    }

    /// Stores a component for `account`. Identical bytes are stored once; the
    /// result says whether `account` had not uploaded them before (whether
    /// another account has is not the uploader's to learn).
    pub async fn put_blob(&self, account: &AccountName, sha256: &str, bytes: &[u8]) -> Result<bool> {
        let own = functions::OwnBlob {
            account: account.clone(),
            sha256: sha256.to_string(),
            size: bytes.len() as u64,
            at: now(),
        };
        // Refused before anything is stored when the account is over its bound.
        own.plan(&self.snapshot(), &self.limits)?;
        let _gate = self.blob_gate.lock().await;
        // The bytes first, durably: an owner record never points at a blob
        // that is not there (a crash in between leaves an unowned blob,
        // which the next collection removes).
        let store = self.blobs.clone();
        let (sha, data) = (sha256.to_string(), bytes.to_vec());
        tokio::task::spawn_blocking(move || store.put(&sha, &data))
            .await
            .map_err(anyhow::Error::from)?
            .map_err(anyhow::Error::from)?;
        self.apply(own).await
    }

    /// The size of component `sha256`, if `account` uploaded it; nothing
    /// is read but the owner's record.
    pub fn blob_size_for(&self, account: &AccountName, sha256: &str) -> Option<u64> {
        functions::stored_size(&self.snapshot(), account, sha256)
    }

    /// The component bytes of `sha256`, checked against it, for compiling
    /// a version that refers to them.
    pub fn blob(&self, sha256: &str) -> Result<Option<bytes::Bytes>> {
        Ok(self.blobs.get(sha256).map_err(anyhow::Error::from)?)
    }

    /// Gives up `account`'s ownership of those of `shas` none of its
    /// versions uses, and removes components nobody stores any more.
    async fn release_blobs(&self, account: &AccountName, shas: Vec<String>) -> Result<()> {
        let released = self
            .apply(functions::ReleaseBlobs {
                account: account.clone(),
                shas,
            })
            .await?;
        if released.is_empty() {
            return Ok(());
        }
        self.collect_unowned_blobs(Some(released)).await
    }

    /// Removes the components among `candidates` (all of them, if `None`:
    /// also those a crash left stored without their owner's record) that
    /// no account stores, as of the newest revision.
    async fn collect_unowned_blobs(&self, candidates: Option<Vec<String>>) -> Result<()> {
        let _gate = self.blob_gate.lock().await;
        let newest = self.store.revision().await?;
        self.view.reached(newest).await?;
        let snapshot = self.snapshot();
        let candidates = match candidates {
            Some(shas) => shas,
            None => self.blobs.list().map_err(anyhow::Error::from)?,
        };
        for sha in candidates {
            if !snapshot.blob_is_stored(&sha) {
                self.blobs.remove(&sha).map_err(anyhow::Error::from)?;
            }
        }
        Ok(())
    }

    /// Records a new version in state `Compiling`, creating the function if needed.
    pub async fn create_version(
        &self,
        account: &AccountName,
        function: &FunctionName,
        sha256: &str,
        size: u64,
        config: VersionConfig,
    ) -> Result<VersionRecord> {
        self.apply(functions::CreateVersion {
            account: account.clone(),
            function: function.clone(),
            id: records::new_id(),
            sha256: sha256.to_string(),
            size,
            config,
            at: now(),
        })
        .await
    }

    /// Records the outcome of compiling a version; `latest` follows from it.
    pub async fn finish_version(
        &self,
        account: &AccountName,
        function: &FunctionName,
        number: u32,
        state: VersionState,
        compile_ms: Option<u64>,
    ) -> Result<()> {
        self.apply(functions::FinishVersion {
            account: account.clone(),
            function: function.clone(),
            number,
            state,
            compile_ms,
        })
        .await
    }

    /// Deletes one version no alias uses.
    pub async fn delete_version(&self, account: &AccountName, function: &FunctionName, number: u32) -> Result<()> {
        let removed = self
            .apply(functions::DeleteVersion {
                account: account.clone(),
                function: function.clone(),
                number,
            })
            .await?;
        self.release_blobs(account, vec![removed.sha256]).await
    }

    /// Deletes a function with all its versions. Aliases referring to it
    /// make this a 409 unless `force`, which removes them too.
    pub async fn delete_function(&self, account: &AccountName, function: &FunctionName, force: bool) -> Result<()> {
        let shas = self
            .apply(functions::RetireFunction {
                account: account.clone(),
                function: function.clone(),
                force,
            })
            .await?;
        self.sweep_function(account, function, shas).await
    }

    /// Creates or re-points an alias; returns it and whether it is new.
    pub async fn put_alias(
        &self,
        account: &AccountName,
        function: &FunctionName,
        name: &AliasName,
        spec: AliasSpec,
        mode: PutMode,
    ) -> Result<(AliasRecord, bool)> {
        self.apply(aliases::PutAlias {
            account: account.clone(),
            function: function.clone(),
            name: name.clone(),
            spec,
            mode,
            at: now(),
        })
        .await
    }

    /// Deletes an alias.
    pub async fn delete_alias(&self, account: &AccountName, function: &FunctionName, name: &AliasName) -> Result<()> {
        self.apply(aliases::DeleteAlias {
            account: account.clone(),
            function: function.clone(),
            name: name.clone(),
        })
        .await
    }

    /// Lets `grantee` alias `owner/function` (only `function:alias`, if given).
    pub async fn put_grant(
        &self,
        owner: &AccountName,
        function: &FunctionName,
        grantee: &AccountName,
        alias: Option<AliasName>,
    ) -> Result<(GrantRecord, bool)> {
        self.apply(grants::PutGrant {
            owner: owner.clone(),
            function: function.clone(),
            grantee: grantee.clone(),
            alias,
            at: now(),
        })
        .await
    }

    /// Revokes a grant.
    pub async fn delete_grant(
        &self,
        owner: &AccountName,
        function: &FunctionName,
        grantee: &AccountName,
    ) -> Result<()> {
        self.apply(grants::DeleteGrant {
            owner: owner.clone(),
            function: function.clone(),
            grantee: grantee.clone(),
        })
        .await
    }

    /// Creates or re-points a cross-account alias `account/name`.
    pub async fn put_cross_alias(
        &self,
        account: &AccountName,
        name: &FunctionName,
        target: CrossTarget,
        limits: records::LowerLimits,
        mode: PutMode,
    ) -> Result<(CrossAliasRecord, bool)> {
        self.apply(grants::PutCrossAlias {
            account: account.clone(),
            name: name.clone(),
            target,
            limits,
            mode,
            at: now(),
        })
        .await
    }

    /// Deletes a cross-account alias.
    pub async fn delete_cross_alias(&self, account: &AccountName, name: &FunctionName) -> Result<()> {
        self.apply(grants::DeleteCrossAlias {
            account: account.clone(),
            name: name.clone(),
        })
        .await
    }

    /// Creates or changes the reservation of `function[:qualifier]`.
    pub async fn put_reservation(
        &self,
        account: &AccountName,
        function: &FunctionName,
        qualifier: &Qualifier,
        spec: ReservationSpec,
        bounds: ReservationBounds,
    ) -> Result<(ReservationRecord, bool)> {
        self.apply(reservations::PutReservation {
            account: account.clone(),
            function: function.clone(),
            qualifier: qualifier.clone(),
            spec,
            bounds,
            at: now(),
        })
        .await
    }

    /// Deletes a reservation.
    pub async fn delete_reservation(
        &self,
        account: &AccountName,
        function: &FunctionName,
        qualifier: &Qualifier,
    ) -> Result<()> {
        self.apply(reservations::DeleteReservation {
            account: account.clone(),
            function: function.clone(),
            qualifier: qualifier.clone(),
        })
        .await
    }

    /// Flushes everything to disk; used at shutdown.
    pub async fn flush(&self) -> Result<()> {
        if let Some(db) = self.db.clone() {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(anyhow::Error::from)?
                .map_err(anyhow::Error::from)?;
        }
        Ok(())
    }
}

/// The functions a crash left half deleted.
fn retiring_functions(snapshot: &Snapshot) -> Result<Vec<(AccountName, FunctionName)>> {
    let mut found = Vec::new();
    for account in snapshot.accounts() {
        let prefix = layout::of_account("functions", &account.name);
        for (_, stored) in snapshot.stored_under(&account.name, &prefix) {
            let record: records::FunctionRecord = records::decode(&stored.value)?;
            if record.retiring {
                found.push((record.account, record.name));
            }
        }
    }
    Ok(found)
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The record of `key` to store: id, account and hash only.
fn key_record(key: &AccountKey, account: &AccountName) -> KeyRecord {
    KeyRecord {
        id: key.id.clone(),
        account: account.clone(),
        hash: hex::encode(key.secret.hash()),
        created_at: now(),
    }
}

#[async_trait::async_trait]
impl crate::credentials::tokens::KeyStore for Registry {
    fn meta(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(Registry::meta(self, key))
    }

    async fn set_meta(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        Ok(Registry::set_meta(self, key, value).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{AliasName, Qualifier, SubTenantId};
    use stratus_wire::config::Overrides;

    /// Everything a snapshot says, in a fixed order, for comparing two.
    fn canonical(s: &Snapshot) -> String {
        fn sorted<T: std::fmt::Debug>(items: impl Iterator<Item = T>) -> Vec<String> {
            let mut all: Vec<String> = items.map(|item| format!("{item:?}")).collect();
            all.sort();
            all
        }
        let key_ids = sorted(s.key_ids.iter().map(|(a, ids)| {
            (a, {
                let mut ids: Vec<_> = ids.iter().collect();
                ids.sort();
                ids
            })
        }));
        let owned = sorted(s.owned.iter().map(|(a, o)| {
            let mut grants = o.grant_functions.clone();
            grants.sort();
            let mut reservations = o.reservations.clone();
            reservations.sort();
            let mut keys = o.key_hashes.clone();
            keys.sort();
            let mut blobs = o.blobs.clone();
            blobs.sort();
            (a, keys, grants, reservations, blobs)
        }));
        [
            sorted(s.accounts.iter()),
            sorted(s.keys.iter()),
            key_ids,
            sorted(s.functions.iter()),
            sorted(s.grants.iter()),
            sorted(s.cross_aliases.iter()),
            sorted(s.reservations.iter()),
            owned,
            sorted(s.records.iter()),
            sorted(s.host.iter()),
            sorted(s.retiring.iter()),
            sorted(s.blob_users.iter()),
            vec![s.revision.to_string()],
        ]
        .iter()
        .map(|part| part.join("\n"))
        .collect::<Vec<_>>()
        .join("\n--\n")
    }

    fn name(text: &str) -> AccountName {
        AccountName::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn function(text: &str) -> FunctionName {
        FunctionName::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn config() -> VersionConfig {
        VersionConfig {
            public: false,
            tenancy: Default::default(),
            reuse: Default::default(),
            timeout_ms: 1000,
            memory_mb: 16,
            env: Default::default(),
            allow_outbound: Vec::new(),
            max_concurrency_per_sub_tenant: None,
        }
    }

    /// Alias `prod` of `acme/hello` at version 1.
    async fn alias_prod(registry: &Registry) -> AliasName {
        let prod = AliasName::parse("prod").unwrap_or_else(|e| panic!("{e}"));
        let spec = aliases::AliasSpec {
            version: 1,
            weight: None,
            overrides: Default::default(),
        };
        registry
            .put_alias(&name("acme"), &function("hello"), &prod, spec, aliases::PutMode::Create)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        prod
    }

    /// After every kind of write, the snapshot the write made in place is
    /// the one a full read of the store gives.
    #[tokio::test]
    async fn every_write_leaves_the_snapshot_a_full_rebuild_would_give() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::open(dir.path()).await.unwrap_or_else(|e| panic!("{e}"));
        async fn check(registry: &Registry, step: &str) {
            let full = follow::load(&*registry.store).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(canonical(&registry.snapshot()), canonical(&full), "after {step}");
        }
        let ok = |r: Result<()>| r.unwrap_or_else(|e| panic!("{e}"));
        let (acme, globex, hello) = (name("acme"), name("globex"), function("hello"));
        registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
        registry.create_account(&globex).await.unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "creating accounts").await;
        let (key, _) = registry.create_key(&acme).await.unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "creating a key").await;
        let sha = "ab".repeat(32);
        for _ in 0..2 {
            let v = registry
                .create_version(&acme, &hello, &sha, 10, config())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            check(&registry, "creating a version").await;
            ok(registry
                .finish_version(&acme, &hello, v.number, VersionState::Ready, Some(1))
                .await);
            check(&registry, "finishing a version").await;
        }
        let prod = alias_prod(&registry).await;
        check(&registry, "an alias").await;
        registry
            .put_grant(&acme, &hello, &globex, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "a grant").await;
        let target = grants::CrossTarget::parse("acme/hello:prod").unwrap_or_else(|e| panic!("{e}"));
        registry
            .put_cross_alias(
                &globex,
                &function("theirs"),
                target,
                Default::default(),
                aliases::PutMode::Create,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "a cross-account alias").await;
        let bounds = reservations::ReservationBounds {
            slots: 100,
            per_account: 10,
            host: 50,
        };
        let spec = reservations::ReservationSpec {
            sub_tenant: None,
            min: 0,
            target: 2,
        };
        registry
            .put_reservation(&acme, &hello, &Qualifier::Latest, spec, bounds)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "a reservation").await;
        ok(registry.revoke_key(&acme, &key.id).await);
        check(&registry, "revoking a key").await;
        ok(registry
            .delete_alias(&acme, &hello, &prod)
            .await
            .map(drop)
            .or_else(|e| match e {
                // The cross-account alias uses it: refused, and nothing changes.
                RegistryError::Conflict(_) => Ok(()),
                other => Err(other),
            }));
        check(&registry, "refusing to delete a used alias").await;
        ok(registry.delete_function(&acme, &hello, true).await);
        check(
            &registry,
            "a forced function delete (another account's alias goes with it)",
        )
        .await;
        ok(registry.delete_account(&acme).await);
        check(&registry, "deleting an account").await;
        ok(registry.delete_account(&globex).await);
        check(&registry, "deleting the last account").await;
        assert_eq!(registry.snapshot().accounts.len(), 0);
    }

    /// A registry with `acme/hello`: version 1 ready (public as `public`),
    /// version 2 still compiling, version 3 failed.
    async fn with_versions(public: bool) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::open(dir.path()).await.unwrap_or_else(|e| panic!("{e}"));
        let (acme, hello) = (name("acme"), function("hello"));
        registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
        registry
            .create_account(&name("globex"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let sha = "cd".repeat(32);
        for state in [
            VersionState::Ready,
            VersionState::Compiling,
            VersionState::Failed { message: "no".into() },
        ] {
            let mut config = config();
            config.public = public;
            config.env.insert("WHO".into(), "version".into());
            let v = registry
                .create_version(&acme, &hello, &sha, 10, config)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if state != VersionState::Compiling {
                registry
                    .finish_version(&acme, &hello, v.number, state, None)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        (dir, registry)
    }

    #[tokio::test]
    async fn resolve_finds_only_ready_versions_and_names_what_is_missing() {
        let (_dir, registry) = with_versions(false).await;
        let snapshot = registry.snapshot();
        let (acme, hello) = (name("acme"), function("hello"));
        let resolved = snapshot
            .resolve(&acme, &hello, &Qualifier::Latest, None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(resolved.version.number, 1, "latest is the newest ready version");
        for (n, why) in [(2, "compiling"), (3, "failed"), (9, "absent")] {
            assert_eq!(
                snapshot.resolve(&acme, &hello, &Qualifier::Version(n), None).err(),
                Some(ResolveError::NoQualifier),
                "version {n} is {why}"
            );
        }
        assert_eq!(
            snapshot
                .resolve(&acme, &function("nope"), &Qualifier::Latest, None)
                .err(),
            Some(ResolveError::NoFunction)
        );
        assert_eq!(
            snapshot
                .resolve(&name("globex"), &hello, &Qualifier::Latest, None)
                .err(),
            Some(ResolveError::NoFunction),
            "another account's namespace has no such function"
        );
        assert!(!snapshot.is_public(&acme, &hello));
        let (_dir, public) = with_versions(true).await;
        assert!(public.snapshot().is_public(&acme, &hello));
    }

    #[tokio::test]
    async fn aliases_apply_their_overrides_and_keep_each_sub_tenant_on_one_version() {
        let (_dir, registry) = with_versions(false).await;
        let (acme, hello) = (name("acme"), function("hello"));
        // A second ready version for the weighted alias.
        let v = registry
            .create_version(&acme, &hello, &"ef".repeat(32), 10, config())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        registry
            .finish_version(&acme, &hello, v.number, VersionState::Ready, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut overrides = Overrides::default();
        overrides.env.insert("WHO".into(), "alias".into());
        let split = AliasName::parse("split").unwrap_or_else(|e| panic!("{e}"));
        let spec = aliases::AliasSpec {
            version: 1,
            weight: Some(stratus_wire::config::Weight {
                version: v.number,
                percent: 50,
            }),
            overrides,
        };
        registry
            .put_alias(&acme, &hello, &split, spec, aliases::PutMode::Create)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let snapshot = registry.snapshot();
        let through = Qualifier::Alias(split.clone());
        let mut seen = std::collections::HashSet::new();
        for i in 0..40 {
            let sub = SubTenantId::parse(&format!("t{i}")).unwrap_or_else(|e| panic!("{e}"));
            let first = snapshot
                .resolve(&acme, &hello, &through, Some(&sub))
                .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(first.alias, Some(&split));
            assert_eq!(first.version.config.env["WHO"], "alias", "the alias's env wins");
            for _ in 0..5 {
                let again = snapshot
                    .resolve(&acme, &hello, &through, Some(&sub))
                    .unwrap_or_else(|e| panic!("{e:?}"));
                assert_eq!(again.version.number, first.version.number, "sticky per sub-tenant");
            }
            seen.insert(first.version.number);
        }
        assert_eq!(seen.len(), 2, "a 50 % split sends some sub-tenants to each version");
    }

    #[tokio::test]
    async fn a_cross_account_alias_resolves_only_while_its_grant_covers_it() {
        let (_dir, registry) = with_versions(false).await;
        let (acme, globex, hello) = (name("acme"), name("globex"), function("hello"));
        let prod = alias_prod(&registry).await;
        // Made under a grant of everything: both resolve.
        registry
            .put_grant(&acme, &hello, &globex, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut held = Vec::new();
        for (local, target) in [("to-latest", "acme/hello"), ("to-prod", "acme/hello:prod")] {
            let target = grants::CrossTarget::parse(target).unwrap_or_else(|e| panic!("{e}"));
            let (record, _) = registry
                .put_cross_alias(
                    &globex,
                    &function(local),
                    target,
                    Default::default(),
                    aliases::PutMode::Create,
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            held.push(record);
        }
        let snapshot = registry.snapshot();
        for alias in &held {
            assert_eq!(
                snapshot.resolve_cross(alias, None).map(|r| r.version.number).ok(),
                Some(1)
            );
        }
        // Narrowed to the alias: only the alias's target resolves.
        registry
            .put_grant(&acme, &hello, &globex, Some(prod.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.resolve_cross(&held[0], None).err(), Some(CrossError::Revoked));
        assert!(snapshot.resolve_cross(&held[1], None).is_ok());
        // Revoked: both end at once.
        registry
            .delete_grant(&acme, &hello, &globex)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let snapshot = registry.snapshot();
        for alias in &held {
            assert_eq!(snapshot.resolve_cross(alias, None).err(), Some(CrossError::Revoked));
        }
    }
}
