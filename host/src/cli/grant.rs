//! `stratus grant add|list|revoke`: let other accounts alias a function.

use http::Method;
use serde_json::json;

use super::global::Global;
use super::output::{cell, done, print, time_cell};

/// Grant commands.
#[derive(Debug, clap::Subcommand)]
pub enum GrantCommand {
    /// Let ACCOUNT create cross-account aliases to FN (only FN:ALIAS with --alias).
    Add {
        /// The function.
        function: String,
        /// The account that may alias it.
        #[arg(long = "to")]
        to: String,
        /// Only this alias of the function.
        #[arg(long)]
        alias: Option<String>,
    },
    /// List the grants of one function, or of all the account's functions.
    List {
        /// The function (none: all).
        function: Option<String>,
    },
    /// Revoke a grant; calls through the grantee's aliases fail from the next one.
    Revoke {
        /// The function.
        function: String,
        /// The account that loses it.
        #[arg(long = "to")]
        to: String,
    },
}

impl GrantCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let account = global.account(&client).await?;
        match self {
            GrantCommand::Add { function, to, alias } => {
                let value = client
                    .admin(
                        Method::PUT,
                        &format!("/accounts/{account}/functions/{function}/grants/{to}"),
                        Some(json!({ "alias": alias })),
                    )
                    .await?;
                done(global.json, &value, || {
                    let what = alias.map_or(function.clone(), |a| format!("{function}:{a}"));
                    format!("{to} may now alias {account}/{what}")
                });
            }
            GrantCommand::List { function } => {
                let path = match &function {
                    Some(function) => format!("/accounts/{account}/functions/{function}/grants"),
                    None => format!("/accounts/{account}/grants"),
                };
                let value = client.admin(Method::GET, &path, None).await?;
                let rows = value["grants"]
                    .as_array()
                    .map(|grants| {
                        grants
                            .iter()
                            .map(|g| {
                                vec![
                                    cell(&g["function"]),
                                    cell(&g["grantee"]),
                                    cell(&g["alias"]),
                                    time_cell(&g["created_at"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print(global.json, &value, &["function", "grantee", "alias", "created"], rows);
            }
            GrantCommand::Revoke { function, to } => {
                let value = client
                    .admin(
                        Method::DELETE,
                        &format!("/accounts/{account}/functions/{function}/grants/{to}"),
                        None,
                    )
                    .await?;
                done(global.json, &value, || format!("revoked {to}'s grant to {function}"));
            }
        }
        Ok(())
    }
}
