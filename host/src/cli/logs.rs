//! `stratus logs [ACCOUNT/]FN [--sub-tenant ID] [--invocation ID] [--since 10m]
//! [--follow]`: what a function printed, one line per output line, tagged
//! with its invocation and stream, and the host's line on why a call failed.

use http_body_util::BodyExt as _;
use std::io::Write as _;

use super::global::Global;

/// Show (or follow) a function's logs.
#[derive(Debug, clap::Args)]
pub struct Logs {
    /// The function, `FN` or `ACCOUNT/FN`.
    function: String,
    /// Only this sub-tenant's invocations.
    #[arg(long)]
    sub_tenant: Option<String>,
    /// Only this invocation's lines: its id, or the 8-character start of
    /// it that these lines show (the id is in a failed call's error).
    #[arg(long)]
    invocation: Option<String>,
    /// Only invocations that ended this long ago or later, e.g. `10m`.
    #[arg(long)]
    since: Option<String>,
    /// Keep printing new lines as they come.
    #[arg(long, short)]
    follow: bool,
}

/// `time invocation [sub-tenant] version status stream| line`, for people.
fn human(entry: &serde_json::Value) -> String {
    let millis = entry["time_ms"].as_u64().unwrap_or(0);
    let time = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis));
    let id = entry["invocation_id"].as_str().unwrap_or("-");
    let short = id.get(..8).unwrap_or(id);
    let sub = entry["sub_tenant"]
        .as_str()
        .map(|s| format!(" [{s}]"))
        .unwrap_or_default();
    // Every stream is marked, so a guest cannot print a line that passes
    // for the host's.
    let stream = match entry["stream"].as_str() {
        Some("stderr") => "err",
        Some("stratus") => "stratus",
        _ => "out",
    };
    format!(
        "{time} {short}{sub} v{} {} {stream}| {}",
        entry["version"],
        entry["status"],
        printable(entry["line"].as_str().unwrap_or(""))
    )
}

/// The line with control characters (carriage returns, escapes) shown as
/// `\xNN`: a guest's output must not move the cursor or restyle the terminal.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

impl Logs {
    /// Runs the command.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        let client = global.client();
        let (account, function) = global.function_address(&client, &self.function).await?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(sub) = &self.sub_tenant {
            query.append_pair("sub_tenant", sub);
        }
        if let Some(invocation) = &self.invocation {
            query.append_pair("invocation", invocation);
        }
        if let Some(since) = &self.since {
            query.append_pair("since", since);
        }
        if self.follow {
            query.append_pair("follow", "true");
        }
        let path = format!("/accounts/{account}/functions/{function}/logs?{}", query.finish());
        let response = client.stream(&path).await?;
        let dropped = response
            .headers()
            .get("x-stratus-dropped-lines")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if dropped > 0 && !global.json {
            eprintln!("({dropped} older lines were dropped: the host keeps a bounded log per function)");
        }
        let mut body = response.into_body();
        let mut pending = Vec::new();
        let mut stdout = std::io::stdout();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else { continue };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let written = if global.json {
                    stdout.write_all(&line)
                } else if let Ok(entry) = serde_json::from_slice::<serde_json::Value>(&line) {
                    writeln!(stdout, "{}", human(&entry))
                } else {
                    Ok(())
                };
                match written.and_then(|()| stdout.flush()) {
                    Ok(()) => {}
                    // The reader (`head`, a closed pager) has what it wanted.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(())
    }
}
