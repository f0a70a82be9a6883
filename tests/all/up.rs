//! `stratus up`: a local host serving one function; with `--watch` it
//! redeploys when the code changes and keeps the old version when it cannot.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The child is killed however the test ends.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stratus up PATH --watch` on `data`, with `env` set; its output lines
/// (stdout and stderr) as they come.
fn up_watch(path: &std::path::Path, data: &std::path::Path, env: &[(&str, &str)]) -> (Up, mpsc::Receiver<String>) {
    let mut child = Command::new(stratus_bin())
        .arg("up")
        .arg(path)
        .args(["--watch", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (Up(child), lines)
}

/// The next line (from stdout or stderr) containing `needle`, within `within`.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, within: Duration, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {within:?}; saw: {seen:#?}");
}

#[test]
fn up_watch_redeploys_changed_code_and_keeps_serving_through_a_bad_change() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("app.wasm");
    std::fs::copy(HELLO_COMPONENT, &component).unwrap();
    let (_up, lines) = up_watch(&component, &dir.path().join("data"), &[]);
    let mut seen = Vec::new();

    let hint = wait_for(&lines, "try: curl ", Duration::from_secs(60), &mut seen);
    let url = hint.trim_start_matches("try: curl ").trim().to_string();
    wait_for(&lines, "watching", Duration::from_secs(5), &mut seen);
    let first = call_url("GET", &url, &[], b"");
    assert_eq!((first.status, first.text().trim()), (200, "hello from stratus"));

    // New code: the next version serves it.
    let staged = dir.path().join("staged.wasm");
    std::fs::copy(ECHO_COMPONENT, &staged).unwrap();
    std::fs::rename(&staged, &component).unwrap();
    let redeployed = wait_for(
        &lines,
        "redeployed dev/app version 2",
        Duration::from_secs(60),
        &mut seen,
    );
    assert!(redeployed.contains("compiled in"), "{redeployed}");
    let second = call_url("GET", &format!("{url}echo-me"), &[], b"");
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-stratus-version"), Some("2"));
    assert_ne!(second.text().trim(), "hello from stratus");

    // A file that is not a component: the deploy is refused, version 2 stays.
    std::fs::write(&component, b"not a component").unwrap();
    let failed = wait_for(&lines, "deploy failed", Duration::from_secs(30), &mut seen);
    assert!(
        failed.contains("not a WebAssembly component") && failed.contains("still serving the previous version"),
        "{failed}"
    );
    let third = call_url("GET", &url, &[], b"");
    assert_eq!(third.status, 200);
    assert_eq!(third.header("x-stratus-version"), Some("2"));
}

#[test]
fn up_watch_builds_only_when_the_source_changes_and_shows_the_compilers_error() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("watched");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sdk = repo.join("guest-sdk").canonicalize().unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"watched\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nstratus-sdk = {{ path = {:?} }}\n\n[workspace]\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    // The workspace's lock and target dir: only this crate is compiled.
    std::fs::copy(repo.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let source = krate.join("src/lib.rs");
    std::fs::copy(repo.join("examples/hello/src/lib.rs"), &source).unwrap();

    let data = dir.path().join("data");
    let (_up, lines) = up_watch(&krate, &data, &[("CARGO_TARGET_DIR", WASM_TARGET_DIR)]);
    let mut seen = Vec::new();
    let hint = wait_for(&lines, "try: curl ", Duration::from_secs(300), &mut seen);
    let url = hint.trim_start_matches("try: curl ").trim().to_string();
    wait_for(&lines, "watching", Duration::from_secs(5), &mut seen);

    // Nothing changed: the build's own reads of the crate start no build.
    std::thread::sleep(Duration::from_secs(3));
    let quiet: Vec<String> = lines.try_iter().collect();
    assert!(
        !quiet.iter().any(|l| l.contains("building")),
        "rebuilt with nothing changed: {quiet:#?}"
    );

    // A change that does not compile: the compiler's own error, once.
    std::fs::write(&source, "this is not rust\n").unwrap();
    let failed = wait_for(
        &lines,
        "still serving the previous version",
        Duration::from_secs(120),
        &mut seen,
    );
    assert!(!failed.contains("rustup target add"), "{failed}");
    assert!(
        seen.iter().any(|l| l.contains("error") && l.contains("expected")),
        "the compiler's error is not shown: {seen:#?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<String> = lines.try_iter().collect();
    assert!(
        !after.iter().any(|l| l.contains("building")),
        "a failed build repeated with nothing changed: {after:#?}"
    );
    assert_eq!(call_url("GET", &url, &[], b"").text().trim(), "hello from stratus");
}
