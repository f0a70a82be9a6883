//! `stratus invoke [ACCOUNT/]NAME[:QUALIFIER]`.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use http::Method;

use super::global::Global;

/// Calls a function through the HTTP trigger and prints its body.
#[derive(Debug, clap::Args)]
pub struct Invoke {
    /// `ACCOUNT/NAME[:QUALIFIER]`, or `NAME[:QUALIFIER]` of your own account.
    target: String,
    /// A request header, `NAME: VALUE` (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The sub-tenant to act for (with an account key).
    #[arg(long)]
    sub_tenant: Option<String>,
    /// Request body: `@file`, `-` for stdin, or literal text.
    #[arg(long)]
    data: Option<String>,
    /// HTTP method (default GET, or POST with --data).
    #[arg(long)]
    method: Option<String>,
    /// Path (and query) the function sees.
    #[arg(long, default_value = "/")]
    path: String,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if http::HeaderName::from_bytes(name.trim().as_bytes()).is_ok() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("{text:?} is not a header `NAME: VALUE`")),
    }
}

impl Invoke {
    /// Runs the call; exit code 1 when the answer is an error status (4xx, 5xx).
    pub async fn execute(self, global: &Global) -> anyhow::Result<ExitCode> {
        let client = global.client();
        let (account, name) = global.function_address(&client, &self.target).await?;
        let body = match self.data.as_deref() {
            None => Bytes::new(),
            Some("-") => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).context("cannot read stdin")?;
                Bytes::from(buf)
            }
            Some(data) => match data.strip_prefix('@') {
                Some(file) => Bytes::from(std::fs::read(file).with_context(|| format!("cannot read {file}"))?),
                None => Bytes::from(data.to_string()),
            },
        };
        let method = match &self.method {
            Some(m) => Method::from_bytes(m.to_uppercase().as_bytes()).context("invalid --method")?,
            None if self.data.is_some() => Method::POST,
            None => Method::GET,
        };
        let path = self.path.trim_start_matches('/');
        let mut headers: Vec<(&str, String)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if let Some(sub) = self.sub_tenant {
            headers.push(("x-stratus-sub-tenant", sub));
        }
        let reply = client
            .send(method, &format!("/fn/{account}/{name}/{path}"), &headers, body)
            .await?;
        if global.json {
            let headers: serde_json::Map<String, serde_json::Value> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(String::from_utf8_lossy(v.as_bytes()))))
                .collect();
            let value = serde_json::json!({
                "status": reply.status.as_u16(),
                "headers": headers,
                "body": String::from_utf8_lossy(&reply.body),
            });
            super::output::say!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            std::io::stdout().write_all(&reply.body)?;
            if !reply.body.ends_with(b"\n") {
                super::output::say!();
            }
        }
        if reply.status.is_redirection() {
            // A redirect is an answer, not a failure; where it points is
            // what the caller needs.
            if !global.json {
                let location = reply
                    .headers
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                eprintln!("({} → {location})", reply.status);
            }
            Ok(ExitCode::SUCCESS)
        } else if reply.status.is_success() {
            Ok(ExitCode::SUCCESS)
        } else {
            if !global.json {
                eprintln!("error: the call answered {}", reply.status);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
