//! `GET /admin/v1/cluster`: the live nodes, how far each one's registry is
//! behind, their parts of the ring, where the reservations are placed, and
//! etcd's health, as seen from the node asked.

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
            // Alarms (NOSPACE: the quota is reached) are errors.
            "healthy": status.errors().is_empty(),
            "errors": status.errors(),
            "version": status.version(),
            "db_size_bytes": status.db_size(),
            "leader": status.leader(),
            "revision": status.header().map(|h| h.revision()),
        }),
        Ok(Err(err)) => json!({ "healthy": false, "error": err.to_string() }),
        Err(_) => json!({ "healthy": false, "error": "etcd did not answer within 2 s" }),
    };
    // Without etcd, the nodes as this one last saw them.
    let (members, listed) = match crate::cluster::members::list(&node.client, &node.config).await {
        Ok(members) => (members, "now"),
        Err(_) => (node.peers.members(), "as last seen"),
    };
    let newest = etcd["revision"].as_i64().unwrap_or_default();
    // The ring the frontends build from these nodes (at their default
    // points per node), and each node's part of the group keys.
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let ring = crate::cluster::ring::Ring::new(&ids, crate::cluster::ring::VNODES);
    let shares: std::collections::HashMap<String, f64> = ring.shares().into_iter().collect();
    let shares = &shares;
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
            "ring_share": shares.get(&member.id).copied().unwrap_or(0.0),
        })
    });
    let nodes = futures::future::join_all(asks).await;
    Ok(json!({
        "mode": "cluster",
        "node": node.config.node_id,
        "etcd": etcd,
        "nodes": nodes,
        "nodes_listed": listed,
        "arc_size": node.config.arc_size,
        "placement": *node.placement.get(),
    }))
}

/// Marks a log read one node makes of another: answered from its own lines.
pub const LOGS_LOCAL: &str = "x-stratus-logs-local";

/// How long a node waits for another's lines before answering without them.
const LOGS_WAIT: Duration = Duration::from_secs(2);

/// The lines of every live node for the logs route at `path` (with its
/// query), merged with this node's `local` answer: in time order, or with
/// `follow`, the kept lines and then every node's new ones as they come. A
/// node that does not answer is left out (`x-stratus-nodes-missing`).
pub async fn merged_logs(
    state: &AppState,
    local: http::Response<super::respond::Body>,
    path: &str,
    key: Option<String>,
    follow: bool,
) -> http::Response<super::respond::Body> {
    use http_body_util::BodyExt as _;
    let Some(node) = &state.cluster else { return local };
    let peers: Vec<_> = node
        .peers
        .members()
        .into_iter()
        .filter(|m| m.id != node.config.node_id)
        .collect();
    if peers.is_empty() || !local.status().is_success() {
        return local;
    }
    let headers = [(LOGS_LOCAL, "1".to_string())];
    let asks = peers.iter().map(|peer| {
        let client = crate::client::Client::new(peer.admin.as_deref().unwrap_or(&peer.advertise), key.clone());
        let headers = headers.clone();
        async move {
            tokio::time::timeout(LOGS_WAIT, client.stream_with(path, &headers))
                .await
                .ok()
                .and_then(Result::ok)
        }
    });
    let answers = futures::future::join_all(asks).await;
    let missing = answers.iter().filter(|a| a.is_none()).count();
    let dropped_of = |headers: &http::HeaderMap| {
        headers
            .get("x-stratus-dropped-lines")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut dropped = dropped_of(local.headers());
    let mut remote = Vec::new();
    for answer in answers.into_iter().flatten() {
        dropped += dropped_of(answer.headers());
        remote.push(answer.into_body());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    if follow {
        // Every node's stream, line by line, as it comes.
        tokio::spawn(forward(local.into_body(), tx.clone()));
        for body in remote {
            tokio::spawn(forward(body, tx.clone()));
        }
    } else {
        // Everything kept, from every node, in time order.
        let mut lines = lines_of(local.into_body()).await;
        for body in remote {
            lines.extend(lines_of(body).await);
        }
        lines.sort_by_key(|(time, _)| *time);
        tokio::spawn(async move {
            for (_, line) in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
    }
    let body = http_body_util::StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(http_body::Frame::data(line)), rx))
    }));
    let mut response = http::Response::new(body.map_err(|never| match never {}).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert("x-stratus-dropped-lines", http::HeaderValue::from(dropped));
    headers.insert("x-stratus-nodes-missing", http::HeaderValue::from(missing as u64));
    response
}

/// Sends `body`'s data to `tx` until either ends.
async fn forward<B>(body: B, tx: tokio::sync::mpsc::Sender<Bytes>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let mut body = std::pin::pin!(body);
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && tx.send(data).await.is_err()
                    {
                        return;
                    }
                }
                _ => return,
            },
            () = tx.closed() => return,
        }
    }
}

/// The NDJSON lines of a whole `body`, each with its `time_ms`.
async fn lines_of<B>(body: B) -> Vec<(u64, Bytes)>
where
    B: http_body::Body<Data = Bytes>,
{
    use http_body_util::BodyExt as _;
    let Ok(Ok(collected)) = tokio::time::timeout(LOGS_WAIT, body.collect()).await else {
        return Vec::new();
    };
    collected
        .to_bytes()
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let time = serde_json::from_slice::<Value>(line)
                .ok()
                .and_then(|v| v["time_ms"].as_u64())
                .unwrap_or(0);
            let mut owned = line.to_vec();
            owned.push(b'\n');
            (time, Bytes::from(owned))
        })
        .collect()
}
