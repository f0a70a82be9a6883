//! `stratus new NAME [--template http|json-api|kv|outbound] [--sdk PATH]`: a
//! function crate of its own, ready for `cargo test` and `stratus up`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::names::FunctionName;

/// The SDK of the checkout this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// Create a function crate from a template.
#[derive(Debug, clap::Args)]
pub struct New {
    /// The function's name (lower-case letters, digits and `-`); the crate
    /// is made in a new directory of that name.
    name: String,
    /// What the function starts as.
    #[arg(long, value_enum, default_value_t = Template::Http)]
    template: Template,
    /// The `guest-sdk` directory of a Stratus checkout (default: the one this
    /// binary was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
    /// Where to make the crate (default: `./NAME`).
    #[arg(long)]
    path: Option<PathBuf>,
}

/// The templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Answers `hello, NAME`.
    Http,
    /// A todo list per sub-tenant in KV, with a router (`--tenancy multi`).
    JsonApi,
    /// A visit counter per sub-tenant in KV.
    Kv,
    /// Calls an upstream HTTP API with a token only it accepts.
    Outbound,
}

impl Template {
    fn source(self) -> &'static str {
        match self {
            Template::Http => include_str!("../../templates/http/lib.rs"),
            Template::JsonApi => include_str!("../../templates/json-api/lib.rs"),
            Template::Kv => include_str!("../../templates/kv/lib.rs"),
            Template::Outbound => include_str!("../../templates/outbound/lib.rs"),
        }
    }

    /// Dependencies beyond the SDK.
    fn dependencies(self) -> &'static str {
        match self {
            Template::Http | Template::Outbound => "",
            Template::Kv => "serde_json = \"1\"\n",
            Template::JsonApi => "serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n",
        }
    }

    /// The `[package.metadata.stratus]` table `stratus up` deploys with.
    fn metadata(self) -> &'static str {
        match self {
            Template::Http => "# tenancy = \"multi\"\n# env = { GREETING = \"hello\" }\n",
            Template::JsonApi | Template::Kv => "tenancy = \"multi\"\n",
            Template::Outbound => {
                "env = { UPSTREAM = \"https://example.com/\" }\nallow-outbound = [\"example.com:443\"]\n\
                 # For an upstream on this machine, also: allow-private-outbound = [\"127.0.0.1\"]\n"
            }
        }
    }
}

fn manifest(name: &str, sdk: &Path, template: Template) -> String {
    // Debug formatting quotes and escapes the path as TOML expects.
    let sdk = format!("{:?}", sdk.display().to_string());
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A Stratus function is a library built for wasm32-wasip2:
#   cargo test                                        # unit tests, natively
#   cargo build --target wasm32-wasip2 --release      # the component
#   stratus up .                                      # serve and deploy it locally
[lib]
crate-type = ["cdylib"]

[dependencies]
stratus-sdk = {{ path = {sdk} }}
{deps}
# What `stratus up` deploys with; its flags win.
[package.metadata.stratus]
{metadata}
# A crate of its own, even when made inside another workspace.
[workspace]
"#,
        deps = template.dependencies(),
        metadata = template.metadata(),
    )
}

impl New {
    /// Writes the crate.
    pub fn execute(self) -> anyhow::Result<()> {
        let name = FunctionName::parse(&self.name)
            .map_err(|e| anyhow::anyhow!("{e}: the name is also the function's, so it follows function names"))?;
        let sdk = match &self.sdk {
            Some(sdk) => sdk.clone(),
            None => PathBuf::from(BUILT_SDK),
        };
        let sdk = sdk.canonicalize().map_err(|_| {
            anyhow::anyhow!(
                "no Stratus SDK at {}: {}; pass the `guest-sdk` directory of a Stratus checkout with --sdk PATH",
                sdk.display(),
                if self.sdk.is_some() {
                    "the path given does not exist"
                } else {
                    "this binary was built from a checkout that is no longer there"
                }
            )
        })?;
        anyhow::ensure!(
            sdk.join("Cargo.toml").is_file(),
            "{} is not the SDK crate (no Cargo.toml): pass the `guest-sdk` directory of a Stratus checkout with --sdk PATH",
            sdk.display()
        );
        let dir = self.path.clone().unwrap_or_else(|| PathBuf::from(name.as_str()));
        anyhow::ensure!(
            !dir.exists(),
            "{} exists already: pick another name or --path",
            dir.display()
        );
        std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |path: PathBuf, text: &str| {
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        };
        write(dir.join("Cargo.toml"), &manifest(name.as_str(), &sdk, self.template))?;
        write(dir.join("src/lib.rs"), self.template.source())?;
        write(dir.join(".gitignore"), "/target\n/.stratus\n")?;
        // The checkout's lockfile: the versions the SDK is tested with, and
        // a build that needs nothing new from the network. Cargo drops what
        // the crate does not use.
        let lock = sdk.join("../Cargo.lock");
        if lock.is_file() {
            std::fs::copy(&lock, dir.join("Cargo.lock")).with_context(|| format!("cannot copy {}", lock.display()))?;
        }
        super::output::say!("created {} from the {:?} template", dir.display(), self.template);
        super::output::say!("  cd {}", dir.display());
        super::output::say!("  cargo test          # its unit tests, with stratus_sdk::testing");
        super::output::say!("  stratus up .        # build it for wasm32-wasip2, serve it and print its URL");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK guide shows the `http` template's manifest and code: they
    /// must be what `stratus new` writes.
    #[test]
    fn the_sdk_guide_shows_what_stratus_new_writes() {
        let guide = include_str!("../../../guest-sdk/README.md");
        let block = |fence: &str| {
            let start = guide
                .find(fence)
                .map(|i| i + fence.len())
                .unwrap_or_else(|| panic!("no {fence}"));
            guide[start..].split("```").next().unwrap_or_default().to_string()
        };
        let manifest_shown = block("```toml\n");
        let written = manifest("hello", Path::new("/path/to/stratus/guest-sdk"), Template::Http);
        assert_eq!(manifest_shown, written);
        let code_shown = block("its `src/lib.rs` without the tests:\n\n```rust\n");
        let source = Template::Http.source();
        let without_tests = source.split("#[cfg(test)]").next().unwrap_or_default();
        let without_docs: String = without_tests
            .lines()
            .filter(|line| !line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(code_shown.trim(), without_docs.trim());
    }
}
