//! Stratus: a serverless host for WebAssembly components.
//!
//! # Layout
//!
//! A trigger call flows through the modules in this order:
//!
//! - `server` accepts the connection and parses the address (`/fn/…` or a
//!   function host name);
//! - `registry` resolves account, function and version from an in-memory
//!   snapshot of the registry's store;
//! - `tenancy` establishes the caller (account key, or anonymous) and the
//!   sub-tenant, and decides what the caller may see;
//! - `credentials` holds the keys that prove who a caller is;
//! - `runtime` runs the call in a fresh wasmtime store from a
//!   pre-instantiated component, under a deadline and memory limit.
//!
//! `cli` is the `stratus` command, a thin client of the admin API except for
//! `serve` and `up`.

pub mod cli;
pub(crate) mod client;
mod clock;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod frontend;
pub use stratus_wire::names;
pub(crate) mod registry;
pub(crate) mod runtime;
pub(crate) mod server;
pub(crate) mod tenancy;

/// What the benchmarks in `bench/` time in process, and the tests' one
/// helper: nothing else of the crate is public, so the compiler finds what
/// nothing uses.
pub mod bench {
    pub use crate::cluster::ring::{Ring, VNODES};
    pub use crate::credentials::tokens::Tokens;
    pub use crate::registry::functions::VersionBounds;
    pub use crate::registry::records::{Reuse, Tenancy, VersionConfig, VersionState};
    pub use crate::registry::{Registry, Snapshot, sha256_hex};
    pub use crate::runtime::credentials::Invocation;
    pub use crate::tenancy::{Presented, authenticate};
}

#[cfg(test)]
mod module_graph {
    //! The top-level modules import each other without cycles, so each can
    //! be read (and replaced) without the ones above it.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    const MODULES: &[&str] = &[
        "cli",
        "client",
        "cluster",
        "clock",
        "config",
        "credentials",
        "error",
        "frontend",
        "registry",
        "runtime",
        "server",
        "tenancy",
    ];

    /// The `crate::` modules `path` (a file or a folder) uses outside its tests.
    fn uses(path: &Path, into: &mut BTreeSet<String>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                uses(&entry.path(), into);
            }
            return;
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if MODULES.contains(&name.as_str()) {
                into.insert(name);
            }
        }
    }

    #[test]
    fn the_top_level_modules_have_no_import_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for module in MODULES {
            let mut used = BTreeSet::new();
            let dir = src.join(module);
            let path = if dir.is_dir() {
                dir
            } else {
                src.join(format!("{module}.rs"))
            };
            uses(&path, &mut used);
            used.remove(*module);
            graph.insert(module, used);
        }
        // Depth-first search for a back edge.
        fn visit<'a>(
            node: &'a str,
            graph: &'a BTreeMap<&'a str, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if done.contains(node) {
                return;
            }
            if let Some(at) = path.iter().position(|n| *n == node) {
                panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                if let Some((key, _)) = graph.get_key_value(next.as_str()) {
                    visit(key, graph, path, done);
                }
            }
            path.pop();
            done.insert(node);
        }
        let mut done = BTreeSet::new();
        for module in MODULES {
            visit(module, &graph, &mut Vec::new(), &mut done);
        }
    }

    /// The modules a file of a folder refers to among its siblings, and
    /// `mod` for the folder's own `mod.rs` (whose items a child reaches as
    /// `super::Item`).
    fn sibling_uses(code: &str, is_mod: bool, siblings: &BTreeSet<String>) -> BTreeSet<String> {
        let ident = |rest: &str| -> String {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        let mut used = BTreeSet::new();
        if is_mod {
            // `child::…` paths, not after another `::` (or an identifier).
            for sibling in siblings {
                let needle = format!("{sibling}::");
                for (i, _) in code.match_indices(&needle) {
                    let before = code[..i].chars().next_back().unwrap_or(' ');
                    if !(before.is_ascii_alphanumeric() || before == '_' || before == ':') {
                        used.insert(sibling.clone());
                    }
                }
            }
            return used;
        }
        for (i, _) in code.match_indices("super::") {
            let before = code[..i].chars().next_back().unwrap_or(' ');
            if before == ':' {
                continue; // `super::super::…`: another folder's business.
            }
            let rest = &code[i + "super::".len()..];
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|part| ident(part.trim()))
                    .collect(),
                None => vec![ident(rest)],
            };
            for name in names.into_iter().filter(|n| !n.is_empty() && n != "super") {
                used.insert(if siblings.contains(&name) { name } else { "mod".into() });
            }
        }
        used
    }

    fn folder_has_no_cycle(dir: &Path) {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut siblings = BTreeSet::new();
        let root = std::fs::read_to_string(dir.join("mod.rs")).unwrap_or_default();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folder_has_no_cycle(&path);
                let name = entry.file_name().to_string_lossy().into_owned();
                let code = std::fs::read_to_string(path.join("mod.rs")).unwrap_or_default();
                siblings.insert(name.clone());
                files.insert(name, code);
                continue;
            }
            let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            // A file that is a unit-test module of the folder.
            if root.contains(&format!("#[cfg(test)]\nmod {name};"))
                || root.contains(&format!("#[cfg(test)]\npub(crate) mod {name};"))
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_string();
            if name != "mod" {
                siblings.insert(name.clone());
            }
            files.insert(name, code);
        }
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|(name, code)| {
                let mut used = sibling_uses(code, name == "mod", &siblings);
                used.remove(name);
                (name.clone(), used)
            })
            .collect();
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            dir: &Path,
        ) {
            if done.contains(node) {
                return;
            }
            if let Some(at) = path.iter().position(|n| n == node) {
                panic!(
                    "import cycle in {}: {} -> {node}",
                    dir.display(),
                    path[at..].join(" -> ")
                );
            }
            path.push(node.to_string());
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, path, done, dir);
            }
            path.pop();
            done.insert(node.to_string());
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(node, &graph, &mut Vec::new(), &mut done, dir);
        }
    }

    #[test]
    fn the_files_of_one_folder_have_no_import_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for module in MODULES {
            let dir = src.join(module);
            if dir.is_dir() {
                folder_has_no_cycle(&dir);
            }
        }
    }
}
