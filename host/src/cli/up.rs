//! `stratus up PATH`: a local host with one function, for development.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use http::Method;
use serde_json::json;

use super::function::DeployOptions;
use super::global::Global;
use crate::client::{Client, ClientError};
use crate::config::ServeConfig;
use crate::credentials::keys;
use crate::registry::sha256_hex;

/// The account `up` deploys into.
const DEV_ACCOUNT: &str = "dev";

/// Serve on a local data dir, build the function at PATH, deploy it under
/// account `dev`, and print its URL.
///
/// Settings come from the flags, then from a `[package.metadata.stratus]`
/// table in the crate's `Cargo.toml` (keys as the flags, e.g. `tenancy =
/// "multi"`, `env = { K = "V" }`, `allow-outbound = ["api.example.com"]`,
/// `allow-private-outbound = ["127.0.0.1"]`, `private = true`, `name`).
#[derive(Debug, clap::Args)]
pub struct Up {
    /// A function crate (built with `cargo build --target wasm32-wasip2 --release`)
    /// or a ready `.wasm` component.
    path: PathBuf,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory.
    #[arg(long, default_value = ".stratus")]
    data: PathBuf,
    /// Function name (default: the crate or file name).
    #[arg(long)]
    name: Option<String>,
    /// Require an account key to call the function.
    #[arg(long)]
    private: bool,
    /// Rebuild and redeploy whenever the crate (or the `.wasm` file) changes;
    /// a failed build or deploy keeps the running version.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    options: DeployOptions,
    /// Let the function reach this loopback or private address (an
    /// operator setting of `stratus serve`; repeatable), e.g. a local
    /// upstream on 127.0.0.1. It must also be in `--allow-outbound`.
    #[arg(long)]
    allow_private_outbound: Vec<std::net::IpAddr>,
}

/// The crate's `[package.metadata.stratus]`: the same settings as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct Metadata {
    name: Option<String>,
    private: Option<bool>,
    tenancy: Option<String>,
    reuse: Option<String>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u32>,
    env: std::collections::BTreeMap<String, String>,
    allow_outbound: Vec<String>,
    allow_private_outbound: Vec<std::net::IpAddr>,
}

/// The settings to deploy with: flags over the crate's metadata.
#[derive(Debug, Clone)]
struct Settings {
    name: Option<String>,
    public: bool,
    options: DeployOptions,
    private_outbound: Vec<std::net::IpAddr>,
}

/// Reads `[package.metadata.stratus]` of the crate at `path` (none for a
/// `.wasm` file or a crate without the table).
fn metadata(path: &Path) -> anyhow::Result<Metadata> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        return Ok(Metadata::default());
    }
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let Some(table) = value
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("stratus"))
    else {
        return Ok(Metadata::default());
    };
    table
        .clone()
        .try_into()
        .with_context(|| format!("[package.metadata.stratus] in {}", manifest.display()))
}

impl Up {
    fn settings(&self) -> anyhow::Result<Settings> {
        let meta = metadata(&self.path)?;
        let flags = &self.options;
        let mut env: Vec<(String, String)> = meta.env.into_iter().collect();
        for (key, value) in &flags.env {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        let mut allow_outbound = meta.allow_outbound;
        allow_outbound.extend(flags.allow_outbound.iter().cloned());
        allow_outbound.dedup();
        let mut private_outbound = meta.allow_private_outbound;
        private_outbound.extend(self.allow_private_outbound.iter().copied());
        for tenancy in [&meta.tenancy, &meta.reuse].into_iter().flatten() {
            anyhow::ensure!(
                ["single", "multi", "single-use", "warm"].contains(&tenancy.as_str()),
                "[package.metadata.stratus]: {tenancy:?} is not a tenancy (single, multi) or reuse (single-use, warm)"
            );
        }
        Ok(Settings {
            name: self.name.clone().or(meta.name),
            public: !(self.private || meta.private.unwrap_or(false)),
            options: DeployOptions {
                tenancy: flags.tenancy.clone().or(meta.tenancy),
                reuse: flags.reuse.clone().or(meta.reuse),
                timeout_ms: flags.timeout_ms.or(meta.timeout_ms),
                memory_mb: flags.memory_mb.or(meta.memory_mb),
                env,
                allow_outbound,
            },
            private_outbound,
        })
    }
}

impl Up {
    /// Runs until Ctrl-C.
    pub async fn execute(self, global: &Global) -> anyhow::Result<()> {
        super::serve::init_tracing("text");
        // Watching starts before anything is built or said, so no change
        // made once `watching` is printed can be missed.
        let changes = if self.watch { Some(watch(&self.path)?) } else { None };
        let settings = self.settings()?;
        let component = build(&self.path)?;
        // What the first build made, as it stands after it (cargo may have
        // written `Cargo.lock`): the watcher builds again when this changes.
        let built_from = fingerprint(&self.path);
        let name = match &settings.name {
            Some(name) => name.clone(),
            None => component
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| s.replace('_', "-"))
                .context("cannot name the function: use --name")?,
        };

        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("cannot create the data directory {}", self.data.display()))?;
        let operator = operator_key(&self.data)?;
        let mut config = ServeConfig::new(self.listen, self.data.clone());
        config.operator_key = Some(operator.clone());
        config.runtime.private_exempt = settings.private_outbound.clone();
        let (state, listener, admin) = super::serve::start(config).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(crate::server::run(
            state,
            listener,
            admin,
            super::serve::shutdown_signal(),
        ));

        let client = Client::new(&url, Some(operator));
        let key = dev_key(&client, &self.data).await?;
        let deployed = deploy(&client, &name, &component, &settings).await?;
        let fn_url = format!("{url}/fn/{DEV_ACCOUNT}/{name}/");
        if global.json {
            println!(
                "{}",
                json!({ "url": fn_url, "key": key, "account": DEV_ACCOUNT, "function": name, "version": deployed["version"] })
            );
        } else {
            println!(
                "deployed {DEV_ACCOUNT}/{name} version {} (compiled in {} ms)",
                deployed["version"], deployed["compile_ms"]
            );
            println!("account key for {DEV_ACCOUNT}: {key}");
            let multi = settings.options.tenancy.as_deref() == Some("multi");
            if multi {
                // Every call names a sub-tenant, which takes a credential.
                println!("try: curl -H 'Authorization: Bearer {key}' -H 'x-stratus-sub-tenant: alice' {fn_url}");
            } else if !settings.public {
                println!("try: curl -H 'Authorization: Bearer {key}' {fn_url}");
            } else {
                println!("try: curl {fn_url}");
            }
            println!("logs: stratus logs {DEV_ACCOUNT}/{name} --follow --url {url} --key {key}");
            if self.watch {
                println!("watching {} for changes", self.path.display());
            }
            println!("press Ctrl-C to stop");
        }
        if let Some(changes) = changes {
            let exempt = settings.private_outbound.clone();
            tokio::spawn(redeploy_on_change(changes, built_from, self, client, name, exempt));
        }
        server.await.context("the server task failed")?
    }
}

/// Uploads `component` and deploys it as the next version of `name`, unless
/// the latest version already runs this code with these settings.
async fn deploy(
    client: &Client,
    name: &str,
    component: &Path,
    settings: &Settings,
) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let sha = sha256_hex(&bytes);
    let body = settings.options.body(&sha, settings.public);
    if let Some(version) = current_version(client, name, &body).await {
        return Ok(json!({ "version": version, "compile_ms": 0, "unchanged": true }));
    }
    client
        .upload(&format!("/accounts/{DEV_ACCOUNT}/blobs/{sha}"), bytes)
        .await?;
    Ok(client
        .admin(
            Method::POST,
            &format!("/accounts/{DEV_ACCOUNT}/functions/{name}/versions"),
            Some(body),
        )
        .await?)
}

/// Changes under `path` (a crate directory, or one `.wasm` file), a batch
/// per quiet spell of 300 ms; the build's own output (`target/`) is ignored.
fn watch(path: &Path) -> anyhow::Result<Changes> {
    use notify_debouncer_mini::notify::RecursiveMode;

    let root = path
        .canonicalize()
        .with_context(|| format!("cannot watch {}", path.display()))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ignored = root.join("target");
    let file = root.is_file().then(|| root.clone());
    let mut debouncer = notify_debouncer_mini::new_debouncer(
        std::time::Duration::from_millis(300),
        move |events: notify_debouncer_mini::DebounceEventResult| {
            let relevant = events.is_ok_and(|events| {
                events.iter().any(|event| match &file {
                    Some(file) => event.path == *file,
                    None => {
                        !event.path.starts_with(&ignored) && !event.path.components().any(|c| c.as_os_str() == ".git")
                    }
                })
            });
            if relevant {
                let _ = tx.send(());
            }
        },
    )
    .context("cannot start watching for changes")?;
    // A single file is watched through its directory: editors and `cp`
    // often replace the file rather than write it in place.
    let watched = match root.parent() {
        Some(parent) if root.is_file() => parent.to_path_buf(),
        _ => root.clone(),
    };
    debouncer
        .watcher()
        .watch(&watched, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", watched.display()))?;
    Ok(Changes {
        _watcher: debouncer,
        batches: rx,
    })
}

/// Batches of changes; watching stops when this is dropped.
struct Changes {
    _watcher: notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
    batches: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// A digest of what a build reads: every file under `path` (a crate) but
/// the build's output and version control, or the one `.wasm` file. Cargo
/// itself touches and reads `Cargo.toml` and `Cargo.lock` while it builds,
/// which the watcher reports; only a change of content is a reason to build.
fn fingerprint(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(&path, hasher)?;
            } else {
                hasher.update(path.as_os_str().as_encoded_bytes());
                hasher.update([0]);
                hasher.update(std::fs::read(&path)?);
                hasher.update([0]);
            }
        }
        Ok(())
    }
    let mut hasher = Sha256::new();
    if path.is_file() {
        hasher.update(std::fs::read(path).ok()?);
    } else {
        walk(path, &mut hasher).ok()?;
    }
    Some(hex::encode(hasher.finalize()))
}

async fn redeploy_on_change(
    mut changes: Changes,
    mut built_from: Option<String>,
    up: Up,
    client: Client,
    name: String,
    exempt: Vec<std::net::IpAddr>,
) {
    let path = up.path.clone();
    while changes.batches.recv().await.is_some() {
        // Changes that came in while the last build ran are one more build.
        while changes.batches.try_recv().is_ok() {}
        let now = fingerprint(&path);
        if now == built_from {
            continue;
        }
        built_from = now;
        let source = path.clone();
        let built = tokio::task::spawn_blocking(move || build(&source)).await;
        let component = match built {
            Ok(Ok(component)) => component,
            Ok(Err(err)) => {
                eprintln!("{err:#}; still serving the previous version");
                continue;
            }
            Err(err) => {
                eprintln!("the build did not finish: {err}");
                continue;
            }
        };
        // The crate's metadata may have changed with its code.
        let settings = match up.settings() {
            Ok(settings) => settings,
            Err(err) => {
                eprintln!("{err:#}; still serving the previous version");
                continue;
            }
        };
        if settings.private_outbound != exempt {
            // The host's exemptions are set when it starts, as an operator's are.
            eprintln!(
                "allow-private-outbound changed to {:?}: restart `stratus up` to apply it (the host still allows {exempt:?})",
                settings.private_outbound
            );
        }
        match deploy(&client, &name, &component, &settings).await {
            Ok(deployed) if deployed["unchanged"] == true => {}
            Ok(deployed) => println!(
                "redeployed {DEV_ACCOUNT}/{name} version {} (compiled in {} ms)",
                deployed["version"], deployed["compile_ms"]
            ),
            Err(err) => eprintln!("deploy failed: {err:#}; still serving the previous version"),
        }
    }
}

/// The dev operator key, kept in the data directory so restarts reuse it.
fn operator_key(data: &Path) -> anyhow::Result<String> {
    let path = data.join("dev-operator.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_string());
    }
    let key = keys::generate_operator().expose().to_string();
    write_private(&path, &key)?;
    Ok(key)
}

/// The latest version of `name` if it already runs the code of deploy `body`
/// with its settings.
async fn current_version(client: &Client, name: &str, body: &serde_json::Value) -> Option<u64> {
    let function = client
        .admin(Method::GET, &format!("/accounts/{DEV_ACCOUNT}/functions/{name}"), None)
        .await
        .ok()?;
    let latest = function["latest"].as_u64()?;
    let version = function["versions"]
        .as_array()?
        .iter()
        .find(|v| v["version"] == latest)?;
    let config = &version["config"];
    let same = body.as_object()?.iter().all(|(key, wanted)| match key.as_str() {
        "blob" => version["sha256"] == *wanted,
        // Empty lists and maps are left out of the stored config.
        _ => {
            config.get(key).unwrap_or(&serde_json::Value::Null) == wanted
                || (config.get(key).is_none() && (wanted == &json!([]) || wanted == &json!({})))
        }
    });
    // A setting left to the host's default may come back spelled out.
    let defaults = ["tenancy", "reuse", "timeout_ms", "memory_mb"]
        .iter()
        .all(|key| body.get(*key).is_some() || config.get(*key).is_none_or(|v| is_default(key, v)));
    (same && defaults).then_some(latest)
}

/// Whether a stored setting is what the host uses when a deploy leaves it out.
fn is_default(key: &str, value: &serde_json::Value) -> bool {
    match key {
        "tenancy" => value == "single",
        "reuse" => value == "single-use",
        // Limits left out are the host's own: never a reason to deploy again.
        _ => true,
    }
}

/// The key of account `dev`: the one kept in the data directory while it
/// still works (so restarts neither pile up keys nor change the key a
/// developer copied), else a new one, which is kept.
async fn dev_key(client: &Client, data: &Path) -> anyhow::Result<String> {
    let path = data.join("dev-account.key");
    if let Ok(kept) = std::fs::read_to_string(&path) {
        let kept = kept.trim().to_string();
        let check = Client::new(client.base(), Some(kept.clone()));
        if let Ok(me) = check.admin(Method::GET, "/whoami", None).await
            && me["account"] == DEV_ACCOUNT
        {
            return Ok(kept);
        }
    }
    let created = match client
        .admin(Method::POST, "/accounts", Some(json!({ "name": DEV_ACCOUNT })))
        .await
    {
        Ok(created) => created,
        Err(ClientError::Api { code, .. }) if code == "conflict" => {
            client
                .admin(Method::POST, &format!("/accounts/{DEV_ACCOUNT}/keys"), None)
                .await?
        }
        Err(err) => return Err(err.into()),
    };
    let key = created["key"].as_str().unwrap_or_default().to_string();
    let _ = std::fs::remove_file(&path);
    write_private(&path, &key)?;
    Ok(key)
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    // Created 0600, never readable by others even for a moment.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = |mut file: std::fs::File| std::io::Write::write_all(&mut file, text.as_bytes());
    options
        .open(path)
        .and_then(write)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the crate at `path` for `wasm32-wasip2` and returns the component.
fn build(path: &Path) -> anyhow::Result<PathBuf> {
    if path.extension().is_some_and(|e| e == "wasm") {
        return Ok(path.to_path_buf());
    }
    let manifest = path.join("Cargo.toml");
    anyhow::ensure!(
        manifest.exists(),
        "{} is neither a .wasm component nor a crate directory",
        path.display()
    );
    eprintln!("building {} for wasm32-wasip2 …", path.display());
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        // The compiler's diagnostics came as JSON on stdout: show them as
        // the compiler wrote them.
        let mut diagnostics = String::new();
        for line in output.stdout.split(|b| *b == b'\n') {
            let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(rendered) = message["message"]["rendered"].as_str() {
                diagnostics.push_str(rendered);
            }
        }
        eprint!("{diagnostics}");
        let missing_target =
            diagnostics.contains("can't find crate for `core`") || diagnostics.contains("can't find crate for `std`");
        let hint = if missing_target {
            " (the target is not installed: `rustup target add wasm32-wasip2`)"
        } else {
            ""
        };
        anyhow::bail!("building {} failed{hint}", path.display());
    }
    let mut wasm = None;
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let package_dir = message["manifest_path"].as_str().map(Path::new).and_then(Path::parent);
        let ours = package_dir.is_some_and(|dir| dir.canonicalize().ok() == path.canonicalize().ok());
        if !ours {
            continue;
        }
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                wasm = Some(PathBuf::from(file));
            }
        }
    }
    wasm.context("cargo built no .wasm file: is the crate a `cdylib`?")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK guide's `[package.metadata.stratus]` example is a table `up`
    /// reads, key for key.
    #[test]
    fn the_documented_metadata_table_is_what_up_reads() {
        let guide = include_str!("../../../guest-sdk/README.md");
        let start = guide
            .find("```toml\n[package.metadata.stratus]")
            .unwrap_or_else(|| panic!("no metadata example in the guide"));
        let block = guide[start + "```toml\n".len()..]
            .split("```")
            .next()
            .unwrap_or_default();
        let value: toml::Value = toml::from_str(block).unwrap_or_else(|e| panic!("{e}"));
        let table = value
            .get("package")
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("stratus"))
            .cloned()
            .unwrap_or_else(|| panic!("no table"));
        let meta: Metadata = table.try_into().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.tenancy.as_deref(), Some("multi"));
        assert_eq!(meta.private, Some(true));
        assert_eq!(meta.allow_private_outbound.len(), 1);
        assert_eq!(meta.env.len(), 1);
    }
}
