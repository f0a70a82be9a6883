//! Where reservations live in a cluster. Each reservation gets a reserved
//! arc: the first nodes of the ring from its group's point, as many as the
//! cluster's arc size (fewer when its `target` is smaller, so that no node of
//! the arc holds nothing). Its `min` and `target` are split evenly across
//! them. One node, the leader of an etcd election, writes the placement to
//! `v1/placement`; every node keeps its own share of each reservation, and
//! the frontends send the reservation's calls to its arc.
//!
//! The placement is written only by the leader, and only while its election
//! key still exists (the write compares it), so a node that lost the
//! election while cut off cannot overwrite its successor's placement.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::ClusterConfig;
use super::members::Directory;
use super::ring::{Ring, VNODES};
use crate::registry::Registry;
use crate::registry::records::ReservationRecord;

/// The key, under the cluster's prefix, that holds the placement.
const KEY: &str = "placement";
/// The election whose leader writes it.
const ELECTION: &str = "election/placement";

/// Every reservation's arc and shares, as the leader last wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The node that wrote it.
    pub leader: String,
    /// How long an idle environment stays warm on the nodes, in ms: how long
    /// a frontend keeps a partition on its node once the reservation that
    /// put it there shrank or went away.
    pub keep_ms: u64,
    /// The reservations, in (account, function, qualifier) order.
    pub reservations: Vec<Placed>,
}

/// One reservation's arc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// The owner.
    pub account: String,
    /// The function.
    pub function: String,
    /// Its version number or alias; none is `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// The only sub-tenant whose calls take its environments, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_tenant: Option<String>,
    /// The arc, in ring order, with each node's share.
    pub nodes: Vec<Share>,
}

/// A node's part of one reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The node's id.
    pub node: String,
    /// Environments it keeps at all times.
    pub min: u32,
    /// Environments it keeps while capacity allows.
    pub target: u32,
}

/// `n` split into `parts` shares that differ by at most one, the larger first.
pub fn split(n: u32, parts: usize) -> Vec<u32> {
    let parts = parts.max(1) as u32;
    (0..parts).map(|i| n / parts + u32::from(i < n % parts)).collect()
}

/// The group key of a reservation's calls: the one the frontends hash, so
/// that a reservation's arc starts where its calls would land anyway.
pub fn group_key(account: &str, function: &str, sub_tenant: Option<&str>) -> String {
    match sub_tenant {
        Some(sub) => format!("{account}/{function}/{sub}"),
        None => format!("{account}/{function}"),
    }
}

/// The placement of `reservations` on `nodes`, arcs of `arc_size`.
pub fn compute<'a>(
    nodes: &[String],
    reservations: impl Iterator<Item = &'a ReservationRecord>,
    arc_size: usize,
    keep: Duration,
) -> Placement {
    let ring = Ring::new(nodes, VNODES);
    let mut placed: Vec<Placed> = Vec::new();
    if !ring.nodes().is_empty() {
        for record in reservations {
            let sub_tenant = record.sub_tenant.as_ref().map(|s| s.as_str().to_string());
            let key = group_key(record.account.as_str(), record.function.as_str(), sub_tenant.as_deref());
            let width = arc_size.max(1).min(record.target.max(1) as usize);
            let arc = ring.arc(key.as_bytes(), width);
            let mins = split(record.min, arc.len());
            let targets = split(record.target, arc.len());
            placed.push(Placed {
                account: record.account.as_str().to_string(),
                function: record.function.as_str().to_string(),
                qualifier: record.qualifier.clone(),
                sub_tenant,
                nodes: arc
                    .iter()
                    .zip(mins.iter().zip(&targets))
                    .map(|(node, (min, target))| Share {
                        node: node.to_string(),
                        min: *min,
                        target: *target,
                    })
                    .collect(),
            });
        }
    }
    placed.sort_by(Placed::order);
    Placement {
        leader: String::new(),
        keep_ms: keep.as_millis() as u64,
        reservations: placed,
    }
}

impl Placed {
    fn order(a: &Placed, b: &Placed) -> std::cmp::Ordering {
        (&a.account, &a.function, &a.qualifier).cmp(&(&b.account, &b.function, &b.qualifier))
    }
}

impl Placement {
    /// The reservation of `account/function[:qualifier]`, if placed (a
    /// binary search: the reservations are kept in order, and a frontend
    /// looks up every call).
    pub fn find(&self, account: &str, function: &str, qualifier: Option<&str>) -> Option<&Placed> {
        let at = self
            .reservations
            .binary_search_by(|p| {
                (p.account.as_str(), p.function.as_str(), p.qualifier.as_deref()).cmp(&(account, function, qualifier))
            })
            .ok()?;
        self.reservations.get(at)
    }

    /// `node`'s (min, target) of that reservation; `None` when the node is
    /// not on its arc (or it is not placed yet).
    pub fn share(&self, node: &str, account: &str, function: &str, qualifier: Option<&str>) -> Option<(u32, u32)> {
        let placed = self.find(account, function, qualifier)?;
        placed.nodes.iter().find(|s| s.node == node).map(|s| (s.min, s.target))
    }

    /// Whether the two place the same environments on the same nodes.
    fn same_as(&self, other: &Placement) -> bool {
        self.keep_ms == other.keep_ms && self.reservations == other.reservations
    }
}

/// The placement as last read, refreshed twice a second: what a node's
/// reservations and a frontend's routing consult without asking etcd.
#[derive(Default)]
pub struct View {
    current: RwLock<Arc<Placement>>,
}

impl View {
    /// Keeps a view of `cluster`'s placement fresh while it is held.
    pub fn follow(client: Client, cluster: ClusterConfig) -> Arc<Self> {
        let view = Arc::new(Self::default());
        let weak = Arc::downgrade(&view);
        tokio::spawn(async move {
            let key = cluster.key(KEY);
            let mut client = client;
            loop {
                let found = client.get(key.clone(), None).await;
                let Some(view) = weak.upgrade() else { return };
                match found {
                    Ok(found) => {
                        let placement = match found.kvs().first() {
                            Some(kv) => serde_json::from_slice(kv.value()).unwrap_or_else(|err| {
                                tracing::warn!(%err, "the cluster's placement cannot be read; keeping none");
                                Placement::default()
                            }),
                            None => Placement::default(),
                        };
                        view.set(placement);
                    }
                    // Unreachable etcd: the last placement stands.
                    Err(err) => tracing::debug!(%err, "cannot read the cluster's placement"),
                }
                drop(view);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        view
    }

    /// The placement as last read.
    pub fn get(&self) -> Arc<Placement> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, mut placement: Placement) {
        // In order whoever wrote it, so that lookups can search it.
        placement.reservations.sort_by(Placed::order);
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if **current != placement {
            *current = Arc::new(placement);
        }
    }
}

/// What the leader works from.
pub struct Leader {
    /// The etcd connection.
    pub client: Client,
    /// The cluster and this node's id.
    pub cluster: ClusterConfig,
    /// The registry, for the reservations.
    pub registry: Arc<Registry>,
    /// The live nodes.
    pub peers: Arc<Directory>,
    /// The placement as read; updated at once after a write.
    pub view: Arc<View>,
    /// The cluster's arc size.
    pub arc_size: usize,
    /// How long idle environments stay warm.
    pub keep: Duration,
}

impl Leader {
    /// Campaigns for leadership with this node's membership lease (from
    /// `lease`, which changes when the node joins again); while it leads,
    /// writes the placement whenever the reservations or the nodes change.
    /// Ends when `alive` can no longer be upgraded.
    pub fn spawn<T: Send + Sync + 'static>(self, alive: Weak<T>, lease: impl Fn() -> Option<i64> + Send + 'static) {
        tokio::spawn(async move {
            let name = self.cluster.key(ELECTION);
            let mut election = self.client.election_client();
            loop {
                if alive.strong_count() == 0 {
                    return;
                }
                let Some(held) = lease() else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                // While another node leads, this returns an error when the
                // request times out; the candidacy stays with the lease.
                let elected = match election
                    .campaign(name.clone(), self.cluster.node_id.clone(), held)
                    .await
                {
                    Ok(answer) => answer.leader().cloned(),
                    Err(err) => {
                        tracing::debug!(%err, "not the placement leader (yet)");
                        None
                    }
                };
                let Some(leader) = elected else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tracing::info!(node = %self.cluster.node_id, "this node now places the cluster's reservations");
                // Each failure is said once, not every round.
                let mut failing: Option<String> = None;
                while alive.strong_count() > 0 && lease() == Some(held) {
                    match self.write_if_changed(&leader).await {
                        Ok(true) => failing = None,
                        Ok(false) => break,
                        Err(err) => {
                            let text = err.to_string();
                            if failing.as_deref() != Some(text.as_str()) {
                                tracing::warn!(err = %text, "cannot write the placement; the last one stands");
                                failing = Some(text);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tracing::info!(node = %self.cluster.node_id, "this node no longer places reservations");
            }
        });
    }

    /// Writes the placement if it changed; false when this node turned out
    /// not to lead any more.
    async fn write_if_changed(&self, leader: &etcd_client::LeaderKey) -> anyhow::Result<bool> {
        let nodes: Vec<String> = self.peers.members().into_iter().map(|m| m.id).collect();
        let snapshot = self.registry.snapshot();
        let mut placement = compute(
            &nodes,
            snapshot.reservations().map(|(_, r)| r.as_ref()),
            self.arc_size,
            self.keep,
        );
        placement.leader = self.cluster.node_id.clone();
        let current = self.view.get();
        if current.same_as(&placement) && current.leader == placement.leader {
            return Ok(true);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                leader.key().to_vec(),
                CompareOp::Equal,
                leader.rev(),
            )])
            .and_then([TxnOp::put(self.cluster.key(KEY), serde_json::to_vec(&placement)?, None)]);
        if !self.client.clone().txn(txn).await?.succeeded() {
            return Ok(false);
        }
        tracing::info!(
            reservations = placement.reservations.len(),
            "placed the cluster's reservations"
        );
        self.view.set(placement);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{AccountName, FunctionName, SubTenantId};

    fn record(function: &str, min: u32, target: u32, sub: Option<&str>) -> ReservationRecord {
        ReservationRecord {
            account: AccountName::parse("acme").unwrap_or_else(|e| panic!("{e}")),
            function: FunctionName::parse(function).unwrap_or_else(|e| panic!("{e}")),
            qualifier: None,
            sub_tenant: sub.map(|s| SubTenantId::parse(s).unwrap_or_else(|e| panic!("{e}"))),
            min,
            target,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn shares_split_evenly_and_sum_to_the_reservation() {
        assert_eq!(split(8, 2), vec![4, 4]);
        assert_eq!(split(5, 3), vec![2, 2, 1]);
        assert_eq!(split(1, 2), vec![1, 0]);
        assert_eq!(split(0, 3), vec![0, 0, 0]);
        let nodes: Vec<String> = (1..=3).map(|i| format!("node{i}")).collect();
        let records = [
            record("big", 5, 8, None),
            record("one", 1, 1, None),
            record("sub", 2, 2, Some("alice")),
        ];
        let placement = compute(&nodes, records.iter(), 2, Duration::from_secs(60));
        assert_eq!(placement.keep_ms, 60_000);
        for (placed, record) in placement
            .reservations
            .iter()
            .zip([&records[0], &records[1], &records[2]])
        {
            assert_eq!(placed.nodes.iter().map(|s| s.min).sum::<u32>(), record.min);
            assert_eq!(placed.nodes.iter().map(|s| s.target).sum::<u32>(), record.target);
            assert!(
                placed.nodes.iter().all(|s| s.target > 0),
                "no node of an arc holds nothing"
            );
        }
        let one = placement.find("acme", "one", None).unwrap_or_else(|| panic!("placed"));
        assert_eq!(one.nodes.len(), 1, "a target of 1 needs one node");
        let big = placement.find("acme", "big", None).unwrap_or_else(|| panic!("placed"));
        assert_eq!(big.nodes.len(), 2);
        // The arc starts where the group's calls land on the frontends' ring.
        let ring = Ring::new(&nodes, VNODES);
        assert_eq!(big.nodes[0].node, ring.arc(b"acme/big", 1)[0]);
        let sub = placement.find("acme", "sub", None).unwrap_or_else(|| panic!("placed"));
        assert_eq!(sub.nodes[0].node, ring.arc(b"acme/sub/alice", 1)[0]);
        assert!(compute(&[], records.iter(), 2, Duration::ZERO).reservations.is_empty());
    }

    #[test]
    fn a_node_off_the_arc_keeps_nothing() {
        let nodes: Vec<String> = (1..=3).map(|i| format!("node{i}")).collect();
        let records = [record("big", 4, 4, None)];
        let placement = compute(&nodes, records.iter(), 2, Duration::ZERO);
        let on: Vec<&str> = placement.reservations[0]
            .nodes
            .iter()
            .map(|s| s.node.as_str())
            .collect();
        for node in &nodes {
            let share = placement.share(node, "acme", "big", None);
            assert_eq!(share.is_some(), on.contains(&node.as_str()), "{node}");
        }
        assert_eq!(
            placement.share(on[0], "acme", "big", Some("live")),
            None,
            "another qualifier"
        );
    }
}
