//! `stratus function deploy|list|show|versions|delete`.

use std::path::PathBuf;

use anyhow::Context as _;
use http::Method;
use serde_json::json;

use super::global::Global;
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
        /// The function: `FN`, or `ACCOUNT/FN`.
        name: String,
    },
    /// List a function's versions.
    Versions {
        /// The function: `FN`, or `ACCOUNT/FN`.
        name: String,
    },
    /// Delete a function, or one version of it.
    #[command(disable_version_flag = true)]
    Delete {
        /// The function: `FN`, or `ACCOUNT/FN`.
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
    /// The function: `FN`, or `ACCOUNT/FN`.
    pub name: String,
    /// The component (`cargo build --target wasm32-wasip2 --release`).
    pub file: PathBuf,
    /// Callable without credentials.
    #[arg(long)]
    public: bool,
    #[command(flatten)]
    options: DeployOptions,
    /// Return once the version is recorded, before it compiles.
    #[arg(long)]
    no_wait: bool,
}

/// A version's settings, as `function deploy` and `up` take them; what is
/// not given is the host's default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeployOptions {
    /// `multi` refuses calls without a sub-tenant (default `single`).
    #[arg(long, value_parser = ["single", "multi"])]
    pub tenancy: Option<String>,
    /// `warm` lets an environment serve further calls of its partition
    /// (default `single-use`).
    #[arg(long, value_parser = ["single-use", "warm"])]
    pub reuse: Option<String>,
    /// Invocation deadline in ms (host default 10 000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Memory limit in MiB (host default 128).
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// Environment variable the guest sees, `K=V` (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Outbound HTTP destination `HOST[:PORT]` (repeatable, exact match).
    #[arg(long = "allow-outbound")]
    pub allow_outbound: Vec<String>,
}

impl DeployOptions {
    /// The deploy body for blob `sha`.
    pub fn body(&self, sha: &str, public: bool) -> serde_json::Value {
        let env: serde_json::Map<String, serde_json::Value> =
            self.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut body = json!({
            "blob": sha,
            "public": public,
            "env": env,
            "allow_outbound": self.allow_outbound,
        });
        if let Some(tenancy) = &self.tenancy {
            body["tenancy"] = json!(tenancy);
        }
        if let Some(reuse) = &self.reuse {
            body["reuse"] = json!(reuse);
        }
        if let Some(timeout) = self.timeout_ms {
            body["timeout_ms"] = json!(timeout);
        }
        if let Some(memory) = self.memory_mb {
            body["memory_mb"] = json!(memory);
        }
        body
    }
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
        let body = self.options.body(&sha, self.public);
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
        let address = match &self {
            FunctionCommand::Deploy(deploy) => Some(&deploy.name),
            FunctionCommand::Show { name }
            | FunctionCommand::Versions { name }
            | FunctionCommand::Delete { name, .. } => Some(name),
            FunctionCommand::List => None,
        };
        let (account, name) = match address {
            Some(address) => global.function_address(&client, address).await?,
            None => (global.account(&client).await?, String::new()),
        };
        let base = format!("/accounts/{account}/functions");
        match self {
            FunctionCommand::Deploy(mut deploy) => {
                deploy.name = name;
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
            FunctionCommand::Show { .. } | FunctionCommand::Versions { .. } => {
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
                                    cell(&v["config"]["tenancy"]),
                                    cell(&v["config"]["reuse"]),
                                    cell(&v["config"]["timeout_ms"]),
                                    cell(&v["config"]["memory_mb"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if !global.json {
                    super::output::say!("{account}/{name}  latest: {}", cell(&value["latest"]));
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
                        "tenancy",
                        "reuse",
                        "timeout_ms",
                        "memory_mb",
                    ],
                    rows,
                );
                if !global.json {
                    // What no column can hold: a failed deploy's reason, the
                    // environment and the outbound allow-list.
                    for v in value["versions"].as_array().into_iter().flatten() {
                        let n = cell(&v["version"]);
                        if let Some(error) = v["error"].as_str() {
                            super::output::say!("version {n} failed: {error}");
                        }
                        if let Some(env) = v["config"]["env"].as_object().filter(|e| !e.is_empty()) {
                            let keys: Vec<&str> = env.keys().map(String::as_str).collect();
                            super::output::say!("version {n} env: {}", keys.join(", "));
                        }
                        if let Some(allow) = v["config"]["allow_outbound"].as_array().filter(|a| !a.is_empty()) {
                            let hosts: Vec<String> = allow.iter().map(cell).collect();
                            super::output::say!("version {n} allow-outbound: {}", hosts.join(", "));
                        }
                    }
                }
            }
            FunctionCommand::Delete { version, force, .. } => {
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
