//! The [`KvBackend`] of a cluster: functions' data in etcd, shared by every
//! node.
//!
//! A namespace's keys are `{prefix}d/{namespace}{key}`; its usage is at
//! `{prefix}u/{namespace}` and its owner's total at `{prefix}u/{owner}/`.
//! Every write reads the key and both usages in one request, then commits
//! the new value and usages in one transaction that compares the three
//! revisions it read: writes from any node are atomic, `increment` included,
//! and the quotas hold across the cluster. A transaction that lost to another
//! node's is planned again. None of these keys is under the registry's
//! prefix, so a KV write wakes no node's registry feed.

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

use super::{KvBackend, KvError, KvLimits, Namespace, Page, Planned, incremented, page_of, plan_write, read_back};

/// How many times a write is planned again after other writers changed
/// what it read, before it answers unavailable.
const ATTEMPTS: usize = 200;

/// Functions' data in etcd under one prefix.
#[derive(Clone)]
pub struct EtcdKv {
    client: Client,
    prefix: String,
    limits: KvLimits,
}

fn unavailable(err: impl std::fmt::Display) -> KvError {
    let text = err.to_string();
    tracing::error!(err = %text, "kv store failure");
    if text.contains("database space exceeded") {
        // etcd's quota: the whole cluster's store is full, not this
        // namespace's share.
        return KvError::QuotaExceeded("the cluster's store is full; the operator must free space".into());
    }
    KvError::Unavailable("the key/value store is unavailable".into())
}

fn usage_of(kv: Option<&KeyValue>) -> u64 {
    kv.map_or(0, |kv| {
        let mut bytes = [0u8; 8];
        let value = kv.value();
        bytes.copy_from_slice(&value[..8.min(value.len())]);
        u64::from_be_bytes(bytes)
    })
}

fn revision_of(kv: Option<&KeyValue>) -> i64 {
    kv.map_or(0, KeyValue::mod_revision)
}

impl EtcdKv {
    /// The store under `prefix` (e.g. `/stratus/v1/kv/`) with `limits`.
    pub fn new(client: Client, prefix: String, limits: KvLimits) -> Self {
        Self { client, prefix, limits }
    }

    fn data(&self, raw: &[u8]) -> Vec<u8> {
        let mut key = format!("{}d/", self.prefix).into_bytes();
        key.extend_from_slice(raw);
        key
    }

    fn usage(&self, raw: &[u8]) -> Vec<u8> {
        let mut key = format!("{}u/", self.prefix).into_bytes();
        key.extend_from_slice(raw);
        key
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        super::check_key(&self.limits, key)
    }

    /// Writes what `new` makes of `key`'s value (removes it for `None`),
    /// with both usages, atomically; returns the value before and after.
    async fn write(
        &self,
        ns: &Namespace,
        key: &str,
        new: impl Fn(Option<&[u8]>) -> Result<Option<Vec<u8>>, KvError>,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), KvError> {
        self.check_key(key)?;
        let (data, usage, total) = (
            self.data(&ns.key(key)),
            self.usage(&ns.prefix),
            self.usage(ns.owner_total()),
        );
        let mut client = self.client.clone();
        for _ in 0..ATTEMPTS {
            let read = Txn::new().and_then([
                TxnOp::get(data.clone(), None),
                TxnOp::get(usage.clone(), None),
                TxnOp::get(total.clone(), None),
            ]);
            let response = client.txn(read).await.map_err(unavailable)?;
            let mut found: Vec<Option<KeyValue>> = response
                .op_responses()
                .into_iter()
                .map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                    _ => None,
                })
                .collect();
            found.resize(3, None);
            let old = found[0].as_ref().map(|kv| kv.value().to_vec());
            let Planned {
                value,
                after,
                total_after,
            } = plan_write(
                &self.limits,
                key,
                old.as_deref(),
                &new,
                usage_of(found[1].as_ref()),
                usage_of(found[2].as_ref()),
            )?;
            if value == old {
                // Nothing to write (a compare-and-set that did not match).
                return Ok((old, value));
            }
            let compares = [&data, &usage, &total]
                .into_iter()
                .zip(&found)
                .map(|(key, kv)| Compare::mod_revision(key.clone(), CompareOp::Equal, revision_of(kv.as_ref())));
            let write = match &value {
                Some(value) => TxnOp::put(data.clone(), value.clone(), None),
                None => TxnOp::delete(data.clone(), None),
            };
            let txn = Txn::new().when(compares.collect::<Vec<_>>()).and_then([
                write,
                TxnOp::put(usage.clone(), after.to_be_bytes().to_vec(), None),
                TxnOp::put(total.clone(), total_after.to_be_bytes().to_vec(), None),
            ]);
            if client.txn(txn).await.map_err(unavailable)?.succeeded() {
                return Ok((old, value));
            }
        }
        Err(KvError::Unavailable(format!(
            "the key {key:?} kept changing ({ATTEMPTS} attempts); retry"
        )))
    }
}

#[async_trait::async_trait]
impl KvBackend for EtcdKv {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        let response = self
            .client
            .clone()
            .get(self.data(&ns.key(key)), None)
            .await
            .map_err(unavailable)?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn set(&self, ns: &Namespace, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.write(ns, key, |_| Ok(Some(value.clone()))).await.map(|_| ())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        let (old, _) = self.write(ns, key, |_| Ok(None)).await?;
        Ok(old.is_some())
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError> {
        let (_, new) = self.write(ns, key, |old| incremented(key, old, delta)).await?;
        read_back(new)
    }

    async fn list_keys(&self, ns: &Namespace, prefix: &str) -> Result<Vec<String>, KvError> {
        self.check_key(prefix)?;
        let options = GetOptions::new().with_prefix().with_keys_only().with_limit(1000);
        let response = self
            .client
            .clone()
            .get(self.data(&ns.key(prefix)), Some(options))
            .await
            .map_err(unavailable)?;
        let skip = self.data(&ns.prefix).len();
        Ok(response
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key()[skip..]).into_owned())
            .collect())
    }

    async fn list(&self, ns: &Namespace, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page, KvError> {
        self.check_key(prefix)?;
        if let Some(cursor) = cursor {
            self.check_key(cursor)?;
        }
        let limit = limit.clamp(1, 1000) as usize;
        let start = self.data(&ns.list_start(prefix, cursor));
        let end = prefix_end(&self.data(&ns.key(prefix)));
        let options = GetOptions::new().with_range(end).with_limit(limit as i64 + 1);
        let response = self
            .client
            .clone()
            .get(start, Some(options))
            .await
            .map_err(unavailable)?;
        let skip = self.data(&ns.prefix).len();
        let entries = response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key()[skip..]).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        Ok(page_of(entries, limit))
    }

    async fn compare_and_set(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, KvError> {
        let (old, _) = self
            .write(ns, key, |old| Ok(super::swap_if(old, expected.as_deref(), &value)))
            .await?;
        Ok(old == expected)
    }

    async fn drop_account(&self, account: &str) -> Result<(), KvError> {
        if account.is_empty() {
            return Ok(());
        }
        let mut client = self.client.clone();
        // As the owner: every namespace and the total.
        let owned = format!("{account}/").into_bytes();
        for key in [self.data(&owned), self.usage(&owned)] {
            client
                .delete(key, Some(DeleteOptions::new().with_prefix()))
                .await
                .map_err(unavailable)?;
        }
        // As a caller of other accounts' functions: found by the usage keys.
        let usages = client
            .get(self.usage(b""), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let skip = self.usage(b"").len();
        for kv in usages.kvs() {
            let raw = &kv.key()[skip..];
            if raw.split(|b| *b == b'/').nth(1) != Some(account.as_bytes()) {
                continue;
            }
            let owner_end = raw.iter().position(|b| *b == b'/').map_or(0, |i| i + 1);
            let owner_total = self.usage(&raw[..owner_end]);
            // The namespace leaves its owner's total in the same
            // transaction that removes it.
            for _ in 0..ATTEMPTS {
                let current = client.get(owner_total.clone(), None).await.map_err(unavailable)?;
                let total = current.kvs().first();
                let left = usage_of(total).saturating_sub(usage_of(Some(kv)));
                let txn = Txn::new()
                    .when([
                        Compare::mod_revision(owner_total.clone(), CompareOp::Equal, revision_of(total)),
                        Compare::mod_revision(kv.key().to_vec(), CompareOp::Equal, kv.mod_revision()),
                    ])
                    .and_then([
                        TxnOp::put(owner_total.clone(), left.to_be_bytes().to_vec(), None),
                        TxnOp::delete(kv.key().to_vec(), None),
                        TxnOp::delete(self.data(raw), Some(DeleteOptions::new().with_prefix())),
                    ]);
                let response = client.txn(txn).await.map_err(unavailable)?;
                if response.succeeded() {
                    break;
                }
                // The namespace itself changed: its usage is read again.
                let again = client.get(kv.key().to_vec(), None).await.map_err(unavailable)?;
                if again
                    .kvs()
                    .first()
                    .is_none_or(|now| now.mod_revision() != kv.mod_revision())
                {
                    client
                        .delete(self.data(raw), Some(DeleteOptions::new().with_prefix()))
                        .await
                        .map_err(unavailable)?;
                    client.delete(kv.key().to_vec(), None).await.map_err(unavailable)?;
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The smallest key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::store::etcd::tests::TestEtcd;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_etcd_store_keeps_the_kv_contract_and_increments_add_up_from_many_writers() {
        let etcd = TestEtcd::start();
        let client = Client::connect([etcd.url.as_str()], None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let next = std::sync::atomic::AtomicUsize::new(0);
        super::super::tests::contract(|limits| {
            let prefix = format!("/kv-test/{}/", next.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
            EtcdKv::new(client.clone(), prefix, limits)
        })
        .await;

        // Writers on separate clients stand for nodes: every increment counts.
        let mut writers = Vec::new();
        for _ in 0..4 {
            let client = Client::connect([etcd.url.as_str()], None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let kv = EtcdKv::new(client, "/kv-race/".into(), KvLimits::default());
            writers.push(tokio::spawn(async move {
                let ns = Namespace::new("owner", "caller", None);
                for _ in 0..25 {
                    kv.increment(&ns, "n", 1).await.unwrap_or_else(|e| panic!("{e}"));
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap_or_else(|e| panic!("{e}"));
        }
        let kv = EtcdKv::new(client, "/kv-race/".into(), KvLimits::default());
        let ns = Namespace::new("owner", "caller", None);
        assert_eq!(
            kv.get(&ns, "n").await.unwrap_or_else(|e| panic!("{e}")),
            Some(b"100".to_vec())
        );
    }
}
