//! Supply chain: the resolved dependency graph (`Cargo.lock`, read through
//! `cargo metadata --locked`) stays above the versions that fixed known
//! advisories, and every dependency comes from crates.io.
//!
//! The advisory database itself is not reachable from CI, so the floors are
//! pinned here by hand; raise them when a new advisory lands. Licenses and
//! sources are also checked by `cargo deny` (see `deny.toml`).

use std::fmt;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// How crates.io appears as a package source in `cargo metadata`.
const CRATES_IO_SOURCES: &[&str] = &[
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

/// A version floor (and optional ceiling) for one crate, with the reason.
struct Pin {
    name: &'static str,
    at_least: Version,
    below: Option<Version>,
    reason: &'static str,
}

const PINS: &[Pin] = &[
    Pin {
        name: "wasmtime",
        at_least: Version::new(48, 0, 4),
        below: Some(Version::new(49, 0, 0)),
        reason: "earlier 48.0.x releases have security advisories fixed in 48.0.4; \
                 the host targets the 48 LTS line, so a move to 49+ is a deliberate upgrade",
    },
    Pin {
        name: "wasmtime-wasi",
        at_least: Version::new(48, 0, 4),
        below: None,
        reason: "earlier 48.0.x releases have security advisories fixed in 48.0.4 \
                 and must match the wasmtime release",
    },
    Pin {
        name: "wasmtime-wasi-http",
        at_least: Version::new(48, 0, 4),
        below: None,
        reason: "earlier 48.0.x releases have security advisories fixed in 48.0.4 \
                 (including the wasi:http zero-timeout panic)",
    },
    Pin {
        name: "h2",
        at_least: Version::new(0, 4, 16),
        below: None,
        reason: "h2 releases before 0.4.16 have known security advisories",
    },
    Pin {
        name: "jsonwebtoken",
        at_least: Version::new(10, 3, 0),
        below: None,
        reason: "jsonwebtoken releases before 10.3.0 have a known security advisory \
                 in token validation",
    },
];

/// MAJOR.MINOR.PATCH, plus whether it carried a pre-release tag (which sorts
/// below the plain release). Build metadata after `+` is ignored.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    release: bool,
}

impl Version {
    const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
            release: true,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let text = text.split('+').next()?;
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let version = Version {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
            release: pre.is_none(),
        };
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.release {
            write!(f, "-pre")?;
        }
        Ok(())
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo metadata` for the whole workspace, as the lock file resolves it.
fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} metadata: {e}"));
    assert!(
        output.status.success(),
        "cargo metadata --locked failed ({}); is Cargo.lock up to date?\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn packages(metadata: &Value) -> &[Value] {
    metadata["packages"].as_array().expect("metadata has a packages array")
}

fn str_field<'a>(package: &'a Value, field: &str) -> &'a str {
    package[field]
        .as_str()
        .unwrap_or_else(|| panic!("package without a string {field:?}: {package}"))
}

#[test]
fn version_parsing_and_ordering() {
    let v = |s| Version::parse(s).unwrap();
    assert_eq!(v("48.0.8"), Version::new(48, 0, 8));
    assert_eq!(v("0.11.1+wasi-snapshot-preview1"), Version::new(0, 11, 1));
    assert!(v("48.0.3") < Version::new(48, 0, 4));
    assert!(v("48.0.10") > Version::new(48, 0, 4));
    assert!(v("48.0.4-rc.1") < Version::new(48, 0, 4));
    assert!(v("0.4.9") < Version::new(0, 4, 16));
    assert!(v("10.2.99") < Version::new(10, 3, 0));
    assert!(v("11.0.0") > Version::new(10, 3, 0));
    assert_eq!(Version::parse("48.0"), None);
    assert_eq!(Version::parse("48.0.x"), None);
    assert_eq!(Version::parse("1.2.3.4"), None);
}

#[test]
fn pinned_crates_are_at_or_above_their_advisory_floors() {
    let metadata = metadata();
    let mut problems = Vec::new();
    let mut seen = Vec::new();

    for package in packages(&metadata) {
        let name = str_field(package, "name");
        let Some(pin) = PINS.iter().find(|pin| pin.name == name) else {
            continue;
        };
        let raw = str_field(package, "version");
        let Some(version) = Version::parse(raw) else {
            problems.push(format!("{name} {raw}: cannot parse the version"));
            continue;
        };
        seen.push(name);
        if version < pin.at_least {
            problems.push(format!("{name} {version} is below {}: {}", pin.at_least, pin.reason));
        }
        if let Some(below) = pin.below
            && version >= below
        {
            problems.push(format!("{name} {version} is not below {below}: {}", pin.reason));
        }
    }

    assert!(
        problems.is_empty(),
        "dependencies below their advisory floors (run `cargo update -p NAME`):\n  {}",
        problems.join("\n  ")
    );
    // The host depends on all of these today; a pin whose crate disappears
    // from the graph is stale and should be dropped deliberately.
    for pin in PINS {
        assert!(
            seen.contains(&pin.name),
            "{} is no longer in the dependency graph; remove its pin from supply_chain.rs",
            pin.name
        );
    }
}

#[test]
fn every_dependency_comes_from_crates_io() {
    let metadata = metadata();
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .expect("metadata has workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!members.is_empty(), "no workspace members in cargo metadata");

    let mut problems = Vec::new();
    for package in packages(&metadata) {
        let id = str_field(package, "id");
        let name = str_field(package, "name");
        let version = str_field(package, "version");
        match package["source"].as_str() {
            None if members.contains(&id) => {}
            None => problems.push(format!(
                "{name} {version} is a path dependency outside the workspace ({})",
                str_field(package, "manifest_path")
            )),
            Some(source) if CRATES_IO_SOURCES.contains(&source) => {}
            Some(source) => problems.push(format!("{name} {version} comes from {source}")),
        }
    }
    assert!(
        problems.is_empty(),
        "every dependency must come from crates.io (no git, other registries or outside paths):\n  {}",
        problems.join("\n  ")
    );
}
