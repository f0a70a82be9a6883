//! `stratus cluster status`: the nodes of a cluster and etcd's health.

use http::Method;

use super::global::Global;
use super::output::done;

/// Cluster commands (operator).
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// List the live nodes, how far behind each one's registry is, and etcd's health.
    Status,
}

impl ClusterCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        match self {
            ClusterCommand::Status => {
                let value = client.admin(Method::GET, "/cluster", None).await?;
                done(global.json, &value, || table(&value));
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
    } else {
        format!("etcd: UNREACHABLE ({})\n", etcd["error"].as_str().unwrap_or("?"))
    };
    out.push_str(&format!(
        "{:<20} {:<32} {:>10} {:>8} {:>8}\n",
        "NODE", "URL", "REVISION", "BEHIND", "LAG"
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
        out.push_str(&format!(
            "{:<20} {:<32} {:>10} {:>8} {:>8}\n",
            text(&node["id"]),
            text(&node["advertise"]),
            text(&node["revision"]),
            text(&node["revisions_behind"]),
            lag
        ));
    }
    out.trim_end().to_string()
}
