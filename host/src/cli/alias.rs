//! `stratus alias create|update|show|list|delete`.
//!
//! With `--function FN` the alias is one of FN's (`FN:NAME`); with
//! `--target OWNER/FN[:QUALIFIER]` it is a cross-account alias, a name in the
//! account's own function namespace for a function another account granted.

use http::Method;
use serde_json::json;

use super::global::Global;
use super::output::{cell, done, print, time_cell};

/// Alias commands.
#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Create an alias of a function, or a cross-account alias (`--target`).
    #[command(disable_version_flag = true)]
    Create(Put),
    /// Re-point an existing alias of a function.
    #[command(disable_version_flag = true)]
    Update(Put),
    /// Show one alias.
    Show(Named),
    /// List the aliases of a function, or the cross-account aliases.
    List {
        /// The function whose aliases to list (none: cross-account aliases).
        #[arg(long)]
        function: Option<String>,
    },
    /// Delete an alias.
    Delete(Named),
}

/// Where an alias points.
#[derive(Debug, clap::Args)]
pub struct Put {
    /// The alias name (starts with a letter).
    name: String,
    /// The function the alias belongs to.
    #[arg(long, conflicts_with = "target", required_unless_present = "target")]
    function: Option<String>,
    /// The version that gets the calls.
    #[arg(long, requires = "function")]
    version: Option<u32>,
    /// Send PCT percent of calls to version M instead, e.g. `7=10`.
    #[arg(long, value_parser = parse_weight, requires = "function")]
    weight: Option<(u32, u8)>,
    /// An environment variable for calls through the alias. Repeatable.
    #[arg(long = "env", value_parser = parse_env, requires = "function")]
    env: Vec<(String, String)>,
    /// A lower timeout for calls through the alias.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// A lower memory limit for calls through the alias.
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Another account's function: `OWNER/FN[:QUALIFIER]` (a cross-account alias).
    #[arg(long)]
    target: Option<String>,
}

/// One alias by name.
#[derive(Debug, clap::Args)]
pub struct Named {
    /// The alias name.
    name: String,
    /// The function it belongs to (none: a cross-account alias).
    #[arg(long)]
    function: Option<String>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not K=V")),
    }
}

fn parse_weight(text: &str) -> Result<(u32, u8), String> {
    let (version, percent) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not VERSION=PERCENT"))?;
    let version = version
        .parse()
        .map_err(|_| format!("{version:?} is not a version number"))?;
    let percent = percent
        .parse()
        .map_err(|_| format!("{percent:?} is not a percentage"))?;
    Ok((version, percent))
}

impl Put {
    fn path(&self, account: &str) -> String {
        match &self.function {
            Some(function) => format!("/accounts/{account}/functions/{function}/aliases/{}", self.name),
            None => format!("/accounts/{account}/cross-aliases/{}", self.name),
        }
    }

    fn body(&self) -> anyhow::Result<serde_json::Value> {
        let mut limits = serde_json::Map::new();
        if let Some(timeout) = self.timeout_ms {
            limits.insert("timeout_ms".into(), json!(timeout));
        }
        if let Some(memory) = self.memory_mb {
            limits.insert("memory_mb".into(), json!(memory));
        }
        if let Some(target) = &self.target {
            return Ok(json!({ "target": target, "limits": limits }));
        }
        let Some(version) = self.version else {
            anyhow::bail!("an alias of a function needs --version");
        };
        let mut overrides = limits;
        if !self.env.is_empty() {
            let env: serde_json::Map<String, serde_json::Value> =
                self.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            overrides.insert("env".into(), json!(env));
        }
        let mut body = json!({ "version": version, "overrides": overrides });
        if let Some((version, percent)) = self.weight {
            body["weight"] = json!({ "version": version, "percent": percent });
        }
        Ok(body)
    }
}

impl Named {
    fn path(&self, account: &str) -> String {
        match &self.function {
            Some(function) => format!("/accounts/{account}/functions/{function}/aliases/{}", self.name),
            None => format!("/accounts/{account}/cross-aliases/{}", self.name),
        }
    }
}

/// One line describing where an alias points.
fn describe(value: &serde_json::Value) -> String {
    if let Some(target) = value["target"].as_str() {
        return format!("{} → {target}", cell(&value["name"]));
    }
    let mut text = format!(
        "{}:{} → version {}",
        cell(&value["function"]),
        cell(&value["name"]),
        cell(&value["version"])
    );
    if value["weight"].is_object() {
        text.push_str(&format!(
            " ({}% to version {})",
            cell(&value["weight"]["percent"]),
            cell(&value["weight"]["version"])
        ));
    }
    text
}

impl AliasCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let account = global.account(&client).await?;
        match self {
            AliasCommand::Create(put) => {
                let value = client
                    .admin_with(
                        Method::PUT,
                        &put.path(&account),
                        Some(put.body()?),
                        &[("if-none-match", "*".to_string())],
                    )
                    .await?;
                done(global.json, &value, || format!("created {}", describe(&value)));
            }
            AliasCommand::Update(put) => {
                let value = client
                    .admin_with(
                        Method::PUT,
                        &put.path(&account),
                        Some(put.body()?),
                        &[("if-match", "*".to_string())],
                    )
                    .await?;
                done(global.json, &value, || format!("updated {}", describe(&value)));
            }
            AliasCommand::Show(named) => {
                let value = client.admin(Method::GET, &named.path(&account), None).await?;
                done(global.json, &value, || {
                    let mut text = describe(&value);
                    if let Some(overrides) = value["overrides"].as_object().filter(|o| !o.is_empty()) {
                        text.push_str(&format!(
                            "\noverrides: {}",
                            serde_json::Value::Object(overrides.clone())
                        ));
                    }
                    if let Some(limits) = value["limits"].as_object().filter(|o| !o.is_empty()) {
                        text.push_str(&format!("\nlimits: {}", serde_json::Value::Object(limits.clone())));
                    }
                    text
                });
            }
            AliasCommand::List { function } => {
                let path = match &function {
                    Some(function) => format!("/accounts/{account}/functions/{function}/aliases"),
                    None => format!("/accounts/{account}/cross-aliases"),
                };
                let value = client.admin(Method::GET, &path, None).await?;
                let rows = value["aliases"]
                    .as_array()
                    .map(|aliases| {
                        aliases
                            .iter()
                            .map(|a| vec![cell(&a["name"]), describe(a), time_cell(&a["updated_at"])])
                            .collect()
                    })
                    .unwrap_or_default();
                print(global.json, &value, &["name", "points at", "updated"], rows);
            }
            AliasCommand::Delete(named) => {
                let value = client.admin(Method::DELETE, &named.path(&account), None).await?;
                done(global.json, &value, || format!("deleted alias {}", named.name));
            }
        }
        Ok(())
    }
}
