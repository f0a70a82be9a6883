//! `stratus function deploy|list|show|versions|delete`.

use std::path::PathBuf;

use anyhow::Context as _;
use http::Method;
use serde_json::json;

use super::Global;
use super::output::{cell, done, print};
use crate::client::Client;
use crate::registry::sha256_hex;

/// Function commands.
#[derive(Debug, clap::Subcommand)]
pub enum FunctionCommand {
    /// Upload a component and deploy it as a new version.
    Deploy(Deploy),
    /// List the account's functions.
    List,
    /// Show a function and its versions.
    Show {
        /// The function.
        name: String,
    },
    /// List a function's versions.
    Versions {
        /// The function.
        name: String,
    },
    /// Delete a function, or one version of it.
    #[command(disable_version_flag = true)]
    Delete {
        /// The function.
        name: String,
        /// Delete only this version.
        #[arg(long)]
        version: Option<u32>,
        /// Also remove what refers to it.
        #[arg(long)]
        force: bool,
    },
}

/// `stratus function deploy NAME FILE.wasm [flags]`.
#[derive(Debug, clap::Args)]
pub struct Deploy {
    /// The function name.
    name: String,
    /// The component (`cargo build --target wasm32-wasip2 --release`).
    file: PathBuf,
    /// Callable without credentials.
    #[arg(long)]
    public: bool,
    /// `multi` refuses calls without a sub-tenant.
    #[arg(long, value_parser = ["single", "multi"], default_value = "single")]
    tenancy: String,
    /// `warm` lets an environment serve further calls of its partition.
    #[arg(long, value_parser = ["single-use", "warm"], default_value = "single-use")]
    reuse: String,
    /// Invocation deadline in ms (host default 10 000).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit in MiB (host default 128).
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Environment variable the guest sees, `K=V` (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Outbound HTTP destination `HOST[:PORT]` (repeatable, exact match).
    #[arg(long = "allow-outbound")]
    allow_outbound: Vec<String>,
    /// Return once the version is recorded, before it compiles.
    #[arg(long)]
    no_wait: bool,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not K=V")),
    }
}

impl Deploy {
    /// Uploads and deploys; returns the server's answer.
    pub async fn run(&self, client: &Client, account: &str) -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(&self.file).with_context(|| format!("cannot read {}", self.file.display()))?;
        let size = bytes.len();
        let sha = sha256_hex(&bytes);
        client
            .upload(&format!("/accounts/{account}/blobs/{sha}"), bytes)
            .await?;
        let env: serde_json::Map<String, serde_json::Value> =
            self.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut body = json!({
            "blob": sha,
            "public": self.public,
            "tenancy": self.tenancy,
            "reuse": self.reuse,
            "env": env,
            "allow_outbound": self.allow_outbound,
        });
        if let Some(timeout) = self.timeout_ms {
            body["timeout_ms"] = json!(timeout);
        }
        if let Some(memory) = self.memory_mb {
            body["memory_mb"] = json!(memory);
        }
        let query = if self.no_wait { "?wait=false" } else { "" };
        let mut value = client
            .admin(
                Method::POST,
                &format!("/accounts/{account}/functions/{}/versions{query}", self.name),
                Some(body),
            )
            .await?;
        value["size"] = json!(size);
        Ok(value)
    }
}

impl FunctionCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let account = global.account(&client).await?;
        let base = format!("/accounts/{account}/functions");
        match self {
            FunctionCommand::Deploy(deploy) => {
                let value = deploy.run(&client, &account).await?;
                done(global.json, &value, || {
                    format!(
                        "deployed {account}/{} version {} ({} bytes, sha256 {}, compiled in {} ms)\ncall it: {}/fn/{account}/{}/",
                        deploy.name,
                        cell(&value["version"]),
                        cell(&value["size"]),
                        cell(&value["sha256"]),
                        cell(&value["compile_ms"]),
                        client.base(),
                        deploy.name,
                    )
                });
            }
            FunctionCommand::List => {
                let value = client.admin(Method::GET, &base, None).await?;
                let rows = value["functions"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|f| {
                                vec![
                                    cell(&f["name"]),
                                    cell(&f["latest"]),
                                    cell(&f["version_count"]),
                                    cell(&f["public"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print(global.json, &value, &["name", "latest", "versions", "public"], rows);
            }
            FunctionCommand::Show { name } | FunctionCommand::Versions { name } => {
                let value = client.admin(Method::GET, &format!("{base}/{name}"), None).await?;
                let rows = value["versions"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .map(|v| {
                                vec![
                                    cell(&v["version"]),
                                    cell(&v["state"]),
                                    cell(&v["sha256"]).chars().take(12).collect(),
                                    cell(&v["size"]),
                                    cell(&v["config"]["public"]),
                                    cell(&v["config"]["timeout_ms"]),
                                    cell(&v["config"]["memory_mb"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if !global.json {
                    println!("{account}/{name}  latest: {}", cell(&value["latest"]));
                }
                print(
                    global.json,
                    &value,
                    &[
                        "version",
                        "state",
                        "sha256",
                        "size",
                        "public",
                        "timeout_ms",
                        "memory_mb",
                    ],
                    rows,
                );
            }
            FunctionCommand::Delete { name, version, force } => {
                let force = if force { "?force=true" } else { "" };
                let path = match version {
                    Some(n) => format!("{base}/{name}/versions/{n}{force}"),
                    None => format!("{base}/{name}{force}"),
                };
                let value = client.admin(Method::DELETE, &path, None).await?;
                done(global.json, &value, || match version {
                    Some(n) => format!("deleted {name} version {n}"),
                    None => format!("deleted function {name}"),
                });
            }
        }
        Ok(())
    }
}
