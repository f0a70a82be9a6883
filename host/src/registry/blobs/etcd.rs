//! The [`BlobStore`] of a cluster: components in etcd, in chunks.
//!
//! etcd refuses a request over 1.5 MiB, so a blob is stored as chunks of at
//! most [`CHUNK`] bytes (`{prefix}{sha}/c/{i}`) followed by its manifest
//! (`{prefix}{sha}/m`: size, chunk count, when it was stored). The manifest
//! is written last and removed first, together with the chunks, in one
//! transaction: a blob with a manifest is whole. Every read is checked
//! against the address. While an upload writes the chunks, `{prefix}{sha}/p`
//! says since when; the chunks of an upload a crash (or a full etcd) cut
//! short are found by it and collected once it is older than [`GRACE`].
//!
//! Several nodes share the store, so a node that finds a blob no account
//! owns cannot tell whether an upload on another node is about to record its
//! owner. A blob stored (or stored again) within [`GRACE`] is therefore kept;
//! a removal compares the manifest it read, so a blob stored again meanwhile
//! stays.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{BlobError, BlobStore, check_address, verified};

/// The largest chunk, well under etcd's request limit.
pub const CHUNK: usize = 1024 * 1024;

/// How long a freshly stored blob is kept even when no one owns it: an
/// upload records its owner within moments of storing the bytes.
pub const GRACE: Duration = Duration::from_secs(600);

/// Components in etcd under one key prefix.
#[derive(Clone)]
pub struct EtcdBlobStore {
    client: Client,
    prefix: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    size: u64,
    chunks: u32,
    /// Seconds since the epoch when the blob was last stored.
    stored_at: u64,
}

fn unavailable(err: impl std::fmt::Display) -> BlobError {
    BlobError::Io {
        path: "etcd".into(),
        source: std::io::Error::other(err.to_string()),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl EtcdBlobStore {
    /// The store under `prefix` (e.g. `/stratus/v1/blobs/`).
    pub fn new(client: Client, prefix: String) -> Self {
        Self { client, prefix }
    }

    fn manifest_key(&self, sha256: &str) -> String {
        format!("{}{sha256}/m", self.prefix)
    }

    /// Set while an upload writes the chunks, with when it began.
    fn pending_key(&self, sha256: &str) -> String {
        format!("{}{sha256}/p", self.prefix)
    }

    /// Removes the chunks of an upload cut short (no manifest, pending for
    /// longer than [`GRACE`]).
    async fn remove_abandoned(&self, sha256: &str) -> Result<(), BlobError> {
        let mut client = self.client.clone();
        let pending = client.get(self.pending_key(sha256), None).await.map_err(unavailable)?;
        let Some(mark) = pending.kvs().first() else {
            return Ok(());
        };
        let began: u64 = String::from_utf8_lossy(mark.value()).parse().unwrap_or(0);
        if now().saturating_sub(began) < GRACE.as_secs() {
            return Ok(());
        }
        let txn = Txn::new()
            .when([
                Compare::mod_revision(self.pending_key(sha256), CompareOp::Equal, mark.mod_revision()),
                Compare::create_revision(self.manifest_key(sha256), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::delete(self.pending_key(sha256), None),
                TxnOp::delete(self.chunks_prefix(sha256), Some(DeleteOptions::new().with_prefix())),
            ]);
        client.txn(txn).await.map_err(unavailable)?;
        Ok(())
    }

    fn chunks_prefix(&self, sha256: &str) -> String {
        format!("{}{sha256}/c/", self.prefix)
    }

    fn chunk_key(&self, sha256: &str, index: u32) -> String {
        format!("{}{index:06}", self.chunks_prefix(sha256))
    }

    /// Removes the blob at `sha256` now, however recently stored: for a
    /// store no collection races with (compiled code).
    pub async fn purge(&self, sha256: &str) -> Result<(), BlobError> {
        check_address(sha256)?;
        let txn = Txn::new().and_then([
            TxnOp::delete(self.manifest_key(sha256), None),
            TxnOp::delete(self.chunks_prefix(sha256), Some(DeleteOptions::new().with_prefix())),
        ]);
        self.client.clone().txn(txn).await.map_err(unavailable)?;
        Ok(())
    }

    /// The manifest's bytes and its decoded form, if the blob is stored.
    async fn manifest(&self, sha256: &str) -> Result<Option<(Vec<u8>, Manifest)>, BlobError> {
        let response = self
            .client
            .clone()
            .get(self.manifest_key(sha256), None)
            .await
            .map_err(unavailable)?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let manifest = serde_json::from_slice(kv.value()).map_err(|e| BlobError::Corrupt {
            sha256: sha256.to_string(),
            actual: format!("an unreadable manifest ({e})"),
        })?;
        Ok(Some((kv.value().to_vec(), manifest)))
    }
}

#[async_trait::async_trait]
impl BlobStore for EtcdBlobStore {
    async fn put(&self, sha256: &str, bytes: Bytes) -> Result<(), BlobError> {
        check_address(sha256)?;
        let mut client = self.client.clone();
        let key = self.manifest_key(sha256);
        for _ in 0..16 {
            let fresh = |chunks: u32| {
                serde_json::to_vec(&Manifest {
                    size: bytes.len() as u64,
                    chunks,
                    stored_at: now(),
                })
                .map_err(unavailable)
            };
            match self.manifest(sha256).await? {
                // Stored already: marked stored now, so no collection
                // removes it before the upload records its owner.
                Some((old, manifest)) => {
                    let renewed = fresh(manifest.chunks)?;
                    let txn = Txn::new()
                        .when([Compare::value(key.clone(), CompareOp::Equal, old)])
                        .and_then([TxnOp::put(key.clone(), renewed, None)]);
                    if client.txn(txn).await.map_err(unavailable)?.succeeded() {
                        return Ok(());
                    }
                }
                None => {
                    // Marked pending first: chunks an upload cut short
                    // leaves are found, and collected, by the mark.
                    client
                        .put(self.pending_key(sha256), now().to_string(), None)
                        .await
                        .map_err(unavailable)?;
                    let mut chunks = 0u32;
                    for piece in bytes.chunks(CHUNK) {
                        client
                            .put(self.chunk_key(sha256, chunks), piece.to_vec(), None)
                            .await
                            .map_err(unavailable)?;
                        chunks += 1;
                    }
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([
                            TxnOp::put(key.clone(), fresh(chunks)?, None),
                            TxnOp::delete(self.pending_key(sha256), None),
                        ]);
                    if client.txn(txn).await.map_err(unavailable)?.succeeded() {
                        return Ok(());
                    }
                }
            }
            // Someone stored or removed it meanwhile: look again.
        }
        Err(unavailable(format!(
            "the blob {sha256} kept changing while it was stored"
        )))
    }

    async fn get(&self, sha256: &str) -> Result<Option<Bytes>, BlobError> {
        check_address(sha256)?;
        let Some((_, manifest)) = self.manifest(sha256).await? else {
            return Ok(None);
        };
        let mut client = self.client.clone();
        let mut bytes = BytesMut::with_capacity(manifest.size as usize);
        for index in 0..manifest.chunks {
            let response = client
                .get(self.chunk_key(sha256, index), None)
                .await
                .map_err(unavailable)?;
            let Some(kv) = response.kvs().first() else {
                return Err(BlobError::Corrupt {
                    sha256: sha256.to_string(),
                    actual: format!("nothing: chunk {index} of {} is missing", manifest.chunks),
                });
            };
            bytes.extend_from_slice(kv.value());
        }
        let bytes = bytes.freeze();
        // Hashing tens of MiB runs beside the workers that serve calls.
        let sha = sha256.to_string();
        tokio::task::spawn_blocking(move || verified(&sha, bytes))
            .await
            .map_err(unavailable)?
            .map(Some)
    }

    async fn size(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        check_address(sha256)?;
        Ok(self.manifest(sha256).await?.map(|(_, m)| m.size))
    }

    async fn remove(&self, sha256: &str) -> Result<(), BlobError> {
        check_address(sha256)?;
        let Some((old, manifest)) = self.manifest(sha256).await? else {
            return self.remove_abandoned(sha256).await;
        };
        if now().saturating_sub(manifest.stored_at) < GRACE.as_secs() {
            tracing::debug!(
                sha256,
                "keeping a blob stored moments ago; a later collection removes it"
            );
            return Ok(());
        }
        let key = self.manifest_key(sha256);
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, old)])
            .and_then([
                TxnOp::delete(key, None),
                TxnOp::delete(self.chunks_prefix(sha256), Some(DeleteOptions::new().with_prefix())),
            ]);
        // A compare that fails means it was stored again: it stays.
        self.client.clone().txn(txn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, BlobError> {
        let response = self
            .client
            .clone()
            .get(
                self.prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(unavailable)?;
        // Stored blobs (a manifest), and uploads under way or cut short (a
        // pending mark), which a collection looks at too.
        let mut all: Vec<String> = response
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&self.prefix)?;
                let sha = key.strip_suffix("/m").or_else(|| key.strip_suffix("/p"))?;
                check_address(sha).is_ok().then(|| sha.to_string())
            })
            .collect();
        all.sort();
        all.dedup();
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::registry::store::etcd::tests::TestEtcd;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_etcd_store_keeps_the_contract_in_chunks_and_refuses_corrupt_bytes() {
        let etcd = TestEtcd::start();
        let client = Client::connect([etcd.url.as_str()], None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = EtcdBlobStore::new(client.clone(), "/blobs-test/".into());
        // Removal keeps what was stored within the grace: the contract's
        // removals are checked on a store whose blobs were stored long ago.
        super::super::tests::contract_without_removal(&store).await;

        // A blob over several chunks comes back whole and checked.
        let big: Vec<u8> = (0..(2 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        let address = hex::encode(Sha256::digest(&big));
        store
            .put(&address, Bytes::from(big.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, manifest) = store
            .manifest(&address)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no manifest"));
        assert_eq!((manifest.chunks, manifest.size), (3, big.len() as u64));
        assert_eq!(
            store.get(&address).await.unwrap_or_else(|e| panic!("{e}")).as_deref(),
            Some(big.as_slice())
        );
        // Freshly stored: kept by a removal.
        store.remove(&address).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(store.list().await.unwrap_or_else(|e| panic!("{e}")).contains(&address));

        // A flipped chunk is an error, never code that runs.
        let mut raw = client.clone();
        raw.put(store.chunk_key(&address, 1), vec![0u8; CHUNK], None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(store.get(&address).await, Err(BlobError::Corrupt { .. })));

        // Stored long ago and owned by no one: removed, chunks and all.
        let old = serde_json::to_vec(&Manifest {
            size: manifest.size,
            chunks: manifest.chunks,
            stored_at: now() - GRACE.as_secs() - 1,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        raw.put(store.manifest_key(&address), old, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store.remove(&address).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.get(&address).await.unwrap_or_else(|e| panic!("{e}")), None);
        let left = raw
            .get(
                store.chunks_prefix(&address),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(left.count(), 0, "the chunks went with the manifest");
    }
}
