//! `stratus token issue`: sub-tenant tokens.

use http::Method;
use serde_json::json;

use super::global::Global;
use super::output::{cell, done};

/// Token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token that calls the account's functions as one sub-tenant.
    Issue {
        /// The sub-tenant: `[A-Za-z0-9._-]{1,64}`.
        #[arg(long)]
        sub_tenant: String,
        /// Lifetime, e.g. `15m`, `1h` (at most 24h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

impl TokenCommand {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let account = global.account(&client).await?;
        match self {
            TokenCommand::Issue { sub_tenant, ttl } => {
                let body = json!({ "sub_tenant": sub_tenant, "ttl_s": ttl.as_secs().max(1) });
                let value = client
                    .admin(
                        Method::POST,
                        &format!("/accounts/{account}/sub-tenant-tokens"),
                        Some(body),
                    )
                    .await?;
                done(global.json, &value, || cell(&value["token"]));
            }
        }
        Ok(())
    }
}
