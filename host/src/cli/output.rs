//! Printing results: JSON with `--json`, aligned columns otherwise.

/// `println!` for results: when the reader has gone (`| head`, a closed
/// pager), the command ends quietly with success instead of panicking, as
/// the reader has what it wanted.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(err) = writeln!(out, $($arg)*).and_then(|()| out.flush()) {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("cannot write to stdout: {err}");
        }
    }};
}
pub(crate) use say;

/// Prints `value` as JSON, or `rows` under `headers` as a table.
pub fn print(json: bool, value: &serde_json::Value, headers: &[&str], rows: Vec<Vec<String>>) {
    if json {
        say!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

/// A JSON field as display text (`-` when absent).
pub fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints a one-line confirmation, or the JSON with `--json`.
pub fn done(json: bool, value: &serde_json::Value, message: impl FnOnce() -> String) {
    if json {
        say!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        say!("{}", message());
    }
}

/// A Unix-seconds field as an RFC 3339 time.
pub fn time_cell(value: &serde_json::Value) -> String {
    match value.as_u64() {
        Some(secs) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
        }
        None => cell(value),
    }
}
