//! Uploaded components, content-addressed by their SHA-256.
//!
//! [`BlobStore`] is the seam: the registry keeps who owns which blob (and
//! its size) with its other records, and the bytes here. Every read checks
//! the bytes against their address, so a corrupted or tampered file is an
//! error, never code that runs. [`FsBlobStore`] keeps one file per blob
//! beside the database, so components never sit in the database's page
//! cache; [`MemBlobStore`] serves unit tests.

pub mod etcd;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The storage failed.
    #[error("blob store at {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The stored bytes no longer hash to their address.
    #[error("the stored blob {sha256} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The address.
        sha256: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Not a lower-case hex SHA-256.
    #[error("{0:?} is not a blob address")]
    BadAddress(String),
}

/// Content-addressed storage of component bytes.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `sha256`, which the caller has checked; storing
    /// the same address again changes nothing. Durable when it returns.
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), BlobError>;
    /// The bytes at `sha256`, checked against it; `None` if absent.
    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, BlobError>;
    /// The size of the blob at `sha256`, without reading it.
    async fn size(&self, sha256: &str) -> Result<Option<u64>, BlobError>;
    /// Removes the blob at `sha256`, if there is one (a store shared by
    /// several nodes may keep one stored moments ago, which an upload on
    /// another node may be about to own; a later collection removes it).
    async fn remove(&self, sha256: &str) -> Result<(), BlobError>;
    /// Every stored address.
    async fn list(&self) -> Result<Vec<String>, BlobError>;
}

fn check_address(sha256: &str) -> Result<(), BlobError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(BlobError::BadAddress(sha256.to_string()))
    }
}

fn verified(sha256: &str, bytes: Bytes) -> Result<Bytes, BlobError> {
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual == sha256 {
        Ok(bytes)
    } else {
        Err(BlobError::Corrupt {
            sha256: sha256.to_string(),
            actual,
        })
    }
}

/// One file per blob under a directory: `ab/abcdef…`.
#[derive(Clone)]
pub struct FsBlobStore {
    dir: PathBuf,
}

impl FsBlobStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        let store = Self { dir: dir.to_path_buf() };
        std::fs::create_dir_all(dir.join("incoming")).map_err(|e| store.io(dir, e))?;
        // Uploads a crash interrupted: never renamed into place, never read.
        if let Ok(entries) = std::fs::read_dir(dir.join("incoming")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    fn io(&self, path: &Path, source: std::io::Error) -> BlobError {
        BlobError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl FsBlobStore {
    fn put_now(&self, sha256: &str, bytes: &[u8]) -> Result<(), BlobError> {
        check_address(sha256)?;
        let path = self.path(sha256);
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| self.io(&parent, e))?;
        // Written aside, synced, then renamed: a reader sees the whole blob
        // or none, and a crash leaves only a file `open` clears.
        let incoming = self
            .dir
            .join("incoming")
            .join(format!("{sha256}.{}", rand::random::<u64>()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&incoming)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&incoming, &path)?;
            sync_dir(&parent)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&incoming);
            self.io(&path, e)
        })
    }

    fn get_now(&self, sha256: &str) -> Result<Option<Bytes>, BlobError> {
        check_address(sha256)?;
        let path = self.path(sha256);
        match std::fs::read(&path) {
            Ok(bytes) => verified(sha256, Bytes::from(bytes)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn size_now(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        check_address(sha256)?;
        let path = self.path(sha256);
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn remove_now(&self, sha256: &str) -> Result<(), BlobError> {
        check_address(sha256)?;
        let path = self.path(sha256);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn list_now(&self) -> Result<Vec<String>, BlobError> {
        let mut all = Vec::new();
        let shards = std::fs::read_dir(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        for shard in shards {
            let shard = shard.map_err(|e| self.io(&self.dir, e))?;
            if shard.file_name() == "incoming" || !shard.path().is_dir() {
                continue;
            }
            let files = std::fs::read_dir(shard.path()).map_err(|e| self.io(&shard.path(), e))?;
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if check_address(&name).is_ok() {
                    all.push(name);
                }
            }
        }
        all.sort();
        Ok(all)
    }

    /// Runs a file operation on the blocking pool: reading and hashing tens
    /// of MiB must not stall a worker that serves calls.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|join| BlobError::Io {
                path: self.dir.display().to_string(),
                source: std::io::Error::other(join.to_string()),
            })?
    }
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), BlobError> {
        let sha = sha256.to_string();
        self.blocking(move |this| this.put_now(&sha, &bytes)).await
    }

    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, BlobError> {
        let sha = sha256.to_string();
        self.blocking(move |this| this.get_now(&sha)).await
    }

    async fn size(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        self.size_now(sha256)
    }

    async fn remove(&self, sha256: &str) -> Result<(), BlobError> {
        self.remove_now(sha256)
    }

    async fn list(&self) -> Result<Vec<String>, BlobError> {
        self.blocking(Self::list_now).await
    }
}

/// Blobs in memory, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemBlobStore {
    blobs: std::sync::Mutex<std::collections::BTreeMap<String, Bytes>>,
}

#[cfg(test)]
impl MemBlobStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Bytes>> {
        self.blobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the bytes at `sha256` without any check: a test's stand-in
    /// for a disk that went bad.
    #[cfg(test)]
    fn corrupt(&self, sha256: &str, bytes: &[u8]) {
        self.lock().insert(sha256.to_string(), Bytes::copy_from_slice(bytes));
    }
}

#[cfg(test)]
#[async_trait::async_trait]
impl BlobStore for MemBlobStore {
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), BlobError> {
        check_address(sha256)?;
        self.lock().entry(sha256.to_string()).or_insert(bytes);
        Ok(())
    }

    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, BlobError> {
        check_address(sha256)?;
        let bytes = self.lock().get(sha256).cloned();
        bytes.map(|b| verified(sha256, b)).transpose()
    }

    async fn size(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        check_address(sha256)?;
        Ok(self.lock().get(sha256).map(|b| b.len() as u64))
    }

    async fn remove(&self, sha256: &str) -> Result<(), BlobError> {
        check_address(sha256)?;
        self.lock().remove(sha256);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, BlobError> {
        Ok(self.lock().keys().cloned().collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// What every implementation must do.
    pub(crate) async fn contract(store: &dyn BlobStore) {
        let (sa, sb) = contract_without_removal(store).await;
        store.remove(&sa).await.unwrap_or_else(|e| panic!("{e}"));
        store.remove(&sa).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.get(&sa).await.unwrap_or_else(|e| panic!("{e}")), None);
        assert_eq!(store.list().await.unwrap_or_else(|e| panic!("{e}")), vec![sb]);
    }

    /// The contract but for removal, which a shared store may defer; the
    /// addresses of the two blobs it stored.
    pub(crate) async fn contract_without_removal(store: &dyn BlobStore) -> (String, String) {
        let a = b"component a".as_slice();
        let b = vec![7u8; 300_000];
        let (sa, sb) = (sha(a), sha(&b));
        assert_eq!(store.get(&sa).await.unwrap_or_else(|e| panic!("{e}")), None);
        store
            .put(&sa, Bytes::copy_from_slice(a))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .put(&sa, Bytes::copy_from_slice(a))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .put(&sb, Bytes::copy_from_slice(&b))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.get(&sa).await.unwrap_or_else(|e| panic!("{e}")).as_deref(),
            Some(a)
        );
        assert_eq!(store.size(&sb).await.unwrap_or_else(|e| panic!("{e}")), Some(300_000));
        let mut both = vec![sa.clone(), sb.clone()];
        both.sort();
        assert_eq!(store.list().await.unwrap_or_else(|e| panic!("{e}")), both);
        for bad in ["../../etc/passwd", "ABCDEF", ""] {
            assert!(matches!(store.get(bad).await, Err(BlobError::BadAddress(_))), "{bad}");
            assert!(
                matches!(
                    store.put(bad, Bytes::copy_from_slice(a)).await,
                    Err(BlobError::BadAddress(_))
                ),
                "{bad}"
            );
        }
        (sa, sb)
    }

    #[tokio::test]
    async fn the_file_store_keeps_the_contract_and_refuses_corrupt_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FsBlobStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        contract(&store).await;
        let bytes = b"will rot".as_slice();
        let address = sha(bytes);
        store
            .put(&address, Bytes::copy_from_slice(bytes))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(store.path(&address), b"rotten").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(store.get(&address).await, Err(BlobError::Corrupt { .. })));
        // An upload a crash cut short is cleared on open and never listed.
        std::fs::write(dir.path().join("incoming").join("partial"), b"half").unwrap_or_else(|e| panic!("{e}"));
        let reopened = FsBlobStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!dir.path().join("incoming").join("partial").exists());
        assert!(
            reopened
                .list()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .contains(&address)
        );
    }

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract_and_refuses_corrupt_bytes() {
        let store = MemBlobStore::default();
        contract(&store).await;
        let address = sha(b"fine");
        store.corrupt(&address, b"not fine");
        assert!(matches!(store.get(&address).await, Err(BlobError::Corrupt { .. })));
    }
}
