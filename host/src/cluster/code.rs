//! Compiled components shared across the cluster: an artifact is keyed by
//! the component's SHA-256 and the engine's compatibility hash, so only
//! nodes whose engines would produce the same code share it.
//!
//! `v1/code/{engine}/{sha}` names the artifact's own address; the bytes are
//! in a content-addressed store of their own (`v1/code/artifacts/`, chunked
//! and checked like components, and never collected with them). The first
//! node that needs an artifact compiles it holding the etcd lock
//! `v1/locks/code/{engine}/{sha}` on a lease it renews while it compiles; a
//! node killed meanwhile loses the lock when the lease runs out.
//!
//! Whoever can write to etcd can thus hand every node native code to run:
//! etcd is part of the trusted base, reached over TLS with credentials.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, LockOptions};
use sha2::{Digest, Sha256};

use super::ClusterConfig;
use crate::registry::blobs::BlobStore as _;
use crate::registry::blobs::etcd::EtcdBlobStore;
use crate::runtime::SharedCode;

/// How long a compile lock outlives its holder's last renewal.
const LOCK_TTL: Duration = Duration::from_secs(10);

/// The cluster's compiled components for one engine.
pub struct EtcdCode {
    client: Client,
    /// `v1/code/{engine}/`.
    pointers: String,
    /// `v1/locks/code/{engine}/`.
    locks: String,
    artifacts: EtcdBlobStore,
    /// How long a node waits for another's compile before compiling itself.
    wait: Duration,
}

impl EtcdCode {
    /// The shared code of engines with compatibility hash `engine`; a node
    /// waits at most `wait` (the compile timeout) for another's compile.
    pub fn new(client: Client, cluster: &ClusterConfig, engine: &str, wait: Duration) -> Self {
        Self {
            artifacts: EtcdBlobStore::new(client.clone(), cluster.key("code/artifacts/")),
            pointers: cluster.key(&format!("code/{engine}/")),
            locks: cluster.key(&format!("locks/code/{engine}/")),
            client,
            wait,
        }
    }
}

/// A held compile lock: released (and its lease revoked) when dropped.
struct Held {
    client: Client,
    key: Vec<u8>,
    lease: i64,
    renew: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renew.abort();
        let (mut client, key, lease) = (self.client.clone(), std::mem::take(&mut self.key), self.lease);
        tokio::spawn(async move {
            let _ = client.unlock(key).await;
            let _ = client.lease_revoke(lease).await;
        });
    }
}

async fn renew(mut client: Client, lease: i64) {
    let Ok((mut keeper, mut answers)) = client.lease_keep_alive(lease).await else {
        return;
    };
    loop {
        if keeper.keep_alive().await.is_err() || answers.message().await.is_err() {
            return;
        }
        tokio::time::sleep(LOCK_TTL / 3).await;
    }
}

#[async_trait::async_trait]
impl SharedCode for EtcdCode {
    async fn fetch(&self, sha256: &str, path: &Path) -> bool {
        let pointer = match self
            .client
            .clone()
            .get(format!("{}{sha256}", self.pointers), None)
            .await
        {
            Ok(answer) => answer
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            Err(err) => {
                tracing::warn!(%err, sha256, "cannot ask the cluster for a compiled component");
                return false;
            }
        };
        let Some(address) = pointer else { return false };
        let bytes = match self.artifacts.get(&address).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return false,
            Err(err) => {
                tracing::warn!(%err, sha256, "the cluster's compiled component cannot be read");
                return false;
            }
        };
        // Written aside and renamed: a reader sees all of it or nothing.
        let aside = path.with_extension(format!("fetch.{}", rand::random::<u64>()));
        let written = tokio::fs::write(&aside, &bytes)
            .await
            .and(tokio::fs::rename(&aside, path).await);
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&aside).await;
            tracing::warn!(%err, path = %path.display(), "cannot keep a fetched compiled component");
            return false;
        }
        tracing::info!(sha256, bytes = bytes.len(), "fetched a component another node compiled");
        true
    }

    async fn lock(&self, sha256: &str) -> Option<Box<dyn Send + Sync>> {
        let mut client = self.client.clone();
        let lease = match client.lease_grant(LOCK_TTL.as_secs() as i64, None).await {
            Ok(lease) => lease.id(),
            Err(err) => {
                tracing::warn!(%err, "cannot take the cluster's compile lock; compiling without it");
                return None;
            }
        };
        let renew = tokio::spawn(renew(client.clone(), lease));
        let name = format!("{}{sha256}", self.locks);
        let deadline = tokio::time::Instant::now() + self.wait;
        // Each request gives up after the client's timeout; the waiter's key
        // (named by its lease) stays queued, so asking again keeps its place.
        while tokio::time::Instant::now() < deadline {
            match client
                .lock(name.clone(), Some(LockOptions::new().with_lease(lease)))
                .await
            {
                Ok(held) => {
                    return Some(Box::new(Held {
                        client,
                        key: held.key().to_vec(),
                        lease,
                        renew,
                    }));
                }
                Err(err) => tracing::debug!(%err, sha256, "still waiting for another node's compile"),
            }
        }
        renew.abort();
        let _ = client.lease_revoke(lease).await;
        tracing::warn!(sha256, "another node's compile took too long; compiling here too");
        None
    }

    async fn forget(&self, sha256: &str) {
        let key = format!("{}{sha256}", self.pointers);
        let mut client = self.client.clone();
        let address = match client.get(key.clone(), None).await {
            Ok(answer) => answer
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            Err(err) => {
                tracing::warn!(%err, sha256, "cannot remove a compiled component from the cluster");
                return;
            }
        };
        let Some(address) = address else { return };
        let removed = async {
            client.delete(key, None).await?;
            self.artifacts.purge(&address).await.map_err(anyhow::Error::from)
        };
        if let Err(err) = removed.await {
            tracing::warn!(%err, sha256, "cannot remove a compiled component from the cluster");
        }
    }

    async fn publish(&self, sha256: &str, path: &Path) {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(err) => {
                tracing::warn!(%err, path = %path.display(), "cannot read a compiled component to publish");
                return;
            }
        };
        let address = hex::encode(Sha256::digest(&bytes));
        let published = async {
            self.artifacts.put(&address, bytes).await.map_err(anyhow::Error::from)?;
            self.client
                .clone()
                .put(format!("{}{sha256}", self.pointers), address.clone(), None)
                .await?;
            anyhow::Ok(())
        };
        if let Err(err) = published.await {
            tracing::warn!(%err, sha256, "cannot publish a compiled component; other nodes compile it themselves");
        }
    }
}
