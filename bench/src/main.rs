//! `stratus-bench`: drives a real `stratus serve` over HTTP and prints each
//! figure next to a baseline measured in the same run, since these machines
//! are too noisy for absolute numbers to mean much.

mod cluster;
mod deploy;
mod fairness;
mod frontend;
mod isolation;
mod raw;
mod registry;
mod server;
mod throughput;
mod tokens;

use clap::{Parser, Subcommand};

/// Benchmarks of a running Stratus.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// The `stratus` binary (a release build).
    #[arg(long, global = true, default_value = "target/release/stratus")]
    stratus: std::path::PathBuf,
    /// Where components were built (`wasm32-wasip2/release` under it).
    #[arg(long, global = true, default_value = "target")]
    target_dir: std::path::PathBuf,
    /// Append the result to this Markdown file.
    #[arg(long, global = true)]
    results: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Calls' latency and throughput while new versions of their function deploy.
    Deploy(deploy::Deploy),
    /// Latency of a quiet sub-tenant while another floods past its cap.
    Fairness(fairness::Fairness),
    /// What one account's uploads, compiles, queued deploys and log
    /// followers cost another account.
    Isolation(isolation::Isolation),
    /// What signing and verifying invocation tokens cost, in process and end to end.
    Tokens(tokens::Tokens),
    /// What authenticating a key and resolving a version cost per call, by registry size.
    Registry(registry::RegistryBench),
    /// Requests per second and latency of `hello` under Stratus, against
    /// `wasmtime serve` and a raw hyper server; restart, first-call and
    /// memory figures beside them.
    Throughput(throughput::Throughput),
    /// A cluster on etcd: propagation, compile once, writes and calls
    /// against one node on sled.
    Cluster(cluster::ClusterBench),
    /// Frontends: the hop's cost, and warm hits under the ring against
    /// random placement.
    Frontend(frontend::FrontendBench),
    /// Serve `200 hello from stratus` with plain hyper until killed (the
    /// throughput benchmark's ceiling, run as a process of its own).
    RawHello(raw::RawHello),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let component = |name: &str| {
        cli.target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{name}.wasm"))
    };
    let report = match &cli.bench {
        Bench::Deploy(bench) => bench.run(&cli.stratus, &component("heavy"))?,
        Bench::Fairness(bench) => bench.run(&cli.stratus, &component("busy"))?,
        Bench::Isolation(bench) => bench.run(&cli.stratus, &component("hello"), &component("heavy"))?,
        Bench::Tokens(bench) => bench.run(&cli.stratus, &component("hello"), &component("whoami"))?,
        Bench::Registry(bench) => bench.run()?,
        Bench::Throughput(bench) => bench.run(&cli.stratus, &component("hello"), &component("whoami"))?,
        Bench::Cluster(bench) => bench.run(&cli.stratus, &component("hello"), &component("counter"))?,
        Bench::Frontend(bench) => bench.run(&cli.stratus, &component("hello"), &component("counter"))?,
        Bench::RawHello(server) => return server.run(),
    };
    println!("{report}");
    if let Some(path) = &cli.results {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(file, "\n{report}")?;
    }
    Ok(())
}
