//! A cluster whose etcd wants TLS with client certificates and a user with
//! rights under the cluster's prefix only.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::{Cluster, Etcd, within_5s};
use crate::harness::{HELLO_COMPONENT, OPERATOR_KEY, Server, bearer};

/// A CA, and certificates it signed for etcd (127.0.0.1) and a client.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new(dir: &Path) -> Self {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        for (name, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        Self { dir: dir.to_path_buf() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

#[test]
fn nodes_reach_an_etcd_that_wants_tls_client_certificates_and_a_user() {
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new(certs.path());
    let etcd = Etcd::start_with(&[
        "--cert-file",
        &pki.path("server.pem"),
        "--key-file",
        &pki.path("server.key"),
        "--trusted-ca-file",
        &pki.path("ca.pem"),
        "--client-cert-auth",
    ]);
    let ctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &format!("https://{}", etcd.endpoint)])
            .args([
                "--cacert",
                &pki.path("ca.pem"),
                "--cert",
                &pki.path("client.pem"),
                "--key",
                &pki.path("client.key"),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A user that may touch only the cluster's prefix.
    ctl(&["user", "add", "root:root-password"]);
    ctl(&["user", "add", "stratus:node-password"]);
    ctl(&["role", "add", "stratus-nodes"]);
    ctl(&[
        "role",
        "grant-permission",
        "stratus-nodes",
        "--prefix=true",
        "readwrite",
        "/secure/",
    ]);
    ctl(&["user", "grant-role", "stratus", "stratus-nodes"]);
    ctl(&["--user", "root:root-password", "auth", "enable"]);

    let cluster = Cluster::on_url(&format!("etcd://{}/secure", etcd.endpoint));
    let flags = [
        "--cluster-ca",
        &pki.path("ca.pem"),
        "--cluster-cert",
        &pki.path("client.pem"),
        "--cluster-key",
        &pki.path("client.key"),
        "--cluster-user",
        "stratus",
    ];
    // Without the password the node cannot start, and says what is missing.
    let out = Command::new(crate::harness::stratus_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            &cluster.url,
            "--node-id",
            "nopass",
        ])
        .args(flags)
        .arg("--data")
        .arg(cluster.data_of("nopass"))
        .env("STRATUS_OPERATOR_KEY", OPERATOR_KEY)
        .env_remove("STRATUS_CLUSTER_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATUS_CLUSTER_PASSWORD"));

    let nodes: Vec<Server> = ["a", "b"]
        .iter()
        .map(|id| {
            let mut args = vec!["--cluster", cluster.url.as_str(), "--node-id", id];
            args.extend_from_slice(&flags);
            Server::spawn_node_with_env(
                &cluster.data_of(id),
                &args,
                OPERATOR_KEY,
                &[("STRATUS_CLUSTER_PASSWORD", "node-password")],
            )
        })
        .collect();
    let key = nodes[0].create_account("acme");
    nodes[0].deploy(&key, "acme", "hello", HELLO_COMPONENT, json!({}));
    within_5s("the other node serves it", || {
        (nodes[1].get("/fn/acme/hello", &bearer(&key)).status == 200).then_some(())
    });
}
