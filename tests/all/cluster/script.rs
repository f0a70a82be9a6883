//! The README's local cluster (`scripts/cluster.sh`, which `bash scripts/dev.sh
//! cluster` runs once it has built): it starts, every node answers the
//! deployed `hello`, and Ctrl-C stops it all.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{HELLO_COMPONENT, call_url, stratus_bin};

#[test]
fn the_local_cluster_script_starts_three_nodes_that_answer_and_stops_on_ctrl_c() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // Free ports from the kernel, as the other tests' etcd gets them: etcd
    // (2), 3 nodes, a frontend.
    let ports: Vec<u16> = (0..6).map(|_| super::free_port()).collect();
    // What the script says on stderr, shown when it stops before its summary.
    let errors = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("bash")
        .arg(format!("{root}/scripts/cluster.sh"))
        .env("STRATUS", stratus_bin())
        .env("HELLO_WASM", HELLO_COMPONENT)
        .env("ETCD_PORT", ports[0].to_string())
        .env("ETCD_PEER_PORT", ports[1].to_string())
        .env("NODE_PORTS", format!("{} {} {}", ports[2], ports[3], ports[4]))
        .env("FRONTEND_PORT", ports[5].to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(errors.reopen().unwrap()))
        .spawn()
        .unwrap();
    // A failing assertion still stops the script and all it started.
    struct Interrupt(u32);
    impl Drop for Interrupt {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _interrupt = Interrupt(child.id());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("Ctrl-C stops");
        said.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let curls: Vec<&String> = said.iter().filter(|l| l.trim_start().starts_with("curl ")).collect();
    assert_eq!(
        curls.len(),
        4,
        "three nodes and the frontend: {said:#?}\nstderr: {}",
        std::fs::read_to_string(errors.path()).unwrap_or_default()
    );
    for curl in curls {
        // curl [-i] -H 'Authorization: Bearer KEY' [-H 'x-stratus-sub-tenant: S'] URL
        let key = curl.split("Bearer ").nth(1).unwrap().split('\'').next().unwrap();
        let url = curl.split_whitespace().last().unwrap();
        let mut headers = vec![("authorization", format!("Bearer {key}"))];
        if curl.contains("x-stratus-sub-tenant") {
            headers.push(("x-stratus-sub-tenant", "alice".to_string()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = call_url("GET", url, &headers, b"");
        assert_eq!(
            (reply.status, reply.text()),
            (200, "hello from stratus".to_string()),
            "{url}"
        );
        if curl.contains("x-stratus-sub-tenant") {
            assert!(
                reply.header("x-stratus-node").is_some_and(|n| n.starts_with("node")),
                "the frontend names the node"
            );
        }
    }
    let status = said.iter().find(|l| l.contains("cluster status")).unwrap();
    let out = Command::new("sh").arg("-c").arg(status.trim()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("node"))
            .count(),
        3,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the script did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports[2])).is_err(),
        "a node outlived the script"
    );
}
