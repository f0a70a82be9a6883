//! The registry: accounts, keys, functions, versions and blobs in sled.
//!
//! One writer applies each change as a single sled transaction, flushes, and
//! only then swaps in a new [`Snapshot`] and acknowledges. Readers on the hot
//! path only ever see snapshots.

pub mod aliases;
pub mod blobs;
pub mod grants;
pub mod kv;
pub mod records;
pub mod reservations;
pub mod sharded;
pub mod snapshot;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::credentials::keys::{self, AccountKey};
use crate::error::ApiError;
use crate::names::{AccountName, FunctionName};
pub use aliases::{AliasSpec, PutMode};
pub use grants::CrossTarget;
use records::{
    AccountRecord, AliasRecord, CrossAliasRecord, FunctionRecord, GrantRecord, KeyRecord, ReservationRecord,
    VersionConfig, VersionRecord, VersionState, decode, encode, now,
};
pub use reservations::ReservationSpec;
pub use snapshot::{CrossError, FunctionEntry, ResolveError, Resolved, Snapshot};

/// Bytes of sled's page cache.
const SLED_CACHE_BYTES: u64 = 64 << 20;

/// Why the database could not be opened.
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
    /// A record could not be read.
    #[error("the database in {path} holds a record this build cannot read: {source}")]
    Corrupt {
        /// The data directory.
        path: String,
        /// The decoding error.
        source: anyhow::Error,
    },
}

/// What one account may store: counts past these answer 409, sizes 413.
#[derive(Debug, Clone)]
pub struct StorageLimits {
    /// Account keys.
    pub max_keys: usize,
    /// Functions.
    pub max_functions: usize,
    /// Versions, over all its functions.
    pub max_versions: usize,
    /// Aliases and cross-account aliases together.
    pub max_aliases: usize,
    /// Bytes of environment variables (names and values) one version or
    /// alias may set.
    pub max_env_bytes: usize,
    /// Bytes of components the account has uploaded, in all.
    pub max_blob_bytes: u64,
    /// The functions' key/value store.
    pub kv: kv::KvLimits,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_keys: 20,
            max_functions: 200,
            max_versions: 1000,
            max_aliases: 500,
            max_env_bytes: 64 * 1024,
            max_blob_bytes: 2 << 30,
            kv: kv::KvLimits::default(),
        }
    }
}

/// Bytes of names and values in an environment.
pub fn env_bytes(env: &std::collections::BTreeMap<String, String>) -> usize {
    env.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl StorageLimits {
    /// Refuses an environment over the size limit.
    pub fn check_env(&self, env: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
        let bytes = env_bytes(env);
        if bytes > self.max_env_bytes {
            return Err(ApiError::TooLarge(format!(
                "the environment is {bytes} bytes; at most {} are allowed (--max-env-bytes)",
                self.max_env_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a new alias or cross-account alias past the account's bound.
    pub(crate) fn check_new_alias(&self, snapshot: &Snapshot, account: &AccountName) -> Result<(), ApiError> {
        self.count(
            "aliases",
            account,
            snapshot.alias_count(account),
            self.max_aliases,
            "--max-aliases-per-account",
        )
    }

    /// Refuses when `have` has reached `max`, naming `flag`.
    pub(crate) fn count(
        &self,
        what: &str,
        account: &AccountName,
        have: usize,
        max: usize,
        flag: &str,
    ) -> Result<(), ApiError> {
        if have >= max {
            return Err(ApiError::Conflict(format!(
                "account {account} has {have} {what}, its limit ({flag}); delete some first"
            )));
        }
        Ok(())
    }
}

/// The sled trees, one per kind of record.
#[derive(Clone)]
struct Trees {
    accounts: sled::Tree,
    keys: sled::Tree,
    functions: sled::Tree,
    versions: sled::Tree,
    blobs: sled::Tree,
    blob_owners: sled::Tree,
    meta: sled::Tree,
    aliases: sled::Tree,
    grants: sled::Tree,
    cross_aliases: sled::Tree,
    reservations: sled::Tree,
    /// The next version number of each function name of an account, kept
    /// when the function is deleted so that its numbers are never reused.
    counters: sled::Tree,
}

/// The registry handle shared by the server.
pub struct Registry {
    db: sled::Db,
    kv: Arc<dyn kv::KvBackend>,
    /// Component bytes; who owns which (and its size) is in `blob_owners`.
    blobs: Arc<dyn blobs::BlobStore>,
    trees: Trees,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises writers: sled transactions cannot scan, so deletes scan
    /// first and need nobody else writing in between.
    writer: tokio::sync::Mutex<()>,
    /// What each account may store.
    limits: StorageLimits,
}

fn function_key(account: &AccountName, name: &FunctionName) -> Vec<u8> {
    format!("{account}/{name}").into_bytes()
}

fn version_key(account: &AccountName, name: &FunctionName, number: u32) -> Vec<u8> {
    let mut key = format!("{account}/{name}/").into_bytes();
    key.extend_from_slice(&number.to_be_bytes());
    key
}

fn key_key(account: &AccountName, id: &str) -> Vec<u8> {
    format!("{account}/{id}").into_bytes()
}

fn abort(err: ApiError) -> ConflictableTransactionError<ApiError> {
    ConflictableTransactionError::Abort(err)
}

fn tx_error(err: TransactionError<ApiError>) -> ApiError {
    match err {
        TransactionError::Abort(err) => err,
        TransactionError::Storage(err) => ApiError::internal(err),
    }
}

impl Registry {
    /// Opens (or creates) the database in `dir` with the default limits.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        Self::open_with(dir, StorageLimits::default())
    }

    /// Opens (or creates) the database in `dir` and loads the first snapshot;
    /// accounts may store what `limits` allow.
    pub fn open_with(dir: &Path, limits: StorageLimits) -> Result<Self, OpenError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir.join("registry"))
            // The hot path reads the in-memory snapshot, not sled; a small
            // page cache keeps stored components from filling memory (sled's
            // default is 1 GiB).
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(|source| OpenError::Sled {
                path: path.clone(),
                source,
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| OpenError::Sled {
                path: path.clone(),
                source,
            })
        };
        let trees = Trees {
            accounts: tree("accounts")?,
            keys: tree("keys")?,
            functions: tree("functions")?,
            versions: tree("versions")?,
            blobs: tree("blobs")?,
            blob_owners: tree("blob_owners")?,
            meta: tree("meta")?,
            aliases: tree("aliases")?,
            grants: tree("grants")?,
            cross_aliases: tree("cross_aliases")?,
            reservations: tree("reservations")?,
            counters: tree("version_counters")?,
        };
        assign_ids(&db, &trees).map_err(|source| OpenError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let kv = Arc::new(kv::Kv::open(&db, limits.kv.clone()).map_err(|source| OpenError::Sled {
            path: path.clone(),
            source,
        })?);
        let store = blobs::FsBlobStore::open(&dir.join("blobs"))?;
        move_blobs_out_of_sled(&trees.blobs, &store).map_err(|source| OpenError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let snapshot = build_snapshot(&trees).map_err(|source| OpenError::Corrupt { path, source })?;
        Ok(Self {
            db,
            kv,
            blobs: Arc::new(store),
            trees,
            snapshot: RwLock::new(Arc::new(snapshot)),
            writer: tokio::sync::Mutex::new(()),
            limits,
        })
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
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Flushes, rebuilds and swaps the snapshot; called with the writer lock held.
    /// Makes a write durable, then swaps in a snapshot in which the
    /// accounts it touched are read again from the store. The new snapshot
    /// shares everything else with the old one: a write costs what it
    /// changed, not the size of the registry.
    async fn commit(&self, touched: &[&AccountName]) -> Result<(), ApiError> {
        flush(&self.db).await.map_err(ApiError::internal)?;
        let mut next = Snapshot::clone(&self.snapshot());
        for account in touched {
            unload_account(&mut next, account);
            load_account(&self.trees, &mut next, account).map_err(ApiError::Internal)?;
        }
        let snapshot = Arc::new(next);
        match self.snapshot.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        Ok(())
    }

    /// Reads a value from the host's metadata tree.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        Ok(self
            .trees
            .meta
            .get(key)
            .map_err(ApiError::internal)?
            .map(|v| v.to_vec()))
    }

    /// Writes a value to the host's metadata tree, durably.
    pub async fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        self.trees.meta.insert(key, value).map_err(ApiError::internal)?;
        flush(&self.db).await.map_err(ApiError::internal)?;
        Ok(())
    }

    /// Creates an account and its first key.
    pub async fn create_account(&self, name: &AccountName) -> Result<(AccountRecord, AccountKey), ApiError> {
        let _w = self.writer.lock().await;
        let account = AccountRecord {
            name: name.clone(),
            id: records::new_id(),
            created_at: now(),
        };
        let key = keys::generate(name);
        let key_record = key_record(&key, name);
        let t = &self.trees;
        (&t.accounts, &t.keys)
            .transaction(|(accounts, keys)| {
                if accounts.get(name.as_str())?.is_some() {
                    return Err(abort(ApiError::Conflict(format!("account {name} already exists"))));
                }
                accounts.insert(name.as_str(), encode(&account))?;
                keys.insert(key_key(name, &key_record.id), encode(&key_record))?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit(&[name]).await?;
        Ok((account, key))
    }

    /// Deletes an account with everything it owns; its keys stop working at once.
    pub async fn delete_account(&self, name: &AccountName) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let t = &self.trees;
        if t.accounts.get(name.as_str()).map_err(ApiError::internal)?.is_none() {
            return Err(ApiError::NotFound(format!("no account {name}")));
        }
        let prefix = format!("{name}/");
        let scan = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, ApiError> {
            tree.scan_prefix(&prefix)
                .keys()
                .collect::<Result<_, _>>()
                .map_err(ApiError::internal)
        };
        let account_id = self.snapshot().account_id(name).unwrap_or_default().to_string();
        let key_keys = scan(&t.keys)?;
        let function_keys = scan(&t.functions)?;
        for k in scan(&t.counters)? {
            t.counters.remove(k).map_err(ApiError::internal)?;
        }
        let version_keys = scan(&t.versions)?;
        let alias_keys = scan(&t.aliases)?;
        for k in scan(&t.reservations)? {
            t.reservations.remove(k).map_err(ApiError::internal)?;
        }
        // Grants it gave and cross-aliases it holds are under its name;
        // grants it received and aliases of others pointing at it are not.
        let snapshot = self.snapshot();
        let mut grant_keys = scan(&t.grants)?;
        grant_keys.extend(
            snapshot
                .grants
                .values()
                .flat_map(|g| g.values())
                .filter(|g| &g.grantee == name)
                .map(|g| sled::IVec::from(grants::grant_key(&g.owner, &g.function, &g.grantee))),
        );
        let mut cross_keys = scan(&t.cross_aliases)?;
        cross_keys.extend(
            snapshot
                .cross_aliases
                .values()
                .flat_map(|c| c.values())
                .filter(|c| &c.owner == name)
                .map(|c| sled::IVec::from(grants::cross_alias_key(&c.account, &c.name))),
        );
        // Accounts holding records that go with this one: the owners of
        // grants it received, the holders of cross-account aliases to it.
        let mut touched: Vec<AccountName> = vec![name.clone()];
        touched.extend(
            snapshot
                .grants
                .values()
                .flat_map(|g| g.values())
                .filter(|g| &g.grantee == name)
                .map(|g| g.owner.clone()),
        );
        touched.extend(
            snapshot
                .cross_aliases
                .values()
                .flat_map(|c| c.values())
                .filter(|c| &c.owner == name)
                .map(|c| c.account.clone()),
        );
        touched.sort();
        touched.dedup();
        let mut owned_blobs = Vec::new();
        for item in t.blob_owners.iter().keys() {
            let key = item.map_err(ApiError::internal)?;
            if key.ends_with(format!("/{name}").as_bytes()) {
                owned_blobs.push(key);
            }
        }
        let trees = (
            &t.accounts,
            &t.keys,
            &t.functions,
            &t.versions,
            &t.blob_owners,
            &t.aliases,
            &t.grants,
            &t.cross_aliases,
        );
        trees
            .transaction(
                |(accounts, keys, functions, versions, owners, aliases, grants, cross_aliases)| {
                    accounts.remove(name.as_str())?;
                    for k in &grant_keys {
                        grants.remove(k)?;
                    }
                    for k in &cross_keys {
                        cross_aliases.remove(k)?;
                    }
                    for k in &alias_keys {
                        aliases.remove(k)?;
                    }
                    for k in &key_keys {
                        keys.remove(k)?;
                    }
                    for k in &function_keys {
                        functions.remove(k)?;
                    }
                    for k in &version_keys {
                        versions.remove(k)?;
                    }
                    for k in &owned_blobs {
                        owners.remove(k)?;
                    }
                    Ok(())
                },
            )
            .map_err(tx_error)?;
        self.collect_unowned_blobs()?;
        // Its data as an owner and as a caller of other accounts' functions:
        // an account that takes the name later starts with nothing.
        self.kv.drop_account(&account_id).map_err(ApiError::internal)?;
        self.commit(&touched.iter().collect::<Vec<_>>()).await
    }

    /// Removes blobs no account refers to any more (also those a crash
    /// left stored without their owner's record).
    fn collect_unowned_blobs(&self) -> Result<(), ApiError> {
        for sha in self.blobs.list().map_err(ApiError::internal)? {
            let prefix = format!("{sha}/");
            if self.trees.blob_owners.scan_prefix(prefix.as_bytes()).next().is_none() {
                self.blobs.remove(&sha).map_err(ApiError::internal)?;
            }
        }
        Ok(())
    }

    /// Every account.
    pub fn list_accounts(&self) -> Vec<AccountRecord> {
        let mut accounts: Vec<_> = self.snapshot().accounts.values().cloned().collect();
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        accounts
    }

    /// Adds a key to an account.
    pub async fn create_key(&self, account: &AccountName) -> Result<(KeyRecord, AccountKey), ApiError> {
        let _w = self.writer.lock().await;
        let have = self.snapshot().key_ids.get(account).map_or(0, |ids| ids.len());
        self.limits
            .count("keys", account, have, self.limits.max_keys, "--max-keys-per-account")?;
        let key = keys::generate(account);
        let record = key_record(&key, account);
        let t = &self.trees;
        (&t.accounts, &t.keys)
            .transaction(|(accounts, keys)| {
                if accounts.get(account.as_str())?.is_none() {
                    return Err(abort(ApiError::NotFound(format!("no account {account}"))));
                }
                keys.insert(key_key(account, &record.id), encode(&record))?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.commit(&[account]).await?;
        Ok((record, key))
    }

    /// Revokes a key; calls with it fail from the next request on.
    pub async fn revoke_key(&self, account: &AccountName, id: &str) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let removed = self
            .trees
            .keys
            .remove(key_key(account, id))
            .map_err(ApiError::internal)?;
        if removed.is_none() {
            return Err(ApiError::NotFound(format!("account {account} has no key {id}")));
        }
        self.commit(&[account]).await
    }

    /// The keys of an account (never their secrets).
    pub fn list_keys(&self, account: &AccountName) -> Vec<KeyRecord> {
        let mut keys: Vec<_> = self
            .snapshot()
            .keys
            .values()
            .filter(|k| &k.account == account)
            .cloned()
            .collect();
        keys.sort_by_key(|k| (k.created_at, k.id.clone()));
        keys
    }

    /// Stores a component for `account`. Identical bytes are stored once; the
    /// result says whether `account` had not uploaded them before (whether
    /// another account has is not the uploader's to learn).
    pub async fn put_blob(&self, account: &AccountName, sha256: &str, bytes: &[u8]) -> Result<bool, ApiError> {
        let _w = self.writer.lock().await;
        let t = &self.trees;
        let owner_key = format!("{sha256}/{account}");
        if t.blob_owners.get(&owner_key).map_err(ApiError::internal)?.is_none() {
            let stored = self.blob_bytes_of(account)?;
            let max = self.limits.max_blob_bytes;
            if stored + bytes.len() as u64 > max {
                return Err(ApiError::TooLarge(format!(
                    "account {account} stores {stored} bytes of components; this one would take it past its limit of {max} (--max-blob-bytes-per-account); delete versions it no longer needs"
                )));
            }
        }
        // The bytes first, durably: an owner record never points at a blob
        // that is not there (a crash in between leaves an unowned blob,
        // which the next collection removes).
        let store = self.blobs.clone();
        let (sha, data) = (sha256.to_string(), bytes.to_vec());
        tokio::task::spawn_blocking(move || store.put(&sha, &data))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        let created = t
            .blob_owners
            .get(owner_key.as_bytes())
            .map_err(ApiError::internal)?
            .is_none();
        // When, and how large: the account's stored bytes are then summed
        // without reading any component.
        let mut owned = now().to_be_bytes().to_vec();
        owned.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        t.blob_owners
            .insert(owner_key.as_bytes(), owned)
            .map_err(ApiError::internal)?;
        flush(&self.db).await.map_err(ApiError::internal)?;
        Ok(created)
    }

    /// Bytes of the components `account` has stored.
    fn blob_bytes_of(&self, account: &AccountName) -> Result<u64, ApiError> {
        let suffix = format!("/{account}");
        let mut total = 0;
        for item in self.trees.blob_owners.iter() {
            let (key, owned) = item.map_err(ApiError::internal)?;
            let Some(sha) = key.strip_suffix(suffix.as_bytes()) else {
                continue;
            };
            total += match owned.get(8..16) {
                Some(size) => u64::from_be_bytes(size.try_into().unwrap_or_default()),
                // Recorded before sizes were: the stored file's length.
                None => {
                    let sha = String::from_utf8_lossy(sha);
                    self.blobs.size(&sha).map_err(ApiError::internal)?.unwrap_or(0)
                }
            };
        }
        Ok(total)
    }

    /// Gives up `account`'s ownership of the blobs in `shas` that none of
    /// its versions uses any more, and removes blobs no account owns: a
    /// deleted version's code does not count against its account.
    fn release_blobs(&self, account: &AccountName, shas: &[String]) -> Result<(), ApiError> {
        let snapshot = self.snapshot();
        let in_use: std::collections::HashSet<&str> = snapshot
            .functions_of(account)
            .flat_map(|f| f.versions.values().map(|v| v.sha256.as_str()))
            .collect();
        for sha in shas.iter().filter(|sha| !in_use.contains(sha.as_str())) {
            self.trees
                .blob_owners
                .remove(format!("{sha}/{account}"))
                .map_err(ApiError::internal)?;
        }
        self.collect_unowned_blobs()
    }

    /// The size of component `sha256`, if `account` uploaded it; nothing
    /// is read but the owner's record.
    pub fn blob_size_for(&self, account: &AccountName, sha256: &str) -> Result<Option<u64>, ApiError> {
        let owner_key = format!("{sha256}/{account}");
        let Some(owned) = self.trees.blob_owners.get(owner_key).map_err(ApiError::internal)? else {
            return Ok(None);
        };
        match owned.get(8..16) {
            Some(size) => Ok(Some(u64::from_be_bytes(size.try_into().unwrap_or_default()))),
            None => self.blobs.size(sha256).map_err(ApiError::internal),
        }
    }

    /// The component bytes of `sha256`, checked against it, for compiling
    /// a version that refers to them.
    pub fn blob(&self, sha256: &str) -> Result<Option<bytes::Bytes>, ApiError> {
        self.blobs.get(sha256).map_err(ApiError::internal)
    }

    /// Records a new version in state `Compiling`, creating the function if needed.
    pub async fn create_version(
        &self,
        account: &AccountName,
        function: &FunctionName,
        sha256: &str,
        size: u64,
        config: VersionConfig,
    ) -> Result<VersionRecord, ApiError> {
        let _w = self.writer.lock().await;
        self.limits.check_env(&config.env)?;
        let snapshot = self.snapshot();
        let versions: usize = snapshot.functions_of(account).map(|f| f.versions.len()).sum();
        self.limits.count(
            "versions",
            account,
            versions,
            self.limits.max_versions,
            "--max-versions-per-account",
        )?;
        if snapshot.function(account, function).is_none() {
            let functions = snapshot.functions_of(account).count();
            self.limits.count(
                "functions",
                account,
                functions,
                self.limits.max_functions,
                "--max-functions-per-account",
            )?;
        }
        if snapshot.cross_alias(account, function).is_some() {
            return Err(ApiError::Conflict(format!(
                "{function} is one of your cross-account aliases; functions and cross-account aliases share one namespace"
            )));
        }
        let t = &self.trees;
        let fkey = function_key(account, function);
        let version = (&t.accounts, &t.functions, &t.versions, &t.counters)
            .transaction(|(accounts, functions, versions, counters)| {
                let Some(owner) = accounts.get(account.as_str())? else {
                    return Err(abort(ApiError::NotFound(format!("no account {account}"))));
                };
                let owner: AccountRecord = decode(&owner).map_err(|e| abort(ApiError::Internal(e)))?;
                let mut record = match functions.get(&fkey)? {
                    Some(bytes) => decode::<FunctionRecord>(&bytes).map_err(|e| abort(ApiError::Internal(e)))?,
                    None if !crate::names::fits_host_label(function.as_str()) => {
                        return Err(abort(ApiError::BadRequest(format!(
                            "function names may not contain `--`, which separates function and account in host names ({function})"
                        ))));
                    }
                    // A name deployed again continues the numbering of the
                    // function it had before.
                    None => FunctionRecord {
                        account: account.clone(),
                        name: function.clone(),
                        created_at: now(),
                        next_version: counters.get(&fkey)?.map_or(1, |n| read_counter(&n)),
                    },
                };
                let version = VersionRecord {
                    id: records::new_id(),
                    account_id: owner.id,
                    account: account.clone(),
                    function: function.clone(),
                    number: record.next_version,
                    sha256: sha256.to_string(),
                    size,
                    config: config.clone(),
                    state: VersionState::Compiling,
                    created_at: now(),
                    compile_ms: None,
                };
                record.next_version += 1;
                counters.insert(fkey.as_slice(), &record.next_version.to_be_bytes()[..])?;
                functions.insert(fkey.as_slice(), encode(&record))?;
                versions.insert(version_key(account, function, version.number), encode(&version))?;
                Ok(version)
            })
            .map_err(tx_error)?;
        self.commit(&[account]).await?;
        Ok(version)
    }

    /// Records the outcome of compiling a version; `latest` follows from it.
    pub async fn finish_version(
        &self,
        account: &AccountName,
        function: &FunctionName,
        number: u32,
        state: VersionState,
        compile_ms: Option<u64>,
    ) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let key = version_key(account, function, number);
        let Some(bytes) = self.trees.versions.get(&key).map_err(ApiError::internal)? else {
            // Deleted while compiling: nothing left to update.
            return Ok(());
        };
        let mut record: VersionRecord = decode(&bytes).map_err(ApiError::Internal)?;
        record.state = state;
        record.compile_ms = compile_ms;
        self.trees
            .versions
            .insert(key, encode(&record))
            .map_err(ApiError::internal)?;
        self.commit(&[account]).await
    }

    /// Deletes one version.
    pub async fn delete_version(
        &self,
        account: &AccountName,
        function: &FunctionName,
        number: u32,
    ) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        if let Some(entry) = self.snapshot().function(account, function) {
            let users: Vec<&str> = entry
                .aliases
                .values()
                .filter(|a| a.record.version == number || a.record.weight.is_some_and(|w| w.version == number))
                .map(|a| a.record.name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "version {number} of {function} is used by alias {}; re-point or delete it first",
                    users.join(", ")
                )));
            }
        }
        let snapshot = self.snapshot();
        let mut cross = snapshot
            .cross_aliases_to(account, function)
            .filter(|c| snapshot::target_qualifier(c) == crate::names::Qualifier::Version(number));
        if let Some(user) = cross.next() {
            return Err(ApiError::Conflict(format!(
                "version {number} of {function} is the target of account {}'s alias {}",
                user.account, user.name
            )));
        }
        let removed = self
            .trees
            .versions
            .remove(version_key(account, function, number))
            .map_err(ApiError::internal)?;
        let Some(removed) = removed else {
            return Err(ApiError::NotFound(format!(
                "function {function} has no version {number}"
            )));
        };
        self.commit(&[account]).await?;
        let record: VersionRecord = decode(&removed).map_err(ApiError::Internal)?;
        self.release_blobs(account, &[record.sha256])?;
        flush(&self.db).await.map_err(ApiError::internal)
    }

    /// Deletes a function with all its versions. Aliases referring to it
    /// make this a 409 unless `force`, which removes them in the same
    /// transaction.
    pub async fn delete_function(
        &self,
        account: &AccountName,
        function: &FunctionName,
        force: bool,
    ) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let t = &self.trees;
        let fkey = function_key(account, function);
        let mut prefix = fkey.clone();
        prefix.push(b'/');
        let scan = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, ApiError> {
            tree.scan_prefix(&prefix)
                .keys()
                .collect::<Result<_, _>>()
                .map_err(ApiError::internal)
        };
        let version_keys = scan(&t.versions)?;
        let alias_keys = scan(&t.aliases)?;
        let grant_keys = scan(&t.grants)?;
        let reservation_keys = scan(&t.reservations)?;
        let snapshot = self.snapshot();
        let cross_keys: Vec<Vec<u8>> = snapshot
            .cross_aliases_to(account, function)
            .map(|c| grants::cross_alias_key(&c.account, &c.name))
            .collect();
        // The accounts whose cross-account aliases a forced delete removes.
        let mut touched: Vec<AccountName> = snapshot
            .cross_aliases_to(account, function)
            .map(|c| c.account.clone())
            .collect();
        touched.push(account.clone());
        touched.dedup();
        if !force {
            let mut uses = Vec::new();
            if !alias_keys.is_empty() {
                uses.push(format!("{} alias(es)", alias_keys.len()));
            }
            if !grant_keys.is_empty() {
                uses.push(format!("{} grant(s)", grant_keys.len()));
            }
            if !cross_keys.is_empty() {
                uses.push(format!("{} cross-account alias(es)", cross_keys.len()));
            }
            if !uses.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "function {function} is referred to by {}; remove them first, or force the delete",
                    uses.join(", ")
                )));
            }
        }
        (&t.functions, &t.versions, &t.aliases, &t.grants, &t.cross_aliases)
            .transaction(|(functions, versions, aliases, grants, cross_aliases)| {
                if functions.remove(fkey.as_slice())?.is_none() {
                    return Err(abort(ApiError::NotFound(format!("no function {function}"))));
                }
                for k in &version_keys {
                    versions.remove(k)?;
                }
                for k in &alias_keys {
                    aliases.remove(k)?;
                }
                for k in &grant_keys {
                    grants.remove(k)?;
                }
                for k in &cross_keys {
                    cross_aliases.remove(k.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_error)?;
        // Reservations are capacity settings, not references: they go with
        // the function.
        for k in &reservation_keys {
            t.reservations.remove(k).map_err(ApiError::internal)?;
        }
        self.commit(&touched.iter().collect::<Vec<_>>()).await?;
        let shas: Vec<String> = snapshot
            .function(account, function)
            .map(|f| f.versions.values().map(|v| v.sha256.clone()).collect())
            .unwrap_or_default();
        self.release_blobs(account, &shas)?;
        flush(&self.db).await.map_err(ApiError::internal)
    }

    /// Flushes everything to disk; used at shutdown.
    pub async fn flush(&self) -> Result<(), ApiError> {
        flush(&self.db).await.map_err(ApiError::internal)
    }
}

/// Flushes `db` to disk without blocking the async workers.
///
/// sled 0.34's `flush_async` can deadlock when several flushes are pending at
/// once (sled issue #1308), so the blocking flush runs on the blocking pool.
pub async fn flush(db: &sled::Db) -> sled::Result<()> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(result) => result.map(|_| ()),
        Err(join) => Err(sled::Error::ReportableBug(format!("flush task failed: {join}"))),
    }
}

fn read_counter(bytes: &[u8]) -> u32 {
    let mut be = [0u8; 4];
    be.copy_from_slice(&bytes[..4.min(bytes.len())]);
    u32::from_be_bytes(be).max(1)
}

/// Gives records written before ids existed their ids, once, when the
/// database is opened: accounts and versions get fresh random ids, and KV
/// data moves from name-keyed namespaces to id-keyed ones. KV data whose
/// owner or caller account no longer exists is what a deleted account left
/// behind; it is dropped rather than handed to whoever takes the name.
fn assign_ids(db: &sled::Db, trees: &Trees) -> anyhow::Result<()> {
    let mut ids = std::collections::HashMap::new();
    for item in trees.accounts.iter() {
        let (key, value) = item?;
        let mut record: AccountRecord = decode(&value)?;
        if record.id.is_empty() {
            record.id = records::new_id();
            trees.accounts.insert(key, encode(&record))?;
        }
        ids.insert(record.name.to_string(), record.id);
    }
    for item in trees.versions.iter() {
        let (key, value) = item?;
        let mut record: VersionRecord = decode(&value)?;
        if record.id.is_empty() || record.account_id.is_empty() {
            if record.id.is_empty() {
                record.id = records::new_id();
            }
            record.account_id = ids.get(record.account.as_str()).cloned().unwrap_or_default();
            trees.versions.insert(key, encode(&record))?;
        }
    }
    // Version numbers in use survive a delete of their function from now on.
    for item in trees.functions.iter() {
        let (key, value) = item?;
        let record: FunctionRecord = decode(&value)?;
        if trees.counters.get(&key)?.is_none() {
            trees.counters.insert(key, &record.next_version.to_be_bytes()[..])?;
        }
    }
    const KV_BY_ID: &str = "kv_namespaces_by_id";
    if trees.meta.get(KV_BY_ID)?.is_none() {
        let data = db.open_tree("kv")?;
        let usage = db.open_tree("kv_usage")?;
        // `{owner}/{caller}/{sub}/…` with names becomes the same with ids.
        let rename = |key: &[u8]| -> Option<Vec<u8>> {
            let text = std::str::from_utf8(key).ok()?;
            let mut parts = text.splitn(3, '/');
            let owner = ids.get(parts.next()?)?;
            let caller = match parts.next()? {
                records::ANONYMOUS => records::ANONYMOUS,
                name => ids.get(name)?.as_str(),
            };
            Some(format!("{owner}/{caller}/{}", parts.next()?).into_bytes())
        };
        // Read first: a sled transaction cannot scan, and iterating a tree
        // inside a transaction on it deadlocks.
        let entries = |tree: &sled::Tree| -> sled::Result<Vec<(sled::IVec, sled::IVec)>> { tree.iter().collect() };
        let (old_data, old_usage) = (entries(&data)?, entries(&usage)?);
        (&data, &usage, &trees.meta)
            .transaction(|(tx_data, tx_usage, meta)| {
                for (tx, old) in [(tx_data, &old_data), (tx_usage, &old_usage)] {
                    for (key, value) in old {
                        tx.remove(key)?;
                        if let Some(renamed) = rename(key) {
                            tx.insert(renamed, value)?;
                        }
                    }
                }
                meta.insert(KV_BY_ID, &[1u8][..])?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| anyhow::anyhow!("moving KV data to id-keyed namespaces failed: {e:?}"))?;
    }
    db.flush()?;
    Ok(())
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The whole snapshot, account by account (once, when the registry opens).
fn build_snapshot(trees: &Trees) -> anyhow::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    for item in trees.accounts.iter() {
        let (_, value) = item?;
        let record: AccountRecord = decode(&value)?;
        load_account(trees, &mut snapshot, &record.name)?;
    }
    Ok(snapshot)
}

/// Reads everything stored under `account` into `snapshot`, which holds
/// nothing of it yet: its record, keys, functions with their versions and
/// aliases, the grants it gave, its cross-account aliases and reservations.
/// Every record of an account is keyed under `{account}/`, so this reads
/// that account's records and no others.
fn load_account(trees: &Trees, snapshot: &mut Snapshot, account: &AccountName) -> anyhow::Result<()> {
    let Some(value) = trees.accounts.get(account.as_str())? else {
        return Ok(());
    };
    let record: AccountRecord = decode(&value)?;
    snapshot.accounts.insert(record.name.clone(), record);
    let prefix = format!("{account}/");
    let scan = |tree: &sled::Tree| tree.scan_prefix(prefix.as_bytes()).values();
    let mut owned = snapshot::Owned::default();
    for value in scan(&trees.keys) {
        let record: KeyRecord = decode(&value?)?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&record.hash, &mut hash)?;
        snapshot
            .key_ids
            .get_or_default(record.account.clone())
            .insert(record.id.clone());
        owned.key_hashes.push(hash);
        snapshot.keys.insert(hash, record);
    }
    let mut functions: BTreeMap<FunctionName, FunctionEntry> = BTreeMap::new();
    for value in scan(&trees.functions) {
        let record: FunctionRecord = decode(&value?)?;
        functions.insert(
            record.name.clone(),
            FunctionEntry {
                record,
                versions: Default::default(),
                latest: None,
                public: false,
                aliases: Default::default(),
            },
        );
    }
    for value in scan(&trees.versions) {
        let record: VersionRecord = decode(&value?)?;
        if let Some(entry) = functions.get_mut(&record.function) {
            if record.state == VersionState::Ready {
                entry.public |= record.config.public;
                if entry.latest.is_none_or(|n| n < record.number) {
                    entry.latest = Some(record.number);
                }
            }
            entry.versions.insert(record.number, Arc::new(record));
        }
    }
    for value in scan(&trees.aliases) {
        let record: AliasRecord = decode(&value?)?;
        if let Some(entry) = functions.get_mut(&record.function) {
            // Each target as seen through the alias, built once here rather
            // than on every call.
            let through = |number: u32| {
                entry
                    .versions
                    .get(&number)
                    .filter(|v| v.state == VersionState::Ready)
                    .map(|v| {
                        Arc::new(VersionRecord {
                            config: record.overrides.apply(&v.config),
                            ..v.as_ref().clone()
                        })
                    })
            };
            let main = through(record.version);
            let minor = record.weight.and_then(|w| through(w.version).map(|v| (w.percent, v)));
            entry.aliases.insert(
                record.name.clone(),
                snapshot::AliasEntry {
                    record: Arc::new(record),
                    main,
                    minor,
                },
            );
        }
    }
    if !functions.is_empty() {
        snapshot.functions.insert(account.clone(), functions);
    }
    for value in scan(&trees.grants) {
        let record: GrantRecord = decode(&value?)?;
        let key = (record.owner.clone(), record.function.clone());
        if !owned.grant_functions.contains(&record.function) {
            owned.grant_functions.push(record.function.clone());
        }
        snapshot
            .grants
            .get_or_default(key)
            .insert(record.grantee.clone(), Arc::new(record));
    }
    let mut cross = BTreeMap::new();
    for value in scan(&trees.cross_aliases) {
        let record: CrossAliasRecord = decode(&value?)?;
        cross.insert(record.name.clone(), Arc::new(record));
    }
    if !cross.is_empty() {
        snapshot.cross_aliases.insert(account.clone(), cross);
    }
    for value in scan(&trees.reservations) {
        let record: ReservationRecord = decode(&value?)?;
        let qualifier = record.qualifier.clone().unwrap_or_else(|| "latest".into());
        let key = (record.account.clone(), record.function.clone(), qualifier);
        owned.reservations.push(key.clone());
        snapshot.reservations.insert(key, Arc::new(record));
    }
    snapshot.owned.insert(account.clone(), owned);
    Ok(())
}

/// Takes everything of `account` out of `snapshot` (what [`load_account`]
/// put in).
fn unload_account(snapshot: &mut Snapshot, account: &AccountName) {
    snapshot.accounts.remove(account);
    snapshot.key_ids.remove(account);
    snapshot.functions.remove(account);
    snapshot.cross_aliases.remove(account);
    if let Some(owned) = snapshot.owned.remove(account) {
        for hash in &owned.key_hashes {
            snapshot.keys.remove(hash);
        }
        for function in owned.grant_functions {
            snapshot.grants.remove(&(account.clone(), function));
        }
        for key in &owned.reservations {
            snapshot.reservations.remove(key);
        }
    }
}

/// Moves components stored in the database (before the blob store) into
/// `store`, each checked against its address, and empties the tree. Safe to
/// repeat after a crash: a blob is removed from the tree only once stored.
fn move_blobs_out_of_sled(tree: &sled::Tree, store: &dyn blobs::BlobStore) -> anyhow::Result<()> {
    use sha2::Digest as _;
    for item in tree.iter() {
        let (sha, bytes) = item?;
        let sha = String::from_utf8_lossy(&sha).into_owned();
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        anyhow::ensure!(actual == sha, "the stored component {sha} hashes to {actual}");
        store.put(&sha, &bytes)?;
        tree.remove(sha.as_bytes())?;
    }
    tree.flush()?;
    Ok(())
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
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        Registry::meta(self, key)
    }

    async fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), ApiError> {
        Registry::set_meta(self, key, value).await
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
            (a, keys, grants, reservations)
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
        let registry = Registry::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let check = |registry: &Registry, step: &str| {
            let full = build_snapshot(&registry.trees).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(canonical(&registry.snapshot()), canonical(&full), "after {step}");
        };
        let ok = |r: Result<(), ApiError>| r.unwrap_or_else(|e| panic!("{e}"));
        let (acme, globex, hello) = (name("acme"), name("globex"), function("hello"));
        registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
        registry.create_account(&globex).await.unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "creating accounts");
        let (key, _) = registry.create_key(&acme).await.unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "creating a key");
        let sha = "ab".repeat(32);
        for _ in 0..2 {
            let v = registry
                .create_version(&acme, &hello, &sha, 10, config())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            check(&registry, "creating a version");
            ok(registry
                .finish_version(&acme, &hello, v.number, VersionState::Ready, Some(1))
                .await);
            check(&registry, "finishing a version");
        }
        let prod = alias_prod(&registry).await;
        check(&registry, "an alias");
        registry
            .put_grant(&acme, &hello, &globex, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        check(&registry, "a grant");
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
        check(&registry, "a cross-account alias");
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
        check(&registry, "a reservation");
        ok(registry.revoke_key(&acme, &key.id).await);
        check(&registry, "revoking a key");
        ok(registry
            .delete_alias(&acme, &hello, &prod)
            .await
            .map(drop)
            .or_else(|e| match e {
                // The cross-account alias uses it: refused, and nothing changes.
                ApiError::Conflict(_) => Ok(()),
                other => Err(other),
            }));
        check(&registry, "refusing to delete a used alias");
        ok(registry.delete_function(&acme, &hello, true).await);
        check(
            &registry,
            "a forced function delete (another account's alias goes with it)",
        );
        ok(registry.delete_account(&acme).await);
        check(&registry, "deleting an account");
        ok(registry.delete_account(&globex).await);
        check(&registry, "deleting the last account");
        assert_eq!(registry.snapshot().accounts.len(), 0);
    }

    /// A registry with `acme/hello`: version 1 ready (public as `public`),
    /// version 2 still compiling, version 3 failed.
    async fn with_versions(public: bool) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
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
