//! `GET /admin/v1/cluster`: the live nodes, how far each one's registry is
//! behind, and etcd's health, as seen from the node asked.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::state::AppState;
use crate::error::ApiError;

/// How long a node is given to say how it is.
const ASK: Duration = Duration::from_secs(1);

/// The cluster's state: `{"mode":"single"}` on one node.
pub async fn status(state: &AppState) -> Result<Value, ApiError> {
    let Some(node) = &state.cluster else {
        return Ok(json!({
            "mode": "single",
            "revision": state.registry.snapshot().revision(),
        }));
    };
    let mut client = node.client.clone();
    let etcd = match tokio::time::timeout(ASK * 2, client.status()).await {
        Ok(Ok(status)) => json!({
            "healthy": true,
            "version": status.version(),
            "db_size_bytes": status.db_size(),
            "leader": status.leader(),
            "revision": status.header().map(|h| h.revision()),
        }),
        Ok(Err(err)) => json!({ "healthy": false, "error": err.to_string() }),
        Err(_) => json!({ "healthy": false, "error": "etcd did not answer within 2 s" }),
    };
    let members = match crate::cluster::members::list(&node.client, &node.config).await {
        Ok(members) => members,
        Err(err) => {
            return Ok(json!({
                "mode": "cluster",
                "node": node.config.node_id,
                "etcd": etcd,
                "nodes": [],
                "error": format!("the nodes cannot be listed: {err}"),
            }));
        }
    };
    let newest = etcd["revision"].as_i64().unwrap_or_default();
    let asks = members.iter().map(|member| async move {
        let client = crate::client::Client::new(&member.advertise, None);
        let answer = tokio::time::timeout(ASK, client.send(Method::GET, "/readyz", &[], Bytes::new())).await;
        let ready: Option<Value> = match answer {
            Ok(Ok(reply)) if reply.status == StatusCode::OK => serde_json::from_slice(&reply.body).ok(),
            _ => None,
        };
        let revision = ready.as_ref().and_then(|r| r["revision"].as_i64());
        json!({
            "id": member.id,
            "advertise": member.advertise,
            "version": member.version,
            "started_at": member.started_at,
            "reachable": ready.is_some(),
            "revision": revision,
            "revisions_behind": revision.map(|r| (newest - r).max(0)),
            "lag_seconds": ready.as_ref().and_then(|r| r["lag_seconds"].as_f64()),
        })
    });
    let nodes = futures::future::join_all(asks).await;
    Ok(json!({
        "mode": "cluster",
        "node": node.config.node_id,
        "etcd": etcd,
        "nodes": nodes,
    }))
}
