//! `stratus frontend`: a stateless router in front of a cluster's nodes.

use std::net::SocketAddr;

use anyhow::Context as _;

/// Route calls to a cluster's nodes on a consistent hash ring.
#[derive(Debug, Clone, clap::Args)]
pub struct Frontend {
    /// The cluster's etcd.
    #[command(flatten)]
    etcd: super::cluster::EtcdArgs,
    /// Address to serve calls and the admin API on (forwarded to the nodes).
    #[arg(long, env = "STRATUS_FRONTEND_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Distinct nodes in each group's arc: a group's calls spread over at
    /// most this many nodes (default: the cluster's `--arc-size`). A
    /// reserved function's calls always go to its reservation's arc.
    #[arg(long, env = "STRATUS_ARC_SIZE")]
    arc_size: Option<usize>,
    /// Bounded-load factor: a node with more than this times its fair share
    /// of the calls in flight is skipped for the next node of the arc.
    #[arg(long, env = "STRATUS_LOAD_FACTOR", default_value_t = 1.25)]
    load_factor: f64,
    /// Points per node on the ring.
    #[arg(long, env = "STRATUS_VNODES", default_value_t = crate::cluster::ring::VNODES)]
    vnodes: usize,
    /// When a reservation shrinks or goes, send its calls where the ring
    /// puts them at once. By default each partition stays on the node that
    /// holds its warm environment until that expires, so a reduction causes
    /// no burst of cold starts.
    #[arg(long, env = "STRATUS_REHASH_AT_ONCE")]
    rehash_at_once: bool,
    /// How long a node may take to start answering a call it was sent
    /// before the client gets 504 and the node is marked down; keep it above
    /// the nodes' longest function timeout (15 min by default), e.g. `16m`.
    #[arg(long, env = "STRATUS_NODE_TIMEOUT", default_value = "16m", value_parser = humantime::parse_duration)]
    node_timeout: std::time::Duration,
    /// How long a client may take to send its request headers, e.g. `10s`.
    #[arg(long, env = "STRATUS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: std::time::Duration,
    /// Log format.
    #[arg(long, env = "STRATUS_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

impl Frontend {
    /// Runs until SIGTERM or Ctrl-C.
    pub async fn execute(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.arc_size != Some(0), "--arc-size must be at least 1");
        anyhow::ensure!(
            self.load_factor >= 1.0 && self.load_factor.is_finite(),
            "--load-factor must be at least 1"
        );
        anyhow::ensure!(self.vnodes >= 1, "--vnodes must be at least 1");
        super::serve::init_tracing(&self.log_format);
        let cluster = self.etcd.config(String::new(), String::new())?;
        let frontend = crate::frontend::Frontend::start(crate::frontend::FrontendConfig {
            cluster,
            arc_size: self.arc_size,
            load_factor: self.load_factor,
            vnodes: self.vnodes,
            header_read_timeout: self.header_read_timeout,
            node_timeout: self.node_timeout,
            rehash_at_once: self.rehash_at_once,
        })
        .await?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        println!("stratus frontend listening on http://{}", listener.local_addr()?);
        frontend.serve(listener, super::serve::shutdown_signal()).await;
        Ok(())
    }
}
