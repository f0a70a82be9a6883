//! In-process tests of the registry: the snapshot against a full read,
//! resolve, bounded deletes, and several registries on one store.

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

pub(crate) const BOUNDS: functions::VersionBounds = functions::VersionBounds {
    max_timeout_ms: 60_000,
    max_memory_mb: 256,
};

pub(crate) fn config() -> VersionConfig {
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
            .create_version(&acme, &hello, &sha, 10, config(), BOUNDS)
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
        nodes: 1,
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
            .create_version(&acme, &hello, &sha, 10, config, BOUNDS)
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
        .create_version(&acme, &hello, &"ef".repeat(32), 10, config(), BOUNDS)
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

/// A new version of `account/function`, compiled.
async fn ready_version(registry: &Registry, account: &AccountName, function: &FunctionName) -> VersionRecord {
    let v = registry
        .create_version(account, function, &"ab".repeat(32), 10, config(), BOUNDS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    registry
        .finish_version(account, function, v.number, VersionState::Ready, Some(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    v
}

/// A registry on `store`, as one node of several would be: its own KV
/// database and an in-memory component store.
async fn on_store<S: store::MetaStore + Clone>(store: &S, limits: StorageLimits) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let kv = kv::Kv::open(&db, limits.kv.clone()).unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::start(
        Arc::new(store.clone()),
        Arc::new(kv),
        Arc::new(blobs::MemBlobStore::default()),
        limits,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (dir, registry)
}

/// Keys of `store` under `prefix`.
async fn stored_keys(store: &dyn store::MetaStore, prefix: &str) -> Vec<String> {
    let (entries, _) = store.range(prefix.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    entries
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.key).into_owned())
        .collect()
}

fn roomy() -> StorageLimits {
    StorageLimits {
        max_keys: 1000,
        max_versions: 1000,
        max_aliases: 1000,
        ..StorageLimits::default()
    }
}

/// The store refuses a transaction of more than 128 operations, as etcd
/// does; deleting a function and an account with hundreds of records each
/// still removes every one of them. On the in-memory store and on sled.
#[tokio::test]
async fn deletes_of_more_records_than_one_transaction_takes_remove_them_all() {
    deletes_past_the_transaction_limit(&store::mem::MemStore::default()).await;
}

#[tokio::test]
async fn deletes_past_the_transaction_limit_on_sled_too() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = store::sled::SledStore::open(&db, store::sled::HISTORY).unwrap_or_else(|e| panic!("{e}"));
    deletes_past_the_transaction_limit(&store).await;
}

async fn deletes_past_the_transaction_limit<S: store::MetaStore + Clone>(store: &S) {
    let (_dir, registry) = on_store(store, roomy()).await;
    let (acme, globex, hello, other) = (name("acme"), name("globex"), function("hello"), function("other"));
    registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
    registry.create_account(&globex).await.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..150 {
        registry.create_key(&acme).await.unwrap_or_else(|e| panic!("{e}"));
    }
    for f in [&hello, &other] {
        for _ in 0..140 {
            let v = registry
                .create_version(&acme, f, &"ab".repeat(32), 10, config(), BOUNDS)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            registry
                .finish_version(&acme, f, v.number, VersionState::Ready, Some(1))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for i in 0..130 {
        let alias = AliasName::parse(&format!("a{i}")).unwrap_or_else(|e| panic!("{e}"));
        let spec = AliasSpec {
            version: 1 + i % 140,
            weight: None,
            overrides: Default::default(),
        };
        registry
            .put_alias(&acme, &hello, &alias, spec, PutMode::Create)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    registry
        .put_grant(&acme, &hello, &globex, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let target = CrossTarget::parse("acme/hello:a7").unwrap_or_else(|e| panic!("{e}"));
    registry
        .put_cross_alias(
            &globex,
            &function("theirs"),
            target,
            Default::default(),
            PutMode::Create,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert!(
        matches!(
            registry.delete_function(&acme, &hello, false).await,
            Err(RegistryError::Conflict(_))
        ),
        "a function others refer to is deleted only by force"
    );
    registry
        .delete_function(&acme, &hello, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for prefix in [
        "versions/acme/hello/",
        "aliases/acme/hello/",
        "grants/acme/hello/",
        "cross_aliases/globex/",
    ] {
        assert_eq!(stored_keys(store, prefix).await, Vec::<String>::new(), "{prefix}");
    }
    assert!(stored_keys(store, "functions/acme/hello").await.is_empty());
    assert_eq!(stored_keys(store, "versions/acme/other/").await.len(), 140);
    // Deployed again, the name continues its numbering.
    let again = registry
        .create_version(&acme, &hello, &"cd".repeat(32), 10, config(), BOUNDS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.number, 141);

    registry.delete_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
    for kind in layout::ACCOUNT_KINDS {
        assert_eq!(
            stored_keys(store, &format!("{kind}/acme")).await,
            Vec::<String>::new(),
            "{kind}"
        );
    }
    let snapshot = registry.snapshot();
    assert!(snapshot.account(&acme).is_none() && !snapshot.is_retiring(&acme));
    // The name is free, and its next holder starts with nothing.
    registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(registry.snapshot().functions_of(&acme).next().is_none());
    assert_eq!(registry.list_keys(&acme).len(), 1);
}

/// Retiring an account is one transaction, after which nothing of it is
/// served; a registry that starts on a store where the sweep did not finish
/// (a crash) finishes it.
#[tokio::test]
async fn a_retired_account_serves_nothing_and_a_restart_finishes_its_delete() {
    let store = store::mem::MemStore::default();
    let (acme, hello) = (name("acme"), function("hello"));
    let key = {
        let (_dir, registry) = on_store(&store, roomy()).await;
        let (_, key) = registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
        ready_version(&registry, &acme, &hello).await;
        registry
            .apply(accounts::RetireAccount { name: acme.clone() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let snapshot = registry.snapshot();
        assert!(snapshot.account(&acme).is_none());
        assert!(
            snapshot.key_by_hash(&key.secret.hash()).is_none(),
            "its keys fail at once"
        );
        assert_eq!(
            snapshot.resolve(&acme, &hello, &Qualifier::Latest, None).err(),
            Some(ResolveError::NoFunction)
        );
        match registry.create_account(&acme).await {
            Err(RegistryError::Conflict(message)) => assert!(message.contains("being deleted"), "{message}"),
            other => panic!(
                "the name was taken while its records remain: {:?}",
                other.map(|(a, _)| a)
            ),
        }
        assert!(
            !stored_keys(&store, "versions/acme/").await.is_empty(),
            "the sweep has not run"
        );
        key
    };
    let (_dir, registry) = on_store(&store, roomy()).await;
    for kind in layout::ACCOUNT_KINDS {
        assert_eq!(
            stored_keys(&store, &format!("{kind}/acme")).await,
            Vec::<String>::new(),
            "{kind}"
        );
    }
    assert!(registry.snapshot().key_by_hash(&key.secret.hash()).is_none());
    registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Two registries on one store, as two nodes: each sees the other's
/// writes, and a bound checked by both at once still holds, because a plan
/// made against a snapshot another writer overtook is made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_sharing_a_store_see_each_others_writes_and_keep_the_bounds() {
    two_registries_keep_the_bounds(&store::mem::MemStore::default()).await;
}

/// The same, as two nodes of a cluster on a real etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_etcd_see_each_others_writes_and_keep_the_bounds() {
    let (_etcd, store) = on_etcd().await;
    two_registries_keep_the_bounds(&store).await;
}

/// Deletes past a transaction's limit, on a real etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_past_the_transaction_limit_on_etcd() {
    let (_etcd, store) = on_etcd().await;
    deletes_past_the_transaction_limit(&store).await;
}

/// A store on a real etcd of its own, kept running while the first is held.
async fn on_etcd() -> (store::etcd::tests::TestEtcd, store::etcd::EtcdStore) {
    let etcd = store::etcd::tests::TestEtcd::start();
    let store = store::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.url), "/stratus/", 10_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (etcd, store)
}

async fn two_registries_keep_the_bounds<S: store::MetaStore + Clone>(store: &S) {
    let store = store.clone();
    let limits = StorageLimits {
        max_functions: 12,
        ..roomy()
    };
    let (_a_dir, a) = on_store(&store, limits.clone()).await;
    let (_b_dir, b) = on_store(&store, limits).await;
    let acme = name("acme");
    a.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
    b.view
        .reached(a.snapshot().revision())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.snapshot().account(&acme).is_some(), "b sees what a wrote");
    async fn deploy(registry: &Registry, acme: &AccountName, prefix: &str) -> usize {
        {
            let mut created = 0;
            for i in 0..10 {
                match registry
                    .create_version(
                        acme,
                        &function(&format!("{prefix}{i}")),
                        &"ab".repeat(32),
                        1,
                        config(),
                        BOUNDS,
                    )
                    .await
                {
                    Ok(_) => created += 1,
                    Err(RegistryError::Conflict(message)) => assert!(message.contains("functions"), "{message}"),
                    Err(other) => panic!("{other}"),
                }
            }
            created
        }
    }
    let (from_a, from_b) = tokio::join!(deploy(&a, &acme, "a"), deploy(&b, &acme, "b"));
    assert_eq!(from_a + from_b, 12, "a: {from_a}, b: {from_b}");
    assert_eq!(stored_keys(&store, "functions/acme/").await.len(), 12);
    let newest = store::MetaStore::revision(&store)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    a.view.reached(newest).await.unwrap_or_else(|e| panic!("{e}"));
    b.view.reached(newest).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(canonical(&a.snapshot()), canonical(&b.snapshot()));
    let full = follow::load(&store).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(canonical(&a.snapshot()), canonical(&full));
}

/// A registry whose feed history is gone reads everything again.
#[tokio::test]
async fn a_registry_behind_the_kept_history_reads_everything_again() {
    let store = store::mem::MemStore::with_history(2);
    let (_a_dir, a) = on_store(&store, roomy()).await;
    let (_b_dir, b) = on_store(&store, roomy()).await;
    // b's follower is stopped while a writes past the kept history.
    b.follower.abort();
    for i in 0..5 {
        a.create_account(&name(&format!("acct{i}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let follower = tokio::spawn(follow::follow(Arc::new(store.clone()), b.view.clone()));
    b.view
        .reached(a.snapshot().revision())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(canonical(&a.snapshot()), canonical(&b.snapshot()));
    follower.abort();
}

/// A delete checks what targets it in other accounts; a cross-account
/// alias created meanwhile rewrites the owner's record, so a delete planned
/// before it is refused by the store, and planned again it answers 409.
#[tokio::test]
async fn a_delete_planned_before_a_cross_account_alias_to_its_target_is_planned_again() {
    use command::Command as _;
    use store::MetaStore as _;
    let store = store::mem::MemStore::default();
    let (_dir, registry) = on_store(&store, roomy()).await;
    let (acme, globex, hello) = (name("acme"), name("globex"), function("hello"));
    registry.create_account(&acme).await.unwrap_or_else(|e| panic!("{e}"));
    registry.create_account(&globex).await.unwrap_or_else(|e| panic!("{e}"));
    ready_version(&registry, &acme, &hello).await;
    let prod = alias_prod(&registry).await;
    registry
        .put_grant(&acme, &hello, &globex, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let snapshot = registry.snapshot();
    let delete_alias = aliases::DeleteAlias {
        account: acme.clone(),
        function: hello.clone(),
        name: prod.clone(),
    }
    .plan(&snapshot, registry.limits())
    .unwrap_or_else(|e| panic!("{e}"));
    let delete_version = functions::DeleteVersion {
        account: acme.clone(),
        function: hello.clone(),
        number: 1,
    };
    let cross = grants::PutCrossAlias {
        account: globex.clone(),
        name: function("theirs"),
        target: CrossTarget::parse("acme/hello:prod").unwrap_or_else(|e| panic!("{e}")),
        limits: Default::default(),
        mode: PutMode::Create,
        at: 1,
    }
    .plan(&snapshot, registry.limits())
    .unwrap_or_else(|e| panic!("{e}"));
    let revision = store.commit(&cross.txn).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(store.commit(&delete_alias.txn).await, Err(StoreError::Conflict)),
        "both the alias's delete and an alias to it were taken"
    );
    registry.view.reached(revision).await.unwrap_or_else(|e| panic!("{e}"));
    match registry.delete_alias(&acme, &hello, &prod).await {
        Err(RegistryError::Conflict(message)) => assert!(message.contains("globex"), "{message}"),
        other => panic!("the alias an alias targets was deleted: {other:?}"),
    }
    // Its version, behind the alias, is refused as well.
    let planned = delete_version.plan(&registry.snapshot(), registry.limits());
    assert!(matches!(planned, Err(RegistryError::Conflict(_))));
}
