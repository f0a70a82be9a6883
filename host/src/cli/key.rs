//! `stratus key create|list|revoke|rotate-signing`.

use http::Method;

use super::global::Global;
use super::output::{cell, done, print, time_cell};

/// Account key commands.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key for the account and print it once.
    Create,
    /// List the account's keys (ids only).
    List,
    /// Revoke a key; calls with it fail at once.
    Revoke {
        /// The key id.
        id: String,
    },
    /// Start signing tokens with a new key (operator). The old public key
    /// stays in the JWKS until every token it signed has expired.
    RotateSigning,
}

impl KeyCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let account = || global.account(&client);
        match self {
            KeyCommand::RotateSigning => {
                let value = client.admin(Method::POST, "/signing-keys/rotate", None).await?;
                let kids: Vec<String> = value["jwks"]["keys"]
                    .as_array()
                    .map(|keys| keys.iter().map(|k| cell(&k["kid"])).collect())
                    .unwrap_or_default();
                done(global.json, &value, || {
                    format!(
                        "signing with key {}\nkeys in the JWKS: {}",
                        cell(&value["kid"]),
                        kids.join(", ")
                    )
                });
            }
            KeyCommand::Create => {
                let account = account().await?;
                let value = client
                    .admin(Method::POST, &format!("/accounts/{account}/keys"), None)
                    .await?;
                done(global.json, &value, || {
                    format!(
                        "created key {} for {account}\nkey (shown once): {}",
                        cell(&value["id"]),
                        cell(&value["key"])
                    )
                });
            }
            KeyCommand::List => {
                let account = account().await?;
                let value = client
                    .admin(Method::GET, &format!("/accounts/{account}/keys"), None)
                    .await?;
                let rows = value["keys"]
                    .as_array()
                    .map(|k| {
                        k.iter()
                            .map(|k| vec![cell(&k["id"]), time_cell(&k["created_at"])])
                            .collect()
                    })
                    .unwrap_or_default();
                print(global.json, &value, &["id", "created_at"], rows);
            }
            KeyCommand::Revoke { id } => {
                let account = account().await?;
                let value = client
                    .admin(Method::DELETE, &format!("/accounts/{account}/keys/{id}"), None)
                    .await?;
                done(global.json, &value, || format!("revoked key {id}"));
            }
        }
        Ok(())
    }
}
