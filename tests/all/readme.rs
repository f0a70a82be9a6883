//! The README's first function and tour, run as written (`scripts/readme.sh`).

use std::process::Command;

use crate::harness::*;

#[test]
fn the_readme_first_function_and_tour_run_end_to_end() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin_dir = std::path::Path::new(stratus_bin()).parent().unwrap();
    let out = Command::new("bash")
        .arg("scripts/readme.sh")
        .current_dir(root)
        .env("STRATUS_BIN_DIR", bin_dir)
        // The examples are built there already; the tour's builds find them.
        .env("CARGO_TARGET_DIR", WASM_TARGET_DIR)
        .env_remove("STRATUS_KEY")
        .env_remove("STRATUS_URL")
        .env_remove("STRATUS_ACCOUNT")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "hello, ada",
        "<== README: Your first function ... ok",
        r#"{"memory":2,"kv":2}"#,
        "<== README: A five-minute tour ... ok",
    ] {
        assert!(
            stdout.contains(expected),
            "no {expected:?} in:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}
