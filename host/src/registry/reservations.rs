//! Writes of reservations: how many environments to keep instantiated for a
//! function qualifier.

use super::records::{ReservationRecord, encode, now};
use super::{Registry, function_key};
use crate::error::ApiError;
use crate::names::{AccountName, FunctionName, Qualifier, SubTenantId};

fn reservation_key(account: &AccountName, function: &FunctionName, qualifier: &Qualifier) -> Vec<u8> {
    let mut key = function_key(account, function);
    key.push(b'/');
    key.extend_from_slice(qualifier.to_string().as_bytes());
    key
}

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
    /// Environments all reservations may keep; below `slots`.
    pub host: u32,
}

impl Registry {
    /// Creates or changes the reservation of `function[:qualifier]`, within
    /// `bounds`: each reservation's `target` counts, since it may hold that
    /// many slots.
    pub async fn put_reservation(
        &self,
        account: &AccountName,
        function: &FunctionName,
        qualifier: &Qualifier,
        spec: ReservationSpec,
        bounds: ReservationBounds,
    ) -> Result<(ReservationRecord, bool), ApiError> {
        let slots = bounds.slots;
        let _w = self.writer.lock().await;
        let snapshot = self.snapshot();
        snapshot
            .resolve(account, function, qualifier, None)
            .map_err(|_| ApiError::NotFound(format!("{function} has no invocable version {qualifier}")))?;
        if spec.min > spec.target || spec.target == 0 {
            return Err(ApiError::BadRequest(
                "a reservation needs 0 ≤ min ≤ target and target ≥ 1".into(),
            ));
        }
        if spec.target > slots {
            return Err(ApiError::BadRequest(format!(
                "target {} exceeds the host's {slots} environment slots",
                spec.target
            )));
        }
        let key = (account.clone(), function.clone(), qualifier.to_string());
        let others = || snapshot.reservations.iter().filter(|(k, _)| **k != key);
        let own: u64 = others()
            .filter(|((owner, _, _), _)| owner == account)
            .map(|(_, r)| u64::from(r.target))
            .sum();
        let all: u64 = others().map(|(_, r)| u64::from(r.target)).sum();
        let wanted = u64::from(spec.target);
        if own + wanted > u64::from(bounds.per_account) {
            return Err(ApiError::Conflict(format!(
                "an account may reserve {} environments in all; {account}'s other reservations keep {own}, so this one may have a target of at most {}",
                bounds.per_account,
                u64::from(bounds.per_account).saturating_sub(own)
            )));
        }
        if all + wanted > u64::from(bounds.host) {
            return Err(ApiError::Conflict(format!(
                "reservations may keep {} of the host's {slots} environment slots, so that calls without one keep room; {all} are reserved already",
                bounds.host
            )));
        }
        let existing = snapshot.reservations.get(&key);
        let time = now();
        let record = ReservationRecord {
            account: account.clone(),
            function: function.clone(),
            qualifier: match qualifier {
                Qualifier::Latest => None,
                other => Some(other.to_string()),
            },
            sub_tenant: spec.sub_tenant,
            min: spec.min,
            target: spec.target,
            created_at: existing.map_or(time, |r| r.created_at),
            updated_at: time,
        };
        self.trees
            .reservations
            .insert(reservation_key(account, function, qualifier), encode(&record))
            .map_err(ApiError::internal)?;
        self.commit(&[account]).await?;
        Ok((record, existing.is_none()))
    }

    /// Deletes a reservation; its idle environments are dropped, calls in
    /// flight are not touched.
    pub async fn delete_reservation(
        &self,
        account: &AccountName,
        function: &FunctionName,
        qualifier: &Qualifier,
    ) -> Result<(), ApiError> {
        let _w = self.writer.lock().await;
        let removed = self
            .trees
            .reservations
            .remove(reservation_key(account, function, qualifier))
            .map_err(ApiError::internal)?;
        if removed.is_none() {
            return Err(ApiError::NotFound(format!("{function}:{qualifier} has no reservation")));
        }
        self.commit(&[account]).await
    }
}
