//! A cluster: several `stratus serve --cluster etcd://…` nodes sharing one
//! etcd, which holds the registry, components, functions' data, signing keys,
//! compiled code and who the nodes are.
//!
//! Every key is under the cluster's prefix (default `/stratus`), then `v1/`:
//!
//! | key | holds |
//! |---|---|
//! | `v1/schema` | the layout's version; a node refuses a newer one |
//! | `v1/settings` | the settings every node must share (`settings`) |
//! | `v1/registry/…` | the registry's records, the only keys nodes watch |
//! | `v1/blobs/{sha}/…` | components, in chunks |
//! | `v1/kv/…` | functions' data and its usage |
//! | `v1/code/{engine}/{sha}/…` | compiled components, in chunks |
//! | `v1/locks/…` | who compiles what now (held by a lease) |
//! | `v1/nodes/{id}` | each live node's URL (held by its lease) |

pub mod code;
pub mod members;
pub mod placement;
pub mod ring;
pub mod settings;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{Client, ConnectOptions};

/// The layout of the keys this build writes.
pub const SCHEMA: u32 = 1;

/// What one account may store on a cluster unless the flags say otherwise:
/// etcd holds everything, 2 GiB by default, so the single node's defaults
/// (2 GiB of components, 1 GiB of KV) would let one account fill it.
pub const DEFAULT_BLOB_BYTES_PER_ACCOUNT: u64 = 128 << 20;
/// See [`DEFAULT_BLOB_BYTES_PER_ACCOUNT`].
pub const DEFAULT_KV_BYTES_PER_ACCOUNT: u64 = 128 << 20;

/// Distinct nodes in an arc unless `--arc-size` says otherwise.
pub const DEFAULT_ARC_SIZE: usize = 2;

/// Compiled code is a few times its component's size (3.3× for `hello`),
/// and lives in etcd too: a component costs the store about this many times
/// its bytes.
pub const STORED_PER_COMPONENT_BYTE: u64 = 5;

/// Refuses per-account storage limits under which one account could fill
/// half of etcd's backend quota (`store_bytes`) with components, their
/// compiled code and KV.
pub fn check_account_bounds(max_blob_bytes: u64, kv_bytes: u64, store_bytes: u64) -> anyhow::Result<()> {
    let worst = max_blob_bytes
        .saturating_mul(STORED_PER_COMPONENT_BYTE)
        .saturating_add(kv_bytes);
    anyhow::ensure!(
        worst <= store_bytes / 2,
        "one account could fill etcd: --max-blob-bytes-per-account {max_blob_bytes} (× {STORED_PER_COMPONENT_BYTE} with its compiled code) \
         plus --kv-quota-per-account {kv_bytes} is {worst} bytes, over half of --cluster-store-bytes {store_bytes} \
         (set that to etcd's --quota-backend-bytes, or lower the account limits)"
    );
    Ok(())
}

/// How a node reaches the cluster and names itself.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// The key prefix, without a trailing `/` (e.g. `/stratus`).
    pub prefix: String,
    /// This node's name, unique among live nodes.
    pub node_id: String,
    /// The URL other nodes and clients reach this node at.
    pub advertise: String,
    /// Its admin API's URL, when it has a listener of its own.
    pub admin: Option<String>,
    /// CA certificate to verify etcd with (TLS).
    pub ca: Option<PathBuf>,
    /// Client certificate and key to present to etcd.
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
    /// etcd user (its password from `STRATUS_CLUSTER_PASSWORD`).
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
    /// Distinct nodes in an arc: a group's calls, and a reservation's
    /// environments, spread over at most this many nodes.
    pub arc_size: usize,
}

impl ClusterConfig {
    /// Parses `etcd://H:P[,H:P…][/PREFIX]` (the prefix defaults to
    /// `/stratus`).
    pub fn parse_url(url: &str) -> anyhow::Result<(Vec<String>, String)> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| anyhow::anyhow!("--cluster {url:?} must start with etcd://, e.g. etcd://127.0.0.1:2379"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let prefix = if prefix.is_empty() { "/stratus" } else { prefix };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|host| {
                if host.contains(':') {
                    Ok(host.to_string())
                } else {
                    Err(anyhow::anyhow!("--cluster: {host:?} needs a port, e.g. {host}:2379"))
                }
            })
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(!endpoints.is_empty(), "--cluster {url:?} names no etcd endpoint");
        anyhow::ensure!(
            !prefix.contains("//") && prefix.chars().all(|c| c.is_ascii_graphic()),
            "--cluster: the prefix {prefix:?} must be a plain path like /stratus"
        );
        Ok((endpoints, prefix.to_string()))
    }

    /// The full key of `path` under the prefix (`v1/…`).
    pub fn key(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.prefix)
    }

    /// Connects to etcd with the configured TLS and credentials.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let tls = self.ca.is_some() || self.cert.is_some();
        let scheme = if tls { "https" } else { "http" };
        let endpoints: Vec<String> = self.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            // A write to an unreachable etcd answers 503 well within 5 s.
            .with_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some(user) = &self.user {
            let password = self.password.clone().ok_or_else(|| {
                anyhow::anyhow!("--cluster-user {user} needs its password in STRATUS_CLUSTER_PASSWORD")
            })?;
            options = options.with_user(user.clone(), password);
        }
        if tls {
            options = options.with_tls(self.tls()?);
        }
        Client::connect(&endpoints, Some(options))
            .await
            .with_context(|| format!("cannot reach etcd at {}", self.endpoints.join(",")))
    }

    fn tls(&self) -> anyhow::Result<etcd_client::TlsOptions> {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => anyhow::bail!("--cluster-cert and --cluster-key go together"),
        }
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_endpoints_and_a_prefix() {
        let parse = |url| ClusterConfig::parse_url(url).map_err(|e| e.to_string());
        assert_eq!(
            parse("etcd://127.0.0.1:2379"),
            Ok((vec!["127.0.0.1:2379".to_string()], "/stratus".to_string()))
        );
        assert_eq!(
            parse("etcd://a:1,b:2/team/prod/"),
            Ok((vec!["a:1".to_string(), "b:2".to_string()], "/team/prod".to_string()))
        );
        for bad in ["http://a:1", "etcd://", "etcd://a", "etcd://a:1/x//y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
