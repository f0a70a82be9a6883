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

impl Registry {
    /// Creates or changes the reservation of `function[:qualifier]`. `slots`
    /// is the pool's size: all reservations' `min` together must fit in it.
    pub async fn put_reservation(
        &self,
        account: &AccountName,
        function: &FunctionName,
        qualifier: &Qualifier,
        spec: ReservationSpec,
        slots: u32,
    ) -> Result<(ReservationRecord, bool), ApiError> {
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
        let others: u64 = snapshot
            .reservations
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, r)| u64::from(r.min))
            .sum();
        if others + u64::from(spec.min) > u64::from(slots) {
            return Err(ApiError::Conflict(format!(
                "the host has {slots} environment slots and reservations already keep {others}"
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
        self.commit().await?;
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
        self.commit().await
    }
}
