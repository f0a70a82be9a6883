//! `stratus account create|list|delete`.

use http::Method;
use serde_json::json;

use super::global::Global;
use super::output::{cell, done, print, time_cell};

/// Account commands (operator key).
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Create an account and print its first key.
    Create {
        /// `[a-z][a-z0-9-]{0,62}`.
        name: String,
        /// Print only the key, e.g. for `export STRATUS_KEY=$(stratus account create acme -q)`.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List accounts.
    List,
    /// Delete an account with everything it owns.
    Delete {
        /// The account.
        name: String,
    },
}

impl AccountCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        match self {
            AccountCommand::Create { name, quiet } => {
                let value = client
                    .admin(Method::POST, "/accounts", Some(json!({ "name": name })))
                    .await?;
                if quiet && !global.json {
                    super::output::say!("{}", cell(&value["key"]));
                    return Ok(());
                }
                done(global.json, &value, || {
                    format!("created account {name}\nkey (shown once): {}", cell(&value["key"]))
                });
            }
            AccountCommand::List => {
                let value = client.admin(Method::GET, "/accounts", None).await?;
                let rows = value["accounts"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|a| vec![cell(&a["name"]), time_cell(&a["created_at"])])
                            .collect()
                    })
                    .unwrap_or_default();
                print(global.json, &value, &["name", "created_at"], rows);
            }
            AccountCommand::Delete { name } => {
                let value = client.admin(Method::DELETE, &format!("/accounts/{name}"), None).await?;
                done(global.json, &value, || format!("deleted account {name}"));
            }
        }
        Ok(())
    }
}
