//! SPEC §9: a write the registry acknowledged survives `kill -9` at any
//! moment, and the server always comes back.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::harness::*;

/// What the server acknowledged, and what was in flight when it died.
#[derive(Debug, Default)]
struct Acked {
    versions: BTreeSet<u32>,
    alias: Option<u32>,
    alias_in_flight: Option<u32>,
    grant: bool,
    grant_in_flight: Option<bool>,
    kv: i64,
    kv_in_flight: bool,
}

fn auth(key: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", bearer(key)),
        ("content-type", "application/json".to_string()),
    ]
}

/// Checks everything acknowledged is there, then forgets what was in flight.
fn verify(server: &Server, key: &str, acked: &mut Acked, round: usize) {
    let headers = auth(key);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let versions = server
        .admin(key, "GET", "/accounts/acme/functions/hello/versions", None)
        .json();
    let present: BTreeSet<u32> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap() as u32)
        .collect();
    assert!(
        present.is_superset(&acked.versions),
        "round {round}: {present:?} lost some of {:?}",
        acked.versions
    );

    let alias = server.admin(key, "GET", "/accounts/acme/functions/hello/aliases/prod", None);
    let now = (alias.status == 200).then(|| alias.json()["version"].as_u64().unwrap() as u32);
    let allowed = [acked.alias, acked.alias_in_flight.or(acked.alias)];
    assert!(
        allowed.contains(&now),
        "round {round}: alias at {now:?}, acknowledged {acked:?}"
    );
    if let Some(version) = now {
        assert!(
            present.contains(&version),
            "round {round}: the alias points at missing version {version}"
        );
    }
    acked.alias = now;

    let grants = server
        .admin(key, "GET", "/accounts/acme/functions/hello/grants", None)
        .json();
    let granted = grants["grants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["grantee"] == "globex");
    assert!(
        granted == acked.grant || Some(granted) == acked.grant_in_flight,
        "round {round}: grant {granted}, acknowledged {acked:?}"
    );
    acked.grant = granted;

    let count = server
        .request(
            "GET",
            "/fn/acme/counter/",
            &[headers[0], ("x-stratus-sub-tenant", "s")],
            b"",
        )
        .json()["kv"]
        .as_i64()
        .unwrap();
    let expected = acked.kv + 1;
    assert!(
        count == expected || (acked.kv_in_flight && count == expected + 1),
        "round {round}: kv {count}, acknowledged {}",
        acked.kv
    );
    acked.kv = count;
    acked.alias_in_flight = None;
    acked.grant_in_flight = None;
    acked.kv_in_flight = false;
}

fn crash_rounds(rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hello = std::fs::read(HELLO_COMPONENT).unwrap();
    let mut acked = Acked::default();
    let key = {
        let server = Server::spawn(&data, &[]);
        let key = server.create_account("acme");
        server.create_account("globex");
        server.deploy(&key, "acme", "counter", COUNTER_COMPONENT, json!({}));
        server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
        acked.versions.insert(1);
        key
    };
    let headers = auth(&key);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let seed = std::env::var("STRATUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..rounds {
        let server = Server::spawn(&data, &[]);
        verify(&server, &key, &mut acked, round);
        let pid = server.pid();
        let kill_after = Duration::from_millis(rng.random_range(5..250));
        std::thread::scope(|scope| {
            scope.spawn(move || {
                std::thread::sleep(kill_after);
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            });
            loop {
                let answered = match rng.random_range(0..4) {
                    0 => {
                        let sha = sha256(&hello);
                        let body = json!({ "blob": sha });
                        server
                            .try_request(
                                "POST",
                                "/admin/v1/accounts/acme/functions/hello/versions",
                                &headers,
                                Some(body),
                            )
                            .filter(|r| r.status == 201)
                            .map(|r| acked.versions.insert(r.json()["version"].as_u64().unwrap() as u32))
                            .is_some()
                    }
                    1 => {
                        let versions: Vec<u32> = acked.versions.iter().copied().collect();
                        let target = versions[rng.random_range(0..versions.len())];
                        acked.alias_in_flight = Some(target);
                        let reply = server.try_request(
                            "PUT",
                            "/admin/v1/accounts/acme/functions/hello/aliases/prod",
                            &headers,
                            Some(json!({ "version": target })),
                        );
                        let done = reply.is_some_and(|r| r.status == 200 || r.status == 201);
                        if done {
                            acked.alias = Some(target);
                            acked.alias_in_flight = None;
                        }
                        done
                    }
                    2 => {
                        let grant = !acked.grant;
                        acked.grant_in_flight = Some(grant);
                        let (method, body) = if grant {
                            ("PUT", Some(json!({})))
                        } else {
                            ("DELETE", None)
                        };
                        let reply = server.try_request(
                            method,
                            "/admin/v1/accounts/acme/functions/hello/grants/globex",
                            &headers,
                            body,
                        );
                        let done = reply.is_some_and(|r| r.status < 300);
                        if done {
                            acked.grant = grant;
                            acked.grant_in_flight = None;
                        }
                        done
                    }
                    _ => {
                        acked.kv_in_flight = true;
                        let reply = server.try_request(
                            "GET",
                            "/fn/acme/counter/",
                            &[headers[0], ("x-stratus-sub-tenant", "s")],
                            None,
                        );
                        match reply.filter(|r| r.status == 200) {
                            Some(reply) => {
                                let value: Value = reply.json();
                                acked.kv = value["kv"].as_i64().unwrap();
                                acked.kv_in_flight = false;
                                true
                            }
                            None => false,
                        }
                    }
                };
                if !answered {
                    break;
                }
            }
        });
        drop(server);
    }
    let server = Server::spawn(&data, &[]);
    verify(&server, &key, &mut acked, rounds);
}

#[test]
fn acknowledged_writes_survive_kill_9_at_random_points() {
    crash_rounds(50);
}

/// The same, for longer: `cargo test -- --ignored crash`.
#[test]
#[ignore]
fn acknowledged_writes_survive_many_kills() {
    crash_rounds(500);
}
