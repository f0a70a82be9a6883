//! Who the nodes are: each live node holds an etcd lease on
//! `v1/nodes/{id}`, whose value is its advertised URL. A node that stops
//! renewing (killed, cut off) drops out when the lease expires.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::ClusterConfig;

/// How long a node's entry outlives its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// A live node, as it announced itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Its `--node-id`.
    pub id: String,
    /// Its `--advertise` URL.
    pub advertise: String,
    /// Where its admin API is, when not at `advertise` (`--admin-listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// When it joined (Unix seconds).
    pub started_at: u64,
    /// The build it runs.
    pub version: String,
}

/// This node's membership; renewed until dropped.
pub struct Membership {
    renew: tokio::task::JoinHandle<()>,
    lease: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Membership {
    /// The lease the entry is held with now (a new one after rejoining).
    pub fn lease(&self) -> i64 {
        self.lease.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Leaves the cluster now (stopping): the entry goes with its lease.
    pub async fn leave(&self, client: &Client) {
        self.renew.abort();
        let lease = self.lease.load(std::sync::atomic::Ordering::Acquire);
        if let Err(err) = client.clone().lease_revoke(lease).await {
            tracing::warn!(%err, "cannot leave the cluster at once; the entry expires with its lease");
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

async fn claim(client: &mut Client, key: &str, value: &[u8]) -> anyhow::Result<Option<i64>> {
    let lease = client.lease_grant(LEASE_TTL.as_secs() as i64, None).await?.id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))]);
    if client.txn(txn).await?.succeeded() {
        Ok(Some(lease))
    } else {
        let _ = client.lease_revoke(lease).await;
        Ok(None)
    }
}

/// Announces this node. A node id still held (by a live node, or by one
/// stopped less than [`LEASE_TTL`] ago) is waited for that long, then
/// refused.
pub async fn join(client: &Client, cluster: &ClusterConfig) -> anyhow::Result<Membership> {
    let mut client = client.clone();
    let key = cluster.key(&format!("nodes/{}", cluster.node_id));
    let member = Member {
        id: cluster.node_id.clone(),
        advertise: cluster.advertise.clone(),
        admin: cluster.admin.clone(),
        started_at: crate::clock::now(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let value = serde_json::to_vec(&member)?;
    let deadline = tokio::time::Instant::now() + LEASE_TTL + Duration::from_secs(1);
    let mut told = false;
    let lease = loop {
        if let Some(lease) = claim(&mut client, &key, &value).await? {
            break lease;
        }
        if !told {
            told = true;
            tracing::info!(
                node_id = %cluster.node_id,
                "--node-id is still held; waiting up to {} s for the previous holder's lease to expire",
                (LEASE_TTL + Duration::from_secs(1)).as_secs()
            );
        }
        if tokio::time::Instant::now() >= deadline {
            let holder = client.get(key.clone(), None).await?;
            let at = holder
                .kvs()
                .first()
                .and_then(|kv| serde_json::from_slice::<Member>(kv.value()).ok())
                .map_or_else(String::new, |m| format!(" (at {})", m.advertise));
            anyhow::bail!(
                "--node-id {} is held by a live node{at}: give each node its own id",
                cluster.node_id
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let current = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(lease));
    let renew = tokio::spawn(renew(client, key, value, current.clone(), cluster.node_id.clone()));
    Ok(Membership { renew, lease: current })
}

/// Keeps the lease alive; when it was lost (etcd unreachable past the TTL),
/// joins again with a new one.
async fn renew(
    mut client: Client,
    key: String,
    value: Vec<u8>,
    current: std::sync::Arc<std::sync::atomic::AtomicI64>,
    node_id: String,
) {
    let mut lease = current.load(std::sync::atomic::Ordering::Acquire);
    loop {
        match client.lease_keep_alive(lease).await {
            Ok((mut keeper, mut answers)) => loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match answers.message().await {
                    Ok(Some(answer)) if answer.ttl() > 0 => {}
                    // Expired, or the stream ended: start over.
                    _ => break,
                }
                tokio::time::sleep(LEASE_TTL / 3).await;
            },
            Err(err) => tracing::warn!(%err, "cannot renew this node's membership"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Still ours? If the lease expired, the entry went with it.
        let alive = client
            .lease_time_to_live(lease, None)
            .await
            .is_ok_and(|answer| answer.ttl() > 0);
        if !alive {
            match claim(&mut client, &key, &value).await {
                Ok(Some(fresh)) => {
                    tracing::info!("this node joined the cluster again");
                    lease = fresh;
                    current.store(fresh, std::sync::atomic::Ordering::Release);
                }
                Ok(None) => {
                    // Two processes answering as one node would mint tokens
                    // the other is asked about: this one goes.
                    tracing::error!(
                        %node_id,
                        "another node took this node's --node-id while it was cut off from etcd; stopping"
                    );
                    std::process::exit(1);
                }
                Err(err) => tracing::warn!(%err, "cannot rejoin the cluster yet"),
            }
        }
    }
}

/// The live nodes, by id.
pub async fn list(client: &Client, cluster: &ClusterConfig) -> anyhow::Result<Vec<Member>> {
    let prefix = cluster.key("nodes/");
    let response = client
        .clone()
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    Ok(response
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect())
}

/// The live nodes as last read, refreshed every second: what the hot path
/// (a guest's request to another node's URL) and introspection consult
/// without asking etcd each time.
#[derive(Default)]
pub struct Directory {
    members: std::sync::RwLock<Vec<Member>>,
}

impl Directory {
    /// Keeps a directory of `cluster`'s nodes fresh while it is held.
    pub fn follow(client: Client, cluster: ClusterConfig) -> std::sync::Arc<Self> {
        let directory = std::sync::Arc::new(Self::default());
        let weak = std::sync::Arc::downgrade(&directory);
        tokio::spawn(async move {
            loop {
                let found = list(&client, &cluster).await;
                let Some(directory) = weak.upgrade() else { return };
                match found {
                    Ok(members) => {
                        *directory
                            .members
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = members
                    }
                    // Unreachable etcd: the last list stands.
                    Err(err) => tracing::debug!(%err, "cannot list the cluster's nodes"),
                }
                drop(directory);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        directory
    }

    /// The nodes as last read.
    pub fn members(&self) -> Vec<Member> {
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The node with id `id`, if it is live.
    pub fn get(&self, id: &str) -> Option<Member> {
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|m| m.id == id)
            .cloned()
    }

    /// Whether `host:port` is a live node's advertised authority.
    pub fn is_member_authority(&self, host: &str, port: u16) -> bool {
        self.members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|m| {
                m.advertise.parse::<http::Uri>().is_ok_and(|uri| {
                    let default = if uri.scheme_str() == Some("https") { 443 } else { 80 };
                    uri.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
                        && uri.port_u16().unwrap_or(default) == port
                })
            })
    }
}
