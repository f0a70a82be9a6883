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
pub mod import;
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
pub use limits::StorageLimits;
use records::{
    AccountRecord, AliasRecord, CrossAliasRecord, GrantRecord, KeyRecord, ReservationRecord, VersionConfig,
    VersionRecord, VersionState, now,
};
pub use reservations::{ReservationBounds, ReservationSpec};
pub use snapshot::{CrossError, FunctionEntry, ResolveError, Snapshot};
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
    /// The store's revision as last read by [`Registry::catch_up`], and when.
    newest: tokio::sync::Mutex<Option<(std::time::Instant, store::Revision)>>,
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

    /// A cluster node's registry: records, components and KV in etcd under
    /// `prefix` (`{cluster prefix}/v1/`), shared with every other node.
    pub async fn on_etcd(client: etcd_client::Client, prefix: &str, limits: StorageLimits) -> Result<Self, OpenError> {
        let store = store::etcd::EtcdStore::new(client.clone(), &format!("{prefix}registry/"), store::sled::HISTORY);
        let blobs = blobs::etcd::EtcdBlobStore::new(client.clone(), format!("{prefix}blobs/"));
        let kv = kv::etcd::EtcdKv::new(client, format!("{prefix}kv/"), limits.kv.clone());
        Ok(Self::start(Arc::new(store), Arc::new(kv), Arc::new(blobs), limits).await?)
    }

    /// A registry on the given stores: reads everything once, follows the
    /// store's changes from then on, and finishes deletes a crash cut short.
    pub async fn start(
        store: Arc<dyn MetaStore>,
        kv: Arc<dyn kv::KvBackend>,
        blobs: Arc<dyn blobs::BlobStore>,
        limits: StorageLimits,
    ) -> Result<Self> {
        let view = Arc::new(follow::View::new(follow::load(&*store).await?, store.shared()));
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
            newest: Default::default(),
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

    /// Brings the snapshot up to the store's current revision, waiting at
    /// most `within`; true if it was behind and has caught up (so a lookup
    /// that failed is worth trying again). Concurrent callers share one read
    /// of the store's revision.
    pub async fn catch_up(&self, within: std::time::Duration) -> bool {
        let before = self.snapshot().revision();
        let newest = {
            let mut last = self.newest.lock().await;
            match *last {
                Some((at, revision)) if at.elapsed() < std::time::Duration::from_millis(20) => revision,
                _ => match tokio::time::timeout(within, self.store.revision()).await {
                    Ok(Ok(revision)) => {
                        *last = Some((std::time::Instant::now(), revision));
                        revision
                    }
                    _ => return false,
                },
            }
        };
        if newest <= before {
            return false;
        }
        tokio::time::timeout(within, self.view.reached(newest))
            .await
            .is_ok_and(|reached| reached.is_ok())
    }

    /// How long since the snapshot was last known current with the store:
    /// zero on one node; on a cluster, about a second while etcd answers,
    /// growing while it does not.
    pub fn lag(&self) -> std::time::Duration {
        self.view.lag()
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
            expected: None,
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
        self.kv.drop_account(&record.id).await.map_err(anyhow::Error::from)?;
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
        self.blobs.put(sha256, bytes::Bytes::copy_from_slice(bytes)).await?;
        self.apply(own).await
    }

    /// The size of component `sha256`, if `account` uploaded it; nothing
    /// is read but the owner's record.
    pub fn blob_size_for(&self, account: &AccountName, sha256: &str) -> Option<u64> {
        functions::stored_size(&self.snapshot(), account, sha256)
    }

    /// The component bytes of `sha256`, checked against it, for compiling
    /// a version that refers to them.
    pub async fn blob(&self, sha256: &str) -> Result<Option<bytes::Bytes>> {
        Ok(self.blobs.get(sha256).await?)
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
            None => self.blobs.list().await?,
        };
        for sha in candidates {
            if !snapshot.blob_is_stored(&sha) {
                self.blobs.remove(&sha).await?;
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
        bounds: functions::VersionBounds,
    ) -> Result<VersionRecord> {
        self.apply(functions::CreateVersion {
            account: account.clone(),
            function: function.clone(),
            id: records::new_id(),
            sha256: sha256.to_string(),
            size,
            config,
            bounds,
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
    fn meta(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        self.snapshot()
            .stored(&layout::meta(key))
            .map(|stored| (stored.value.to_vec(), stored.revision))
    }

    fn meta_revision(&self, key: &str) -> u64 {
        self.view
            .current()
            .stored(&layout::meta(key))
            .map_or(0, |stored| stored.revision)
    }

    async fn set_meta_if(&self, key: &str, value: &[u8], expected: u64) -> anyhow::Result<bool> {
        match self
            .apply(accounts::SetMeta {
                name: key.to_string(),
                value: value.to_vec(),
                expected: Some(expected),
            })
            .await
        {
            Ok(()) => Ok(true),
            Err(RegistryError::Conflict(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
