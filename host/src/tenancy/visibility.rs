//! What a caller may call: the visibility rules of the trigger, over one
//! snapshot. A name the caller may not see answers as if it did not exist
//! (401 for anonymous, 404 for an account), so that names do not leak.

use std::sync::Arc;

use super::{Caller, Presented};
use crate::error::ApiError;
use crate::names::{AccountName, AliasName, FunctionName, Qualifier, SubTenantId};
use crate::registry::records::{LowerLimits, VersionRecord};
use crate::registry::{CrossError, ResolveError, Snapshot};

/// The function a call names.
#[derive(Debug, Clone, Copy)]
pub struct Address<'a> {
    /// The account whose namespace holds the name.
    pub account: &'a AccountName,
    /// The function or cross-account alias.
    pub name: &'a FunctionName,
    /// A version or alias; `latest` when none.
    pub qualifier: &'a Qualifier,
}

/// What a call resolved to.
pub struct Route {
    /// The version to run, with alias overrides and limits applied.
    pub version: Arc<VersionRecord>,
    /// The owner's alias it went through.
    pub alias: Option<AliasName>,
    /// The cross-account alias it went through, as `account/name`.
    pub via: Option<String>,
}

/// Finds the version this caller may call. Names the caller may not see
/// answer as if they did not exist (401 for anonymous, 404 otherwise). A
/// nested call sees what its owner sees in the owner's account, and the
/// caller's cross-account aliases.
pub fn route(
    snapshot: &Snapshot,
    presented: &Presented,
    caller: &Caller,
    sub_tenant: Option<&SubTenantId>,
    target: &Address<'_>,
) -> Result<Route, ApiError> {
    let hidden = || match caller {
        Caller::Anonymous => {
            ApiError::Unauthorized("this function needs credentials: send `Authorization: Bearer <key>`".into())
        }
        Caller::Account { .. } => ApiError::NotFound(format!("no function {}/{}", target.account, target.name)),
    };
    let nested_owner = match presented {
        Presented::Nested { owner, .. } => Some(owner),
        _ => None,
    };
    let out_of_reach = |owner: &AccountName| {
        ApiError::Forbidden(format!(
            "an invocation token calls functions of {owner} and the caller's cross-account aliases only"
        ))
    };
    if let Some(cross) = snapshot.cross_alias(target.account, target.name) {
        // Only the account holding the alias sees it.
        if caller.account() != Some(target.account) {
            return Err(nested_owner.map_or_else(hidden, out_of_reach));
        }
        if *target.qualifier != Qualifier::Latest {
            return Err(ApiError::BadRequest(format!(
                "{} is a cross-account alias; it takes no version or alias",
                target.name
            )));
        }
        let resolved = snapshot.resolve_cross(cross, sub_tenant).map_err(|err| match err {
            CrossError::Revoked => ApiError::GrantRevoked,
            CrossError::NoQualifier => ApiError::NotFound(format!(
                "{} points at {}, which has no invocable version",
                target.name,
                cross.target()
            )),
        })?;
        let version = if cross.limits == LowerLimits::default() {
            resolved.version.clone()
        } else {
            Arc::new(VersionRecord {
                config: cross.limits.apply(&resolved.version.config),
                ..resolved.version.as_ref().clone()
            })
        };
        return Ok(Route {
            version,
            alias: resolved.alias.cloned(),
            via: Some(format!("{}/{}", target.account, target.name)),
        });
    }
    let own = match nested_owner {
        Some(owner) if owner == target.account => true,
        Some(owner) => return Err(out_of_reach(owner)),
        None => caller.account() == Some(target.account),
    };
    if !own && !snapshot.is_public(target.account, target.name) {
        return Err(hidden());
    }
    let resolved = snapshot
        .resolve(target.account, target.name, target.qualifier, sub_tenant)
        .map_err(|err| match err {
            ResolveError::NoFunction => ApiError::NotFound(format!("no function {}/{}", target.account, target.name)),
            ResolveError::NoQualifier => ApiError::NotFound(format!(
                "function {}/{} has no invocable version {}",
                target.account, target.name, target.qualifier
            )),
        })?;
    if !own && !resolved.version.config.public {
        return Err(hidden());
    }
    Ok(Route {
        version: resolved.version.clone(),
        alias: resolved.alias.cloned(),
        via: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::records::{VersionConfig, VersionState};
    use crate::registry::store::mem::MemStore;
    use crate::registry::tests::{BOUNDS, config};
    use crate::registry::{PutMode, Registry, StorageLimits, blobs, kv};

    fn name(text: &str) -> AccountName {
        AccountName::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn function(text: &str) -> FunctionName {
        FunctionName::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn caller(account: &str) -> Caller {
        Caller::Account {
            account: name(account),
            id: format!("{account}-id"),
            key_id: "k".into(),
        }
    }

    fn with_key(caller: &Caller) -> Presented {
        Presented::Stratus {
            caller: caller.clone(),
            sub_tenant: None,
        }
    }

    fn nested(caller: &Caller, owner: &str) -> Presented {
        Presented::Nested {
            caller: caller.clone(),
            sub_tenant: None,
            owner: name(owner),
            parent: Lineage {
                depth: 0,
                deadline: std::time::Instant::now() + std::time::Duration::from_secs(5),
                caller_id: caller.id().into(),
                key_id: "k".into(),
                owner_id: format!("{owner}-id").into(),
            },
        }
    }

    use crate::tenancy::Lineage;

    /// acme has `private` (one private version), `public` (version 1
    /// public, version 2 private: `latest` is private) and `open` (public);
    /// globex holds `theirs`, a cross-account alias to acme/private that
    /// acme's grant covers; initech holds `revoked`, to acme/open, whose
    /// grant was revoked.
    async fn world() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::start(
            Arc::new(MemStore::default()),
            Arc::new(kv::Kv::open(&db, Default::default()).unwrap_or_else(|e| panic!("{e}"))),
            Arc::new(blobs::MemBlobStore::default()),
            StorageLimits::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let ok = |r: Result<(), crate::registry::RegistryError>| r.unwrap_or_else(|e| panic!("{e}"));
        for account in ["acme", "globex", "initech"] {
            registry
                .create_account(&name(account))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let acme = name("acme");
        for (f, public) in [("private", false), ("public", true), ("public", false), ("open", true)] {
            let config = VersionConfig { public, ..config() };
            let v = registry
                .create_version(&acme, &function(f), &"ab".repeat(32), 1, config, BOUNDS)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            ok(registry
                .finish_version(&acme, &function(f), v.number, VersionState::Ready, Some(1))
                .await);
        }
        for (grantee, f, alias) in [("globex", "private", "theirs"), ("initech", "open", "revoked")] {
            registry
                .put_grant(&acme, &function(f), &name(grantee), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let target = crate::registry::CrossTarget::parse(&format!("acme/{f}")).unwrap_or_else(|e| panic!("{e}"));
            registry
                .put_cross_alias(
                    &name(grantee),
                    &function(alias),
                    target,
                    Default::default(),
                    PutMode::Create,
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        ok(registry.delete_grant(&acme, &function("open"), &name("initech")).await);
        (dir, registry)
    }

    /// The outcome of a call, as the status it would answer.
    fn status(result: Result<Route, ApiError>) -> Result<(String, u32, Option<String>), u16> {
        result
            .map(|r| (r.version.function.to_string(), r.version.number, r.via))
            .map_err(|e| e.status().as_u16())
    }

    fn call(
        snapshot: &Snapshot,
        presented: &Presented,
        caller: &Caller,
        account: &str,
        f: &str,
        qualifier: Qualifier,
    ) -> Result<(String, u32, Option<String>), u16> {
        let (account, f) = (name(account), function(f));
        let address = Address {
            account: &account,
            name: &f,
            qualifier: &qualifier,
        };
        status(route(snapshot, presented, caller, None, &address))
    }

    #[tokio::test]
    async fn each_visibility_rule_of_the_trigger() {
        let (_dir, registry) = world().await;
        let s = registry.snapshot();
        let (acme, globex, initech) = (caller("acme"), caller("globex"), caller("initech"));
        let anonymous = (Presented::Nothing, Caller::Anonymous);
        let latest = || Qualifier::Latest;

        // The owner sees its private function.
        assert_eq!(
            call(&s, &with_key(&acme), &acme, "acme", "private", latest()),
            Ok(("private".into(), 1, None))
        );
        // Others do not learn it exists: 404 for an account, 401 for anonymous.
        assert_eq!(
            call(&s, &with_key(&globex), &globex, "acme", "private", latest()),
            Err(404)
        );
        assert_eq!(
            call(&s, &anonymous.0, &anonymous.1, "acme", "private", latest()),
            Err(401)
        );
        // A missing function answers the same as a private one.
        assert_eq!(
            call(&s, &with_key(&globex), &globex, "acme", "nothing", latest()),
            Err(404)
        );
        assert_eq!(
            call(&s, &anonymous.0, &anonymous.1, "acme", "nothing", latest()),
            Err(401)
        );
        // A public version is anyone's; a private version of a function with
        // a public one is not.
        assert_eq!(
            call(&s, &anonymous.0, &anonymous.1, "acme", "open", latest()),
            Ok(("open".into(), 1, None))
        );
        assert_eq!(
            call(&s, &anonymous.0, &anonymous.1, "acme", "public", Qualifier::Version(1)),
            Ok(("public".into(), 1, None))
        );
        assert_eq!(
            call(&s, &anonymous.0, &anonymous.1, "acme", "public", latest()),
            Err(401)
        );
        assert_eq!(
            call(&s, &with_key(&globex), &globex, "acme", "public", Qualifier::Version(2)),
            Err(404)
        );
        // The owner is told a missing version exists not.
        assert_eq!(
            call(&s, &with_key(&acme), &acme, "acme", "private", Qualifier::Version(9)),
            Err(404)
        );

        // A cross-account alias: its holder calls the owner's code through it.
        assert_eq!(
            call(&s, &with_key(&globex), &globex, "globex", "theirs", latest()),
            Ok(("private".into(), 1, Some("globex/theirs".into())))
        );
        // Only its holder sees it.
        assert_eq!(
            call(&s, &with_key(&acme), &acme, "globex", "theirs", latest()),
            Err(404)
        );
        assert_eq!(
            call(&s, &anonymous.0, &anonymous.1, "globex", "theirs", latest()),
            Err(401)
        );
        // It takes no qualifier.
        assert_eq!(
            call(
                &s,
                &with_key(&globex),
                &globex,
                "globex",
                "theirs",
                Qualifier::Version(1)
            ),
            Err(400)
        );
        // Its grant revoked, it answers 403 (grant_revoked) to its holder.
        assert_eq!(
            call(&s, &with_key(&initech), &initech, "initech", "revoked", latest()),
            Err(403)
        );

        // A nested call (an invocation token of acme's code, called by
        // globex) reaches acme's functions, private ones too…
        assert_eq!(
            call(&s, &nested(&globex, "acme"), &globex, "acme", "private", latest()),
            Ok(("private".into(), 1, None))
        );
        // …and the caller's own cross-account aliases…
        assert_eq!(
            call(&s, &nested(&globex, "acme"), &globex, "globex", "theirs", latest()),
            Ok(("private".into(), 1, Some("globex/theirs".into())))
        );
        // …but nothing of a third account, not even a public function.
        assert_eq!(
            call(&s, &nested(&globex, "acme"), &globex, "initech", "anything", latest()),
            Err(403)
        );
        assert_eq!(
            call(&s, &nested(&acme, "globex"), &acme, "acme", "open", latest()),
            Err(403)
        );
    }
}
