//! The `stratus` CLI: one subcommand per file, each with `execute()`.

mod account;
mod alias;
mod cluster;
mod compile;
mod completions;
mod frontend;
mod function;
mod global;
mod grant;
mod invoke;
mod key;
mod logs;
mod new;
mod output;
mod reserve;
mod serve;
mod token;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use global::Global;

/// Stratus: a serverless host for WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "stratus", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host.
    Serve(Box<serve::Serve>),
    /// Create a function crate from a template.
    New(new::New),
    /// Develop one function: serve locally, build it, deploy it, print its URL.
    Up(up::Up),
    /// Create, list and delete accounts (operator).
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Create, list and revoke account keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Deploy and manage functions.
    #[command(subcommand)]
    Function(function::FunctionCommand),
    /// Name versions of a function, or other accounts' functions.
    #[command(subcommand)]
    Alias(alias::AliasCommand),
    /// Let other accounts alias your functions.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// Call a function.
    Invoke(invoke::Invoke),
    /// Keep environments instantiated ahead of calls.
    Reserve(reserve::Reserve),
    /// Show or follow what a function printed.
    Logs(logs::Logs),
    /// Print shell completions.
    Completions(completions::Completions),
    /// Route calls to a cluster's nodes on a consistent hash ring.
    Frontend(frontend::Frontend),
    /// See the nodes of a cluster (operator).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Issue sub-tenant tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Compile one component for the host (what `serve` runs for each
    /// compile, in a process of its own).
    #[command(hide = true)]
    CompileComponent(compile::CompileComponent),
}

/// Runs the CLI and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let argv = match serve::args_with_config_file(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let matches = Cli::command().get_matches_from(argv);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let serve_matches = matches.subcommand_matches("serve");
    match runtime.block_on(execute(cli, serve_matches)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli, serve_matches: Option<&clap::ArgMatches>) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Serve(cmd) => cmd.execute(serve_matches).await.map(|()| ExitCode::SUCCESS),
        Command::New(cmd) => cmd.execute().map(|()| ExitCode::SUCCESS),
        Command::Up(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Account(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Key(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Function(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Alias(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Grant(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Invoke(cmd) => cmd.execute(&global).await,
        Command::Logs(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Completions(cmd) => {
            cmd.execute(<Cli as clap::CommandFactory>::command());
            Ok(ExitCode::SUCCESS)
        }
        Command::Reserve(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Cluster(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::Frontend(cmd) => cmd.execute().await.map(|()| ExitCode::SUCCESS),
        Command::Token(cmd) => cmd.execute(&global).await.map(|()| ExitCode::SUCCESS),
        Command::CompileComponent(cmd) => cmd.execute().map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
