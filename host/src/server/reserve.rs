//! Keeps the runtime's reserved environments in line with the registry's
//! reservations (in a cluster, with this node's share of them): after every
//! change, after a call took one, and twice a second in any case.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::state::AppState;
use crate::names::Qualifier;
use crate::runtime::reserve::{ReservedKey, Sizes};

/// Starts the loop; it ends when the server is dropped.
pub fn spawn(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            let Some(state) = weak.upgrade() else { return };
            reconcile(&state).await;
            let runtime = state.runtime.clone();
            drop(state);
            tokio::select! {
                () = runtime.reserved.taken.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

/// Whether this node was last short of room for its shares (said once).
static SHORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn reconcile(state: &AppState) {
    let snapshot = state.registry.snapshot();
    // A node keeps no more than its own ceiling, whatever its shares add up
    // to (a node on many arcs, or one started with a lower ceiling).
    let mut room = state.config.accounts.reserved_ceiling(state.config.runtime.pool_slots);
    let mut short = false;
    // In a cluster, this node keeps only its share of each reservation, as
    // the placement says; none before the reservation is placed.
    let placement = state
        .cluster
        .as_ref()
        .map(|node| (node.config.node_id.as_str(), node.placement.get()));
    let mut wanted = HashMap::new();
    let mut versions = HashMap::new();
    // In one order, so that a node short of room keeps the same ones.
    let mut reservations: Vec<_> = snapshot.reservations().collect();
    reservations.sort_by(|a, b| a.0.cmp(b.0));
    for ((account, function, _), record) in reservations {
        let qualifier = match &record.qualifier {
            None => Qualifier::Latest,
            Some(text) => match Qualifier::parse(text) {
                Ok(qualifier) => qualifier,
                Err(_) => continue,
            },
        };
        let Some((version, alias)) = snapshot.reserved_version(account, function, &qualifier) else {
            continue;
        };
        let key = ReservedKey::of(version, alias.map(|a| a.as_str()));
        // Room is counted only for reservations this node can keep.
        let (min, target) = match &placement {
            None => (record.min, record.target),
            Some((node, placement)) => {
                match placement.share(node, account.as_str(), function.as_str(), record.qualifier.as_deref()) {
                    Some((min, target)) => {
                        let kept = target.min(room);
                        short |= kept < target;
                        room -= kept;
                        if kept == 0 {
                            continue;
                        }
                        (min.min(kept), kept)
                    }
                    None => continue,
                }
            }
        };
        wanted.insert(
            key.clone(),
            Sizes {
                sub_tenant: record.sub_tenant.clone(),
                min,
                target,
            },
        );
        versions.insert(key, version.clone());
    }
    if short && !SHORT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "this node's shares of the cluster's reservations exceed its --max-reserved-slots; it keeps what fits"
        );
    }
    if !short {
        SHORT.store(false, std::sync::atomic::Ordering::Relaxed);
    }
    let lacking = state.runtime.reserved.set(&wanted);
    for (key, shortfall) in lacking {
        let Some(version) = versions.get(&key) else { continue };
        match state.prepare_version(version).await {
            Ok(pre) => state.runtime.top_up(&key, &pre, version, shortfall).await,
            Err(err) => tracing::warn!(error = %err, function = %version.function, "cannot load a reserved version"),
        }
    }
}
