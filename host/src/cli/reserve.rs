//! `stratus reserve FN[:QUALIFIER] --min M --target T [--sub-tenant ID]`,
//! `reserve list`, `reserve delete FN[:QUALIFIER]`.

use http::Method;
use serde_json::json;

use super::global::Global;
use super::output::{cell, done, print, time_cell};

/// Keep environments of a function instantiated ahead of its calls.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Reserve {
    #[command(subcommand)]
    command: Option<ReserveCommand>,
    /// `FN[:QUALIFIER]` (a version number or alias; none: latest).
    function: Option<String>,
    /// Environments kept at all times, instantiated at once.
    #[arg(long, requires = "function")]
    min: Option<u32>,
    /// Environments added as capacity allows.
    #[arg(long, requires = "function")]
    target: Option<u32>,
    /// Only this sub-tenant's calls use them.
    #[arg(long, requires = "function")]
    sub_tenant: Option<String>,
}

/// The other reservation commands.
#[derive(Debug, clap::Subcommand)]
enum ReserveCommand {
    /// List the account's reservations.
    List,
    /// Delete a reservation; calls in flight are not affected.
    Delete {
        /// `FN[:QUALIFIER]`.
        function: String,
    },
}

/// `FN[:QUALIFIER]` as the admin path's two parts.
fn split(text: &str) -> (&str, &str) {
    text.split_once(':').unwrap_or((text, "latest"))
}

impl Reserve {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let account = global.account(&client).await?;
        match (self.command, self.function) {
            (Some(ReserveCommand::List), _) => {
                let value = client
                    .admin(Method::GET, &format!("/accounts/{account}/reservations"), None)
                    .await?;
                let rows = value["reservations"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .map(|r| {
                                vec![
                                    format!("{}:{}", cell(&r["function"]), cell(&r["qualifier"])),
                                    cell(&r["min"]),
                                    cell(&r["target"]),
                                    cell(&r["sub_tenant"]),
                                    time_cell(&r["updated_at"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print(
                    global.json,
                    &value,
                    &["function", "min", "target", "sub-tenant", "updated"],
                    rows,
                );
            }
            (Some(ReserveCommand::Delete { function }), _) => {
                let (name, qualifier) = split(&function);
                let value = client
                    .admin(
                        Method::DELETE,
                        &format!("/accounts/{account}/functions/{name}/reservations/{qualifier}"),
                        None,
                    )
                    .await?;
                done(global.json, &value, || {
                    format!("deleted the reservation of {name}:{qualifier}")
                });
            }
            (None, Some(function)) => {
                let (name, qualifier) = split(&function);
                let target = self.target.or(self.min).unwrap_or(1);
                let min = self.min.unwrap_or(0);
                let value = client
                    .admin(
                        Method::PUT,
                        &format!("/accounts/{account}/functions/{name}/reservations/{qualifier}"),
                        Some(json!({ "min": min, "target": target, "sub_tenant": self.sub_tenant })),
                    )
                    .await?;
                done(global.json, &value, || {
                    format!("{name}:{qualifier} keeps {min} environments ready, up to {target}")
                });
            }
            (None, None) => anyhow::bail!("name a function: stratus reserve FN[:QUALIFIER] --min M --target T"),
        }
        Ok(())
    }
}
