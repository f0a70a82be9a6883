//! Commands on reservations: how many environments to keep instantiated for
//! a function qualifier. Their bounds are per account and host-wide, so a
//! plan that takes room compares and rewrites the host-wide guard too.

use super::command::{Command, Planned, guard_account, guard_host};
use super::error::{RegistryError, Result};
use super::layout;
use super::limits::StorageLimits;
use super::records::{ReservationRecord, encode};
use super::snapshot::Snapshot;
use super::store::Txn;
use crate::names::{AccountName, FunctionName, Qualifier, SubTenantId};

/// What a reservation asks for.
#[derive(Debug, Clone)]
pub struct ReservationSpec {
    /// Only calls of this sub-tenant take the environments.
    pub sub_tenant: Option<SubTenantId>,
    /// Kept at all times.
    pub min: u32,
    /// Added as capacity allows.
    pub target: u32,
}

/// How much of the pool reservations may keep.
#[derive(Debug, Clone, Copy)]
pub struct ReservationBounds {
    /// The pool's environment slots.
    pub slots: u32,
    /// Environments one account's reservations may keep.
    pub per_account: u32,
    /// Environments all reservations may keep; below `slots` on one node,
    /// the nodes' ceilings together in a cluster.
    pub host: u32,
    /// The nodes that share `host` (1 on a single node).
    pub nodes: u32,
}

/// Creates or changes the reservation of `function[:qualifier]`, within
/// `bounds`: each reservation's `target` counts, since it may hold that many
/// slots. Answers it and whether it is new.
pub struct PutReservation {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// Its version or alias.
    pub qualifier: Qualifier,
    /// What it asks for.
    pub spec: ReservationSpec,
    /// What the host allows.
    pub bounds: ReservationBounds,
    /// When, Unix seconds.
    pub at: u64,
}

impl Command for PutReservation {
    type Output = (ReservationRecord, bool);

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<Self::Output>> {
        let (account, function, qualifier, spec, bounds) =
            (&self.account, &self.function, &self.qualifier, &self.spec, &self.bounds);
        let slots = bounds.slots;
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        guard_host(&mut txn, snapshot, layout::RESERVATIONS_GUARD);
        snapshot
            .resolve(account, function, qualifier, None)
            .map_err(|_| RegistryError::NotFound(format!("{function} has no invocable version {qualifier}")))?;
        if spec.min > spec.target || spec.target == 0 {
            return Err(RegistryError::Invalid(
                "a reservation needs 0 ≤ min ≤ target and target ≥ 1".into(),
            ));
        }
        if spec.target > slots {
            return Err(RegistryError::Invalid(format!(
                "target {} exceeds the host's {slots} environment slots",
                spec.target
            )));
        }
        let key = (account.clone(), function.clone(), qualifier.to_string());
        let others = || snapshot.reservations().filter(|(k, _)| **k != key);
        let own: u64 = others()
            .filter(|((owner, _, _), _)| owner == account)
            .map(|(_, r)| u64::from(r.target))
            .sum();
        let all: u64 = others().map(|(_, r)| u64::from(r.target)).sum();
        let wanted = u64::from(spec.target);
        if own + wanted > u64::from(bounds.per_account) {
            return Err(RegistryError::Conflict(format!(
                "an account may reserve {} environments in all; {account}'s other reservations keep {own}, so this one may have a target of at most {}",
                bounds.per_account,
                u64::from(bounds.per_account).saturating_sub(own)
            )));
        }
        if all + wanted > u64::from(bounds.host) {
            return Err(RegistryError::Conflict(if bounds.nodes > 1 {
                format!(
                    "reservations may keep {} environments on the cluster's {} live nodes (the nodes' --max-reserved-slots together), so that calls without one keep room; {all} are reserved already",
                    bounds.host, bounds.nodes
                )
            } else {
                format!(
                    "reservations may keep {} of the host's {slots} environment slots, so that calls without one keep room; {all} are reserved already",
                    bounds.host
                )
            }));
        }
        let existing = snapshot.reservation(account, function, &key.2);
        let record = ReservationRecord {
            account: account.clone(),
            function: function.clone(),
            qualifier: match qualifier {
                Qualifier::Latest => None,
                other => Some(other.to_string()),
            },
            sub_tenant: spec.sub_tenant.clone(),
            min: spec.min,
            target: spec.target,
            created_at: existing.map_or(self.at, |r| r.created_at),
            updated_at: self.at,
        };
        txn.put(layout::reservation(account, function, qualifier), encode(&record));
        Ok(Planned::new(txn, (record, existing.is_none())))
    }
}

/// Deletes a reservation; its idle environments are dropped, calls in
/// flight are not touched.
pub struct DeleteReservation {
    /// The owner.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// Its version or alias.
    pub qualifier: Qualifier,
}

impl Command for DeleteReservation {
    type Output = ();

    fn plan(&self, snapshot: &Snapshot, _: &StorageLimits) -> Result<Planned<()>> {
        let (account, function, qualifier) = (&self.account, &self.function, &self.qualifier);
        let mut txn = Txn::new();
        guard_account(&mut txn, snapshot, account)?;
        let key = layout::reservation(account, function, qualifier);
        if snapshot.stored(&key).is_none() {
            return Err(RegistryError::NotFound(format!(
                "{function}:{qualifier} has no reservation"
            )));
        }
        txn.delete(key);
        Ok(Planned::new(txn, ()))
    }
}
