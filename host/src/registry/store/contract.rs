//! The contract every [`MetaStore`] keeps, as one suite that each
//! implementation's tests run (`run(make)`, where `make(history)` gives an
//! empty store keeping that many batches for feeds).

use futures::StreamExt;

use super::{Batch, Change, MAX_TXN_BYTES, MAX_TXN_OPS, MetaStore, StoreError, Txn};

fn put(txn: &mut Txn, key: &str, value: &str) {
    txn.put(key.as_bytes(), value.as_bytes());
}

async fn commit(store: &dyn MetaStore, txn: &Txn) -> u64 {
    store.commit(txn).await.unwrap_or_else(|e| panic!("commit: {e}"))
}

/// The next batch with changes: the empty ones only report progress.
async fn next(feed: &mut super::ChangeFeed) -> Batch {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), feed.next()).await {
            Ok(Some(Ok(batch))) if batch.changes.is_empty() => continue,
            Ok(Some(Ok(batch))) => return batch,
            other => panic!("no batch: {other:?}"),
        }
    }
}

/// Runs every check against fresh stores from `make`. Revisions are only
/// compared with each other: a store shared with others (etcd) does not
/// start at 0.
pub(crate) async fn run<S, F, Fut>(make: F)
where
    S: MetaStore,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    revisions_and_ranges(&make(100).await).await;
    compares_guard_the_whole_transaction(&make(100).await).await;
    limits_are_etcds(&make(100).await).await;
    the_feed_has_every_batch_in_order(&make(100).await).await;
    an_old_feed_is_compacted(&make(3).await).await;
}

async fn revisions_and_ranges(store: &dyn MetaStore) {
    let start = store.revision().await.unwrap_or_else(|e| panic!("{e}"));
    let mut txn = Txn::new();
    put(&mut txn, "a/1", "one");
    put(&mut txn, "a/2", "two");
    put(&mut txn, "b/1", "other");
    let first = commit(store, &txn).await;
    assert!(first > start, "a change moves the revision");
    let mut txn = Txn::new();
    put(&mut txn, "a/2", "TWO");
    let second = commit(store, &txn).await;
    assert!(second > first);
    let entry = store.get(b"a/2").await.ok().flatten().unwrap_or_else(|| panic!("a/2"));
    assert_eq!((entry.value.as_slice(), entry.mod_revision), (&b"TWO"[..], second));
    let entry = store.get(b"a/1").await.ok().flatten().unwrap_or_else(|| panic!("a/1"));
    assert_eq!(
        entry.mod_revision, first,
        "a key keeps the revision that last changed it"
    );
    assert!(store.get(b"a/3").await.ok().flatten().is_none());
    let (entries, revision) = store.range(b"a/").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revision, second);
    let keys: Vec<&[u8]> = entries.iter().map(|e| e.key.as_slice()).collect();
    assert_eq!(keys, [&b"a/1"[..], b"a/2"], "in key order, only the prefix");
    // A delete of an absent key changes nothing, so no revision is used.
    let mut txn = Txn::new();
    txn.delete(&b"a/9"[..]);
    assert_eq!(commit(store, &txn).await, second);
    let mut txn = Txn::new();
    txn.delete(&b"a/1"[..]);
    assert!(commit(store, &txn).await > second);
    assert!(store.get(b"a/1").await.ok().flatten().is_none());
    assert_eq!(store.range(b"").await.map(|(e, _)| e.len()).ok(), Some(2));
}

async fn compares_guard_the_whole_transaction(store: &dyn MetaStore) {
    let mut create = Txn::new();
    create.compare(&b"acct"[..], 0);
    put(&mut create, "acct", "v1");
    put(&mut create, "acct/x", "x");
    let created = commit(store, &create).await;
    // Created only while absent: the same transaction again conflicts.
    assert!(matches!(store.commit(&create).await, Err(StoreError::Conflict)));
    let mut update = Txn::new();
    update.compare(&b"acct"[..], created);
    put(&mut update, "acct", "v2");
    put(&mut update, "acct/y", "y");
    let updated = commit(store, &update).await;
    // Prepared against what is now stale: nothing of it applies.
    let mut stale = Txn::new();
    stale.compare(&b"acct"[..], created);
    put(&mut stale, "acct/z", "z");
    txn_delete(&mut stale, "acct/x");
    assert!(matches!(store.commit(&stale).await, Err(StoreError::Conflict)));
    assert!(store.get(b"acct/z").await.ok().flatten().is_none());
    assert!(store.get(b"acct/x").await.ok().flatten().is_some());
    assert_eq!(
        store.revision().await.ok(),
        Some(updated),
        "a refused transaction uses no revision"
    );
    // Several compares: all must hold.
    let mut both = Txn::new();
    both.compare(&b"acct"[..], updated).compare(&b"acct/x"[..], 0);
    put(&mut both, "acct/w", "w");
    assert!(matches!(store.commit(&both).await, Err(StoreError::Conflict)));
}

fn txn_delete(txn: &mut Txn, key: &str) {
    txn.delete(key.as_bytes());
}

async fn limits_are_etcds(store: &dyn MetaStore) {
    let mut most = Txn::new();
    for i in 0..MAX_TXN_OPS {
        put(&mut most, &format!("many/{i:04}"), "v");
    }
    commit(store, &most).await;
    let mut over = most.clone();
    put(&mut over, "many/over", "v");
    match store.commit(&over).await {
        Err(StoreError::TooLarge { ops, .. }) => assert_eq!(ops, MAX_TXN_OPS + 1),
        other => panic!("{} operations were taken: {other:?}", MAX_TXN_OPS + 1),
    }
    assert!(store.get(b"many/over").await.ok().flatten().is_none());
    let mut big = Txn::new();
    big.put(&b"big"[..], vec![7u8; MAX_TXN_BYTES + 1]);
    assert!(matches!(store.commit(&big).await, Err(StoreError::TooLarge { .. })));
    // etcd refuses two writes of one key in one transaction: so do all.
    let mut twice = Txn::new();
    put(&mut twice, "twice", "a");
    txn_delete(&mut twice, "twice");
    assert!(
        store.commit(&twice).await.is_err(),
        "a key written twice in one transaction"
    );
    assert!(store.get(b"twice").await.ok().flatten().is_none());
}

async fn the_feed_has_every_batch_in_order(store: &dyn MetaStore) {
    let mut txn = Txn::new();
    put(&mut txn, "f/1", "a");
    let start = commit(store, &txn).await;
    let mut txn = Txn::new();
    put(&mut txn, "f/2", "b");
    txn_delete(&mut txn, "f/1");
    let committed_before = commit(store, &txn).await;
    let mut feed = store.watch(start).await.unwrap_or_else(|e| panic!("{e}"));
    let batch = next(&mut feed).await;
    assert_eq!(
        batch.revision, committed_before,
        "what was committed before the watch comes first"
    );
    assert_eq!(
        batch.changes,
        [
            Change {
                key: b"f/2".to_vec(),
                value: Some(b"b".to_vec())
            },
            Change {
                key: b"f/1".to_vec(),
                value: None
            },
        ]
    );
    // Then each new one, as it is committed.
    let mut later = Vec::new();
    for i in 0..3 {
        let mut txn = Txn::new();
        put(&mut txn, &format!("f/{}", 10 + i), "c");
        later.push(commit(store, &txn).await);
    }
    for revision in later {
        assert_eq!(next(&mut feed).await.revision, revision);
    }
    // A feed waiting for a commit is woken by it.
    let waiting = tokio::spawn(async move { next(&mut feed).await.revision });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut txn = Txn::new();
    put(&mut txn, "f/last", "d");
    let last = commit(store, &txn).await;
    assert_eq!(waiting.await.ok(), Some(last));
}

async fn an_old_feed_is_compacted(store: &dyn MetaStore) {
    let start = store.revision().await.unwrap_or_else(|e| panic!("{e}"));
    let mut revisions = Vec::new();
    for i in 0..10 {
        let mut txn = Txn::new();
        put(&mut txn, &format!("c/{i}"), "v");
        revisions.push(commit(store, &txn).await);
    }
    match first_batch(store, start).await {
        Err(StoreError::Compacted { oldest }) => assert!(oldest > start, "oldest {oldest}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a feed from before 10 commits was served with 3 kept"),
    }
    // From a kept revision it works, and a new reader starts from a range.
    let mut feed = store.watch(revisions[8]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next(&mut feed).await.revision, revisions[9]);
    let (entries, revision) = store.range(b"c/").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((entries.len(), revision), (10, revisions[9]));
}

/// The first thing a feed from `after` yields: a refusal at once (sled,
/// memory) or as its first item (etcd answers a watch asynchronously).
async fn first_batch(store: &dyn MetaStore, after: u64) -> Result<Batch, StoreError> {
    let mut feed = store.watch(after).await?;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), feed.next()).await {
            Ok(Some(Ok(batch))) if batch.changes.is_empty() => continue,
            Ok(Some(item)) => return item,
            _ => panic!("the feed from {after} yielded nothing"),
        }
    }
}
