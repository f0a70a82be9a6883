//! `stratus cluster status`: the nodes of a cluster and etcd's health;
//! `stratus cluster import`: a single node's data directory into a new
//! cluster. Also the etcd flags `serve` shares.

use std::path::PathBuf;

use http::Method;

use super::global::Global;
use super::output::done;

/// How to reach a cluster's etcd.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// The cluster's etcd: `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (prefix
    /// `/stratus` by default). With `serve`, this host is one of its nodes,
    /// and DATA holds only the node's caches.
    #[arg(long, env = "STRATUS_CLUSTER", value_name = "URL")]
    pub cluster: Option<String>,
    /// CA certificate (PEM) to verify etcd's with; turns on TLS.
    #[arg(long, env = "STRATUS_CLUSTER_CA", requires = "cluster")]
    pub cluster_ca: Option<PathBuf>,
    /// Client certificate (PEM) to present to etcd.
    #[arg(long, env = "STRATUS_CLUSTER_CERT", requires = "cluster")]
    pub cluster_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "STRATUS_CLUSTER_KEY", requires = "cluster")]
    pub cluster_key: Option<PathBuf>,
    /// etcd user; its password is read from STRATUS_CLUSTER_PASSWORD.
    #[arg(long, env = "STRATUS_CLUSTER_USER", requires = "cluster")]
    pub cluster_user: Option<String>,
}

impl EtcdArgs {
    /// The cluster settings, for a node named `node_id` at `advertise`.
    pub fn config(&self, node_id: String, advertise: String) -> anyhow::Result<crate::cluster::ClusterConfig> {
        let url = self
            .cluster
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--cluster etcd://HOST:PORT[/PREFIX] is needed"))?;
        let (endpoints, prefix) = crate::cluster::ClusterConfig::parse_url(url)?;
        Ok(crate::cluster::ClusterConfig {
            endpoints,
            prefix,
            node_id,
            advertise,
            admin: None,
            ca: self.cluster_ca.clone(),
            cert: self.cluster_cert.clone(),
            key: self.cluster_key.clone(),
            user: self.cluster_user.clone(),
            password: std::env::var("STRATUS_CLUSTER_PASSWORD").ok(),
            arc_size: crate::cluster::DEFAULT_ARC_SIZE,
        })
    }
}

/// Cluster commands (operator).
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// List the live nodes, how far behind each one's registry is, each
    /// one's part of the ring (RING: the share of call groups whose first
    /// node it is), where every reservation is placed (its arc, with each
    /// node's min and target), and etcd's health.
    Status,
    /// Move a single node's data directory (stopped) into a new, empty
    /// cluster: accounts, key hashes, signing keys, versions and their
    /// numbers, components and KV. Run it before any node of the cluster
    /// starts; the nodes then start with the single node's `--issuer`.
    Import {
        /// The stopped single node's data directory.
        #[arg(long)]
        data: PathBuf,
        /// The cluster's etcd.
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

impl ClusterCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        match self {
            ClusterCommand::Status => {
                let client = global.client();
                let value = client.admin(Method::GET, "/cluster", None).await?;
                done(global.json, &value, || table(&value));
            }
            ClusterCommand::Import { data, etcd } => {
                let cluster = etcd.config(String::new(), String::new())?;
                let client = cluster.connect().await?;
                let report = crate::registry::import::into_etcd(&data, client, &cluster.key("")).await?;
                let value = serde_json::to_value(&report)?;
                done(global.json, &value, || {
                    format!(
                        "imported {} into {}: {} records, {} components, {} KV entries",
                        data.display(),
                        etcd.cluster.as_deref().unwrap_or_default(),
                        report.records,
                        report.components,
                        report.kv_entries
                    )
                });
            }
        }
        Ok(())
    }
}

fn table(value: &serde_json::Value) -> String {
    if value["mode"] == "single" {
        return format!(
            "one node on its own database (no --cluster), at revision {}",
            value["revision"]
        );
    }
    let etcd = &value["etcd"];
    let mut out = if etcd["healthy"] == true {
        format!(
            "etcd {}: healthy, revision {}, {} bytes\n",
            etcd["version"].as_str().unwrap_or("?"),
            etcd["revision"],
            etcd["db_size_bytes"]
        )
    } else if let Some(errors) = etcd["errors"].as_array() {
        let errors: Vec<&str> = errors.iter().filter_map(|e| e.as_str()).collect();
        format!(
            "etcd {}: UNHEALTHY, {} bytes: {}\n",
            etcd["version"].as_str().unwrap_or("?"),
            etcd["db_size_bytes"],
            errors.join("; ")
        )
    } else {
        format!("etcd: UNREACHABLE ({})\n", etcd["error"].as_str().unwrap_or("?"))
    };
    out.push_str(&format!(
        "{:<20} {:<32} {:>10} {:>8} {:>8} {:>6}\n",
        "NODE", "URL", "REVISION", "BEHIND", "LAG", "RING"
    ));
    for node in value["nodes"].as_array().into_iter().flatten() {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let lag = node["lag_seconds"]
            .as_f64()
            .map_or_else(|| "unreachable".to_string(), |s| format!("{s:.2}s"));
        let ring = node["ring_share"]
            .as_f64()
            .map_or_else(|| "-".to_string(), |s| format!("{:.0}%", s * 100.0));
        out.push_str(&format!(
            "{:<20} {:<32} {:>10} {:>8} {:>8} {:>6}\n",
            text(&node["id"]),
            text(&node["advertise"]),
            text(&node["revision"]),
            text(&node["revisions_behind"]),
            lag,
            ring
        ));
    }
    let placement = &value["placement"];
    let placed = placement["reservations"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "arcs of {} nodes; {} reservation{} placed",
        value["arc_size"],
        placed.len(),
        if placed.len() == 1 { "" } else { "s" }
    ));
    if let Some(leader) = placement["leader"].as_str().filter(|l| !l.is_empty()) {
        out.push_str(&format!(" by {leader}"));
    }
    out.push('\n');
    for reservation in &placed {
        let mut name = format!(
            "{}/{}",
            reservation["account"].as_str().unwrap_or("?"),
            reservation["function"].as_str().unwrap_or("?")
        );
        if let Some(qualifier) = reservation["qualifier"].as_str() {
            name.push_str(&format!(":{qualifier}"));
        }
        if let Some(sub) = reservation["sub_tenant"].as_str() {
            name.push_str(&format!(" (sub-tenant {sub})"));
        }
        let shares: Vec<String> = reservation["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{} min {} target {}",
                    s["node"].as_str().unwrap_or("?"),
                    s["min"],
                    s["target"]
                )
            })
            .collect();
        out.push_str(&format!("  {name}: {}\n", shares.join(", ")));
    }
    if value["nodes_listed"] == "as last seen" {
        out.push_str("(etcd did not answer: the nodes as this node last saw them)\n");
    }
    out.trim_end().to_string()
}
