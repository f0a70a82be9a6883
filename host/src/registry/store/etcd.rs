//! The [`MetaStore`] of a cluster: etcd v3, every key under the cluster's
//! prefix. Revisions are etcd's own, so they are shared by every node;
//! compares are etcd compares on `mod_revision` (0 for an absent key); the
//! feed is an etcd watch on the prefix, its events grouped by revision into
//! one batch per transaction. Revisions are spent outside the prefix too
//! (KV, blobs, membership), so the feed also yields empty batches, etcd's
//! progress reports: nothing under the prefix up to that revision. Stratus
//! compacts the history itself, keeping the last `history` revisions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, TxnOp, WatchOptions};

use super::{Batch, Change, ChangeFeed, Entry, MetaStore, Op, Revision, StoreError, Txn};

/// The store in an etcd cluster, under one key prefix.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: Vec<u8>,
    history: u64,
    /// The newest revision compacted to, so each is asked for once.
    compacted: Arc<AtomicU64>,
    /// Moved by every `revision()`, so open feeds ask etcd for progress.
    asked: Arc<tokio::sync::watch::Sender<u64>>,
}

/// How often a feed asks etcd how far it is, when nothing else does.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

fn backend(err: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {err}"))
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision().max(0) as u64)
}

impl EtcdStore {
    /// Connects to `endpoints`, keeping the store's keys under `prefix` and
    /// the last `history` revisions for feeds.
    #[cfg(test)]
    pub async fn connect(endpoints: &[String], prefix: &str, history: usize) -> Result<Self, StoreError> {
        let client = Client::connect(endpoints, None).await.map_err(backend)?;
        Ok(Self::new(client, prefix, history))
    }

    /// The store through `client`, under `prefix`, keeping the last
    /// `history` revisions for feeds.
    pub fn new(client: Client, prefix: &str, history: usize) -> Self {
        Self {
            client,
            prefix: prefix.as_bytes().to_vec(),
            history: history.max(1) as u64,
            compacted: Arc::default(),
            asked: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key);
        full
    }

    fn strip(&self, key: &[u8]) -> Vec<u8> {
        key.strip_prefix(self.prefix.as_slice()).unwrap_or(key).to_vec()
    }

    /// The batches of one watch answer: its events grouped by revision, or
    /// one empty batch at the answer's revision when it is a progress
    /// report (the feed is current up to there).
    fn batches_of(&self, response: &etcd_client::WatchResponse) -> Vec<Result<Batch, StoreError>> {
        if response.compact_revision() > 0 {
            return vec![Err(StoreError::Compacted {
                oldest: response.compact_revision() as u64,
            })];
        }
        if response.canceled() {
            return vec![Err(StoreError::Backend(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            )))];
        }
        if response.events().is_empty() {
            // The answer to the watch's creation carries no progress.
            if response.created() {
                return Vec::new();
            }
            return vec![Ok(Batch {
                revision: revision_of(response.header()),
                changes: Vec::new(),
            })];
        }
        let mut batches: Vec<Batch> = Vec::new();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision().max(0) as u64;
            let change = Change {
                key: self.strip(kv.key()),
                value: match event.event_type() {
                    EventType::Put => Some(kv.value().to_vec()),
                    EventType::Delete => None,
                },
            };
            match batches.last_mut() {
                Some(batch) if batch.revision == revision => batch.changes.push(change),
                _ => batches.push(Batch {
                    revision,
                    changes: vec![change],
                }),
            }
        }
        batches.into_iter().map(Ok).collect()
    }

    /// Drops history older than the kept revisions.
    async fn compact(&self, revision: Revision) {
        let Some(to) = revision.checked_sub(self.history).filter(|r| *r > 0) else {
            return;
        };
        // One request per 1/8 of the history, not one per write.
        let step = (self.history / 8).max(1);
        let last = self.compacted.load(Ordering::Relaxed);
        if to < last + step {
            return;
        }
        self.compacted.store(to, Ordering::Relaxed);
        if let Err(err) = self.client.clone().compact(to as i64, None).await {
            // Compacting again later is harmless; a failure only keeps more.
            tracing::debug!(%err, "etcd compaction");
        }
    }
}

#[async_trait::async_trait]
impl MetaStore for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let response = self.client.clone().get(self.full(key), None).await.map_err(backend)?;
        Ok(response.kvs().first().map(|kv| Entry {
            key: key.to_vec(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision().max(0) as u64,
        }))
    }

    async fn range(&self, prefix: &[u8]) -> Result<(Vec<Entry>, Revision), StoreError> {
        let response = self
            .client
            .clone()
            .get(self.full(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(backend)?;
        let entries = response
            .kvs()
            .iter()
            .map(|kv| Entry {
                key: self.strip(kv.key()),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision().max(0) as u64,
            })
            .collect();
        Ok((entries, revision_of(response.header())))
    }

    async fn commit(&self, txn: &Txn) -> Result<Revision, StoreError> {
        txn.check_limits()?;
        let compares: Vec<Compare> = txn
            .compares
            .iter()
            .map(|c| Compare::mod_revision(self.full(&c.key), CompareOp::Equal, c.mod_revision as i64))
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(self.full(key), value.clone(), None),
                Op::Delete { key } => TxnOp::delete(self.full(key), None),
            })
            .collect();
        let response = self
            .client
            .clone()
            .txn(etcd_client::Txn::new().when(compares).and_then(ops))
            .await
            .map_err(backend)?;
        if !response.succeeded() {
            return Err(StoreError::Conflict);
        }
        let revision = revision_of(response.header());
        self.compact(revision).await;
        Ok(revision)
    }

    async fn watch(&self, after: Revision) -> Result<ChangeFeed, StoreError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(after as i64 + 1);
        let mut stream = self
            .client
            .clone()
            .watch(self.prefix.clone(), Some(options))
            .await
            .map_err(backend)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch, StoreError>>(64);
        let store = self.clone();
        let mut asked = self.asked.subscribe();
        // The feed's own task: it forwards etcd's answers as batches and asks
        // etcd for its progress every second and whenever `revision()` was
        // read, so a reader learns that revisions spent outside the prefix
        // (KV, blobs) hold nothing for it.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let item = tokio::select! {
                    item = stream.message() => item,
                    _ = tick.tick() => {
                        if stream.request_progress().await.is_err() { break }
                        continue;
                    }
                    Ok(()) = asked.changed() => {
                        if stream.request_progress().await.is_err() { break }
                        continue;
                    }
                    () = tx.closed() => break,
                };
                let batches = match item {
                    Ok(Some(response)) => store.batches_of(&response),
                    Ok(None) => break,
                    Err(err) => vec![Err(backend(err))],
                };
                let failed = batches.iter().any(Result::is_err);
                // Revisions spent on KV and blobs count toward the history
                // too: a progress report compacts as a commit does.
                if let Some(Ok(last)) = batches.last() {
                    store.compact(last.revision).await;
                }
                for batch in batches {
                    if tx.send(batch).await.is_err() {
                        return;
                    }
                }
                if failed {
                    break;
                }
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        // A read of no key still carries the store's revision.
        self.asked.send_modify(|n| *n = n.wrapping_add(1));
        let response = self
            .client
            .clone()
            .get(self.full(b"\0revision"), None)
            .await
            .map_err(backend)?;
        Ok(revision_of(response.header()))
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A real etcd on loopback ports with a temporary data directory,
    /// stopped when dropped.
    pub(crate) struct TestEtcd {
        child: Child,
        /// Its client URL.
        pub url: String,
        _dir: tempfile::TempDir,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    impl TestEtcd {
        /// Starts one; fails the test with the fix if `etcd` is not installed.
        pub(crate) fn start() -> Self {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let (client, peer) = (free_port(), free_port());
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new("etcd")
                .args(["--name", "test", "--data-dir"])
                .arg(dir.path())
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start etcd ({e}): install it (`apt-get install etcd-server`, which `bash scripts/dev.sh setup` does)")
                });
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "etcd did not listen within 10 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Self { child, url, _dir: dir }
        }
    }

    impl Drop for TestEtcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revisions_spent_outside_the_prefix_reach_a_feed_as_progress() {
        use super::super::MetaStore as _;
        use futures::StreamExt as _;
        let etcd = TestEtcd::start();
        let endpoints = vec![etcd.url.clone()];
        let store = super::EtcdStore::connect(&endpoints, "/progress/registry/", 100)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let start = store.revision().await.unwrap_or_else(|e| panic!("{e}"));
        let mut feed = store.watch(start).await.unwrap_or_else(|e| panic!("{e}"));
        let mut other = etcd_client::Client::connect(&endpoints, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            other
                .put(format!("/progress/kv/{i}"), "x", None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let wanted = store.revision().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(wanted >= start + 3);
        let reached = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(item) = feed.next().await {
                let batch = item.unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    batch.changes.is_empty(),
                    "a write outside the prefix was fed: {batch:?}"
                );
                if batch.revision >= wanted {
                    return batch.revision;
                }
            }
            panic!("the feed ended")
        })
        .await
        .unwrap_or_else(|_| panic!("no progress up to {wanted} within 5 s"));
        assert!(reached >= wanted);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_etcd_store_keeps_the_contract() {
        let etcd = TestEtcd::start();
        let next = std::sync::atomic::AtomicUsize::new(0);
        super::super::contract::run(|history| {
            let prefix = format!("/contract/{}/", next.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
            let endpoints = vec![etcd.url.clone()];
            async move {
                super::EtcdStore::connect(&endpoints, &prefix, history)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        })
        .await;
    }
}
