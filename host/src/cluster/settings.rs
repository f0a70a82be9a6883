//! The settings that define how the cluster behaves, which every node must
//! share: the issuer, the operator key's hash, the base domain, the clock
//! skew and what accounts may store. The first node writes them; a node
//! started with another value refuses to start and names the setting, since
//! two nodes that disagree would answer the same request differently.
//!
//! The schema version is kept beside them: a node refuses a cluster whose
//! layout is newer than it knows, so a rolling upgrade only moves forward.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

use super::{ClusterConfig, SCHEMA};
use crate::credentials::keys;

/// The name of the operator key's hash among the settings.
const OPERATOR: &str = "operator-key-hash";

/// Where a single node keeps its generated operator key's hash, which an
/// imported data directory brings along.
const IMPORTED_OPERATOR: &str = "operator_key_hash";

/// The settings this node was started with, by the flag that sets each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(pub BTreeMap<String, String>);

/// What joining gave: the operator key's hash, and the key itself when this
/// node generated it (to be shown once).
pub struct Joined {
    /// The cluster's operator key hash.
    pub operator_hash: [u8; 32],
    /// The key, if this node made it.
    pub generated: Option<String>,
}

/// Checks the schema, then agrees the settings with the cluster: the first
/// node stores `ours` (with the operator key's hash, a new key if none was
/// given); every later one must match what is stored.
pub async fn join(
    client: &Client,
    cluster: &ClusterConfig,
    ours: &Settings,
    operator_key: Option<&str>,
) -> anyhow::Result<Joined> {
    let mut client = client.clone();
    check_schema(&mut client, cluster).await?;
    let key = cluster.key("settings");
    let given_hash = operator_key.map(|k| hex::encode(keys::hash(k)));
    for _ in 0..8 {
        let stored = client.get(key.clone(), None).await?;
        if let Some(kv) = stored.kvs().first() {
            let theirs: BTreeMap<String, String> = serde_json::from_slice(kv.value())
                .map_err(|e| anyhow::anyhow!("the cluster's settings at {key} cannot be read: {e}"))?;
            compare(ours, &theirs, given_hash.as_deref())?;
            let hash = theirs
                .get(OPERATOR)
                .ok_or_else(|| anyhow::anyhow!("the cluster's settings hold no operator key hash"))?;
            let mut operator_hash = [0u8; 32];
            hex::decode_to_slice(hash, &mut operator_hash)?;
            return Ok(Joined {
                operator_hash,
                generated: None,
            });
        }
        // The first node: the settings are ours. Without a key given, an
        // imported single node's stored one stays the operator's.
        let imported = client
            .get(
                cluster.key(&format!(
                    "registry/{}",
                    crate::registry::layout::meta(IMPORTED_OPERATOR)
                )),
                None,
            )
            .await?
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
        let (hash, generated) = match (&given_hash, imported) {
            (Some(hash), _) => (hash.clone(), None),
            (None, Some(hash)) => (hash, None),
            (None, None) => {
                let key = keys::generate_operator();
                (hex::encode(key.hash()), Some(key.expose().to_string()))
            }
        };
        let mut mine = ours.0.clone();
        mine.insert(OPERATOR.into(), hash.clone());
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), serde_json::to_vec(&mine)?, None)]);
        if client.txn(txn).await?.succeeded() {
            let mut operator_hash = [0u8; 32];
            hex::decode_to_slice(&hash, &mut operator_hash)?;
            return Ok(Joined {
                operator_hash,
                generated,
            });
        }
        // Another node was first: agree with it instead.
    }
    anyhow::bail!("the cluster's settings at {key} kept changing while this node joined")
}

/// The cluster's stored settings (empty before its first node started).
pub async fn read(client: &Client, cluster: &ClusterConfig) -> anyhow::Result<BTreeMap<String, String>> {
    let stored = client.clone().get(cluster.key("settings"), None).await?;
    Ok(match stored.kvs().first() {
        Some(kv) => serde_json::from_slice(kv.value())?,
        None => BTreeMap::new(),
    })
}

async fn check_schema(client: &mut Client, cluster: &ClusterConfig) -> anyhow::Result<()> {
    let key = cluster.key("schema");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), SCHEMA.to_string(), None)]);
    if client.txn(txn).await?.succeeded() {
        return Ok(());
    }
    let stored = client.get(key.clone(), None).await?;
    let text = stored
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .unwrap_or_default();
    let version: u32 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("the cluster's schema version at {key} is {text:?}, not a number"))?;
    if version > SCHEMA {
        anyhow::bail!(
            "the cluster's layout is schema version {version}, newer than this build's {SCHEMA}: upgrade this node to the version the other nodes run"
        );
    }
    Ok(())
}

/// Refuses the first setting of `ours` that differs from `theirs`.
fn compare(ours: &Settings, theirs: &BTreeMap<String, String>, given_hash: Option<&str>) -> anyhow::Result<()> {
    if let Some(given) = given_hash
        && theirs.get(OPERATOR).is_some_and(|stored| stored != given)
    {
        anyhow::bail!(
            "STRATUS_OPERATOR_KEY is not the cluster's operator key: start this node with the key the first node used (or printed), or without one"
        );
    }
    for (name, value) in &ours.0 {
        // A setting the cluster's first node did not know is not compared.
        if let Some(stored) = theirs.get(name)
            && stored != value
        {
            let shown = |v: &str| {
                if v.is_empty() {
                    "unset".to_string()
                } else {
                    format!("{v:?}")
                }
            };
            anyhow::bail!(
                "--{name} is {} on this node but {} in the cluster: every node must share it; start this node with the cluster's value \
                 (to change it for the whole cluster, stop every node, then update {{PREFIX}}/v1/settings as docs/cluster.md says under \"Settings every node must share\")",
                shown(value),
                shown(stored)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_differing_setting_is_refused_by_name() {
        let theirs: BTreeMap<String, String> = [("issuer", "https://a"), (OPERATOR, "ab")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(compare(&settings(&[("issuer", "https://a")]), &theirs, None).is_ok());
        let err = compare(&settings(&[("issuer", "https://b")]), &theirs, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--issuer") && err.contains("https://b"), "{err}");
        assert!(compare(&settings(&[("issuer", "https://a")]), &theirs, Some("cd")).is_err());
        // A setting the first node did not record is not compared.
        assert!(compare(&settings(&[("clock-skew", "1s")]), &theirs, None).is_ok());
    }
}
