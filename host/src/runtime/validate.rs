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

fn provided(import: &str) -> bool {
    let (interface, version) = match import.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (import, None),
    };
    WASI_02.contains(&interface) && version.is_some_and(|v| v.starts_with("0.2."))
}

/// Checks that `bytes` is a valid component whose imports the host provides.
pub fn check_component(bytes: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut unknown = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload
            .map_err(|e| ApiError::InvalidComponent(format!("not a WebAssembly component: {e}")))?;
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
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| {
                        ApiError::InvalidComponent(format!("malformed import section: {e}"))
                    })?;
                    if !provided(import.name.name) {
                        unknown.push(import.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ApiError::InvalidComponent(
            "the component is truncated".into(),
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
        assert!(
            matches!(check_component(core), Err(ApiError::InvalidComponent(m)) if m.contains("core"))
        );
        assert!(matches!(
            check_component(b"hello"),
            Err(ApiError::InvalidComponent(_))
        ));
    }

    #[test]
    fn wasi_02_imports_match_any_patch_version() {
        assert!(provided("wasi:http/types@0.2.0"));
        assert!(provided("wasi:cli/environment@0.2.12"));
        assert!(!provided("wasi:http/types@0.3.0"));
        assert!(!provided("wasi:keyvalue/store@0.2.0"));
    }
}
