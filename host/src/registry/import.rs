//! `stratus cluster import`: a single node's data directory into an empty
//! cluster. The records keep their keys (and so ids, key hashes, signing
//! keys and version numbers), the components their addresses, KV its
//! namespaces and usage; only the revisions are etcd's own from then on.

use std::path::Path;

use etcd_client::{Client, GetOptions, Txn, TxnOp};

use super::blobs::BlobStore as _;
use super::store::{MAX_TXN_BYTES, MAX_TXN_OPS, MetaStore as _};
use super::{blobs, kv, migrate, store};

/// What an import moved.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Registry records.
    pub records: usize,
    /// Components.
    pub components: usize,
    /// KV keys (and usage entries).
    pub kv_entries: usize,
}

/// Copies the data directory `dir` (of a stopped single node) into the
/// cluster under `prefix` (`{cluster prefix}/v1/`), which must be empty.
pub async fn into_etcd(dir: &Path, client: Client, prefix: &str) -> anyhow::Result<Report> {
    anyhow::ensure!(
        dir.join("registry").exists(),
        "{} is not a Stratus data directory (it has no registry/)",
        dir.display()
    );
    let db = sled::Config::new().path(dir.join("registry")).open().map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database in {}: {e} (stop the `stratus serve` using it first)",
            dir.display()
        )
    })?;
    ensure_empty(&client, prefix).await?;
    let records = store::sled::SledStore::open(&db, store::sled::HISTORY)?;
    let files = blobs::FsBlobStore::open(&dir.join("blobs"))?;
    // Data written by older builds is brought to today's layout first.
    migrate::from_trees(&db, &records, &files).await?;
    let mut report = Report::default();

    // Components and KV first: once the records are in, nodes may start,
    // and every record they read must find what it names.
    let components = blobs::etcd::EtcdBlobStore::new(client.clone(), format!("{prefix}blobs/"));
    for sha in files.list().await? {
        if let Some(bytes) = files.get(&sha).await? {
            components.put(&sha, bytes).await?;
            report.components += 1;
        }
    }
    let (data, usage) = kv::Kv::open(&db, kv::KvLimits::default())?.raw()?;
    report.kv_entries = data.len();
    let kv_prefix = format!("{prefix}kv/");
    let mut writes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (key, value) in data {
        writes.push(([format!("{kv_prefix}d/").into_bytes(), key].concat(), value));
    }
    for (key, value) in usage {
        writes.push(([format!("{kv_prefix}u/").into_bytes(), key].concat(), value));
    }
    put_all(&client, writes).await?;

    let (entries, _) = records.range(b"").await?;
    report.records = entries.len();
    let registry = format!("{prefix}registry/");
    put_all(
        &client,
        entries
            .into_iter()
            .map(|e| ([registry.as_bytes(), &e.key].concat(), e.value))
            .collect(),
    )
    .await?;
    Ok(report)
}

async fn ensure_empty(client: &Client, prefix: &str) -> anyhow::Result<()> {
    let found = client
        .clone()
        .get(prefix, Some(GetOptions::new().with_prefix().with_count_only()))
        .await?;
    anyhow::ensure!(
        found.count() == 0,
        "the cluster under {prefix} is not empty ({} keys): import only into a cluster no node has started on",
        found.count()
    );
    Ok(())
}

/// Puts every pair, in transactions within etcd's limits.
async fn put_all(client: &Client, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> anyhow::Result<()> {
    let mut client = client.clone();
    let mut batch: Vec<TxnOp> = Vec::new();
    let mut bytes = 0;
    for (key, value) in pairs {
        let size = key.len() + value.len();
        if !batch.is_empty() && (batch.len() == MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES - 4096) {
            client.txn(Txn::new().and_then(std::mem::take(&mut batch))).await?;
            bytes = 0;
        }
        bytes += size;
        batch.push(TxnOp::put(key, value, None));
    }
    if !batch.is_empty() {
        client.txn(Txn::new().and_then(batch)).await?;
    }
    Ok(())
}
