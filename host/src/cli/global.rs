//! The flags every client command shares, and what they resolve to: the
//! client, the account acted on, a function's address.

use crate::client::Client;

/// Flags every client command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The Stratus server.
    #[arg(long, global = true, env = "STRATUS_URL", default_value = "http://127.0.0.1:8080")]
    pub(super) url: String,
    /// An account key, or the operator key.
    #[arg(long, global = true, env = "STRATUS_KEY", hide_env_values = true)]
    pub(super) key: Option<String>,
    /// The account to act on (needed with the operator key).
    #[arg(long, global = true, env = "STRATUS_ACCOUNT")]
    pub(super) account: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

impl Global {
    pub(super) fn client(&self) -> Client {
        // `STRATUS_KEY=` (set, but empty) is no key.
        Client::new(&self.url, self.key.clone().filter(|key| !key.trim().is_empty()))
    }

    /// The account to act on: `--account`, or the key's own account.
    pub(super) async fn account(&self, client: &Client) -> anyhow::Result<String> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let me = client.admin(http::Method::GET, "/whoami", None).await?;
        match me["account"].as_str() {
            Some(account) => Ok(account.to_string()),
            None => anyhow::bail!("the operator key acts on any account: name one with --account"),
        }
    }

    /// A function's address as every command takes it: `ACCOUNT/FN` (with
    /// an optional `:QUALIFIER`), or `FN` of the account acted on.
    pub(super) async fn function_address(&self, client: &Client, address: &str) -> anyhow::Result<(String, String)> {
        let refuse =
            |why: String| anyhow::anyhow!("{address:?} is not a function address ({why}): write ACCOUNT/FN or FN");
        let (account, function) = match address.split_once('/') {
            Some((account, function)) => {
                crate::names::AccountName::parse(account).map_err(|e| refuse(e.to_string()))?;
                if let Some(named) = &self.account
                    && named != account
                {
                    anyhow::bail!("{address:?} names account {account}, but --account names {named}: drop one");
                }
                (account.to_string(), function)
            }
            None => (self.account(client).await?, address),
        };
        // `NAME` or `NAME:QUALIFIER` (a version number or an alias).
        let (name, qualifier) = match function.split_once(':') {
            Some((name, qualifier)) => (name, Some(qualifier)),
            None => (function, None),
        };
        crate::names::FunctionName::parse(name).map_err(|e| refuse(e.to_string()))?;
        if let Some(qualifier) = qualifier
            && qualifier.parse::<u32>().is_err()
        {
            crate::names::AliasName::parse(qualifier).map_err(|e| refuse(e.to_string()))?;
        }
        Ok((account, function.to_string()))
    }
}
