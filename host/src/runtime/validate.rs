//! Deploy-time checks of an uploaded component, before anything is stored.

use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

use crate::error::ApiError;

/// Interfaces of WASI 0.2 the host links (`wasmtime-wasi` + `wasmtime-wasi-http`).
/// Any `0.2.x` version of them matches, as the linker matches semver-compatibly.
const WASI_02: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// Interfaces of the `stratus:function` package the host implements; any
/// `0.1.x` matches.
const STRATUS_01: &[&str] = &["stratus:function/kv", "stratus:function/credentials"];

fn provided(import: &str) -> bool {
    let (interface, version) = match import.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (import, None),
    };
    (WASI_02.contains(&interface) && version.is_some_and(|v| v.starts_with("0.2.")))
        || (STRATUS_01.contains(&interface) && version.is_some_and(|v| v.starts_with("0.1.")))
}

/// What a file that is not WebAssembly looks like, to say what was uploaded.
fn what_it_is(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x7f, b'E', b'L', b'F', ..] => "an ELF executable or library (a native build)",
        [b'M', b'Z', ..] => "a Windows executable",
        [0xcf | 0xce, 0xfa, 0xed, 0xfe, ..] | [0xca, 0xfe, 0xba, 0xbe, ..] => "a macOS executable or library",
        [b'P', b'K', 3, 4, ..] => "a zip archive",
        [0x1f, 0x8b, ..] => "a gzip archive",
        [b'#', b'!', ..] => "a script",
        [] => "empty",
        _ if bytes
            .iter()
            .take(512)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            "text"
        }
        _ => "not WebAssembly",
    }
}

/// Checks that `bytes` is a valid component whose imports the host provides.
pub fn check_component(bytes: &[u8]) -> Result<(), ApiError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(ApiError::InvalidComponent(format!(
            "this file is {}, not a WebAssembly component: upload the `.wasm` that \
             `cargo build --target wasm32-wasip2 --release` writes under target/wasm32-wasip2/release/",
            what_it_is(bytes)
        )));
    }
    let mut depth = 0usize;
    let mut unknown = Vec::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ApiError::InvalidComponent(format!("not a WebAssembly component: {e}")))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(ApiError::InvalidComponent(
                        "this is a core WebAssembly module, not a component: build with `--target wasm32-wasip2`"
                            .into(),
                    ));
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader.into_iter().flatten() {
                    exports.push(export.name.name.to_string());
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import =
                        import.map_err(|e| ApiError::InvalidComponent(format!("malformed import section: {e}")))?;
                    if !provided(import.name.name) {
                        unknown.push(import.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ApiError::InvalidComponent("the component is truncated".into()));
    }
    let serves_http = exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@"));
    if !serves_http && exports.iter().any(|e| e.starts_with("wasi:cli/run@")) {
        return Err(ApiError::InvalidComponent(
            "this component is a command (a binary crate's `main`), not an HTTP handler: build a library \
             with `[lib] crate-type = [\"cdylib\"]` and one `#[stratus_sdk::handler]` function \
             (`stratus new NAME` makes such a crate)"
                .into(),
        ));
    }
    if !unknown.is_empty() {
        return Err(ApiError::UnknownImports(unknown));
    }
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| ApiError::InvalidComponent(format!("the component does not validate: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_and_garbage_are_refused() {
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(check_component(core), Err(ApiError::InvalidComponent(m)) if m.contains("core")));
        assert!(matches!(check_component(b"hello"), Err(ApiError::InvalidComponent(m)) if m.contains("text")));
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0";
        assert!(
            matches!(check_component(elf), Err(ApiError::InvalidComponent(m)) if m.contains("native build") && !m.contains('['))
        );
    }

    /// The crate directory of a dependency, from `cargo metadata`.
    fn dependency_dir(name: &str) -> std::path::PathBuf {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let manifest = meta["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .and_then(|p| p["manifest_path"].as_str())
            .unwrap_or_else(|| panic!("{name} is not a dependency"));
        std::path::Path::new(manifest)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    }

    #[test]
    fn the_wit_world_is_what_the_host_links() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let deps = dir.path().join("deps");
        std::fs::create_dir(&deps).unwrap_or_else(|e| panic!("{e}"));
        let wasi_deps = dependency_dir("wasmtime-wasi-http").join("wit/deps");
        for entry in std::fs::read_dir(&wasi_deps).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            std::fs::copy(&path, deps.join(path.file_name().unwrap_or_default())).unwrap_or_else(|e| panic!("{e}"));
        }
        let wit_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
        for entry in std::fs::read_dir(wit_dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.extension().is_some_and(|e| e == "wit") {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap_or_default()))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }

        let mut resolve = wit_parser::Resolve::new();
        let (package, _) = resolve.push_dir(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        let world = resolve
            .select_world(&[package], Some("function"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut imported: Vec<String> = resolve.worlds[world]
            .imports
            .keys()
            .filter_map(|key| match key {
                wit_parser::WorldKey::Interface(id) => resolve.id_of(*id),
                wit_parser::WorldKey::Name(_) => None,
            })
            .collect();
        imported.sort();
        for name in &imported {
            assert!(provided(name), "the world imports {name}, which deploys would refuse");
        }
        let mut bare: Vec<&str> = imported
            .iter()
            .map(|n| n.split('@').next().unwrap_or_default())
            .collect();
        bare.sort();
        let mut linked: Vec<&str> = WASI_02.iter().chain(STRATUS_01).copied().collect();
        linked.sort();
        assert_eq!(bare, linked, "the world and the validator disagree");
        let exports: Vec<String> = resolve.worlds[world]
            .exports
            .keys()
            .filter_map(|key| match key {
                wit_parser::WorldKey::Interface(id) => resolve.id_of(*id),
                wit_parser::WorldKey::Name(_) => None,
            })
            .collect();
        assert_eq!(exports, ["wasi:http/incoming-handler@0.2.12"]);
    }

    #[test]
    fn wasi_02_imports_match_any_patch_version() {
        assert!(provided("wasi:http/types@0.2.0"));
        assert!(provided("wasi:cli/environment@0.2.12"));
        assert!(!provided("wasi:http/types@0.3.0"));
        assert!(!provided("wasi:keyvalue/store@0.2.0"));
    }
}
