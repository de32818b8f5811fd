//! A node's start-up against NATS: a bounded wait for an unreachable cluster, and errors that
//! name the `[cluster]` field to fix.

use std::time::{Duration, Instant};

use gateway_tests::Gridmq;
use gateway_tests::cluster::NatsCluster;

#[test]
fn an_unreachable_nats_fails_the_start_after_the_bounded_wait_naming_the_field() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [\"nats://127.0.0.1:{port}\"]\nnode_id = \"lonely\"\n\
         connect_timeout_secs = 2\n"
    );
    let started = Instant::now();
    let stderr = Gridmq::try_with_listeners(&config).err().expect("the start is refused");
    let waited = started.elapsed();
    assert!(stderr.contains("cluster.nats_urls"), "{stderr}");
    assert!(stderr.contains("within 2 s"), "{stderr}");
    assert!(stderr.contains("retrying"), "it says that it retries: {stderr}");
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
}

#[test]
fn more_replicas_than_nats_servers_is_refused_naming_replicas() {
    let nats = NatsCluster::start(1);
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [\"{}\"]\nnode_id = \"a\"\nreplicas = 3\nconnect_timeout_secs = 2\n",
        nats.url(0)
    );
    let stderr = Gridmq::try_with_listeners(&config).err().expect("the start is refused");
    assert!(stderr.contains("cluster.replicas"), "{stderr}");
}

/// A standalone JetStream server with credentials or TLS, killed on drop.
struct GuardedNats {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl GuardedNats {
    /// A server wanting `user` and `password`.
    fn start(user: &str, password: &str) -> GuardedNats {
        let args = ["--user", user, "--pass", password].map(String::from);
        GuardedNats::with_args(&args)
    }

    /// A server started with `args` besides its port and store.
    fn with_args(args: &[String]) -> GuardedNats {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        drop(listener);
        let dir = tempfile::tempdir().expect("a store directory");
        let child = std::process::Command::new(gateway_tests::cluster::nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .arg("-sd")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        GuardedNats { child, port, _dir: dir }
    }
}

impl Drop for GuardedNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn guarded_config(port: u16, password: &str) -> String {
    format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [\"nats://127.0.0.1:{port}\"]\nnode_id = \"a\"\nreplicas = 1\n\
         connect_timeout_secs = 2\nuser = \"gridmq\"\npassword = \"{password}\"\n"
    )
}

#[test]
fn a_node_joins_with_the_configured_nats_credentials_and_is_refused_without_them() {
    let nats = GuardedNats::start("gridmq", "s3cret");
    // Right credentials: the node starts and serves MQTT.
    let node = Gridmq::start_with_config(&guarded_config(nats.port, "s3cret"));
    let addr = node.listener("mqtt");
    assert!(std::net::TcpStream::connect(addr).is_ok(), "the node serves MQTT on {addr}");
    drop(node);
    // Wrong password: the bounded wait ends in an error naming the field and NATS's answer.
    let stderr =
        Gridmq::try_with_listeners(&guarded_config(nats.port, "wrong")).err().expect("refused");
    assert!(stderr.contains("cluster.nats_urls"), "{stderr}");
    assert!(stderr.to_lowercase().contains("authoriz"), "{stderr}");
}

#[test]
fn a_node_joins_a_tls_nats_with_a_token_trusting_the_configured_ca() {
    let pki = gateway_tests::certs::Pki::new("nats-ca");
    let server = pki.server();
    let args = [
        "--auth".to_string(),
        "tok3n".to_string(),
        "--tls".to_string(),
        "--tlscert".to_string(),
        server.cert_path.display().to_string(),
        "--tlskey".to_string(),
        server.key_path.display().to_string(),
    ];
    let nats = GuardedNats::with_args(&args);
    let config = |tls: &str| {
        format!(
            "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
             [cluster]\nnats_urls = [\"nats://127.0.0.1:{}\"]\nnode_id = \"a\"\nreplicas = 1\n\
             connect_timeout_secs = 2\ntoken = \"tok3n\"\n{tls}",
            nats.port
        )
    };
    // Trusting the server's CA, with the token: the node starts and serves MQTT.
    let trusted = format!("tls_ca_file = \"{}\"\n", pki.ca_path.display());
    let node = Gridmq::start_with_config(&config(&trusted));
    let addr = node.listener("mqtt");
    assert!(std::net::TcpStream::connect(addr).is_ok(), "the node serves MQTT on {addr}");
    drop(node);
    // Without the CA the server's certificate is not trusted: the start fails, naming the
    // field.
    let stderr = Gridmq::try_with_listeners(&config("")).err().expect("refused");
    assert!(stderr.contains("cluster.nats_urls"), "{stderr}");
}
