//! SPEC §7: hostile or careless clients do not stop the host serving others.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

fn authority(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_while_others_are_served() {
    let server = Server::start_with(&["--header-read-timeout", "1s"]);
    let key = server.create_account("acme");
    server.deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    let mut slow = TcpStream::connect(authority(&server)).unwrap();
    let request = format!(
        "GET /fn/acme/hello/ HTTP/1.1\r\nhost: {}\r\nx-slow: ",
        authority(&server)
    );
    let auth = bearer(&key);
    // Two seconds of one byte every 100 ms: twice the header timeout.
    for byte in request.bytes().chain(std::iter::repeat(b'a')).take(20) {
        if slow.write_all(&[byte]).is_err() {
            break;
        }
        assert_eq!(server.get("/fn/acme/hello/", &auth).status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Cut off: the server has closed (or reset) the connection. Still open,
    // the read would wait out its own timeout instead.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    match slow.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("the slow client was not cut off: {err}"),
    }
    assert!(
        !String::from_utf8_lossy(&answer).contains("hello from stratus"),
        "the trickled request must not have been served"
    );
}

#[test]
fn two_thousand_idle_connections_do_not_stop_new_calls() {
    let (server, key) = Server::with_function("hello", HELLO_COMPONENT, json!({}));
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(authority(&server)).unwrap())
        .collect();
    let auth = bearer(&key);
    for _ in 0..20 {
        let reply = server.get("/fn/acme/hello/", &auth);
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    drop(idle);
}
