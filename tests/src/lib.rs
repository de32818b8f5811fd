//! Harness for gridmq's end-to-end tests: it starts the real `gridmq` binary on an ephemeral
//! loopback port and stops it (by pid) when the handle is dropped.
//!
//! The binary is the one cargo builds for the end-to-end tests (see [`binary`]); set
//! `GRIDMQ_BIN` to test another build.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub mod azure_sdk;
pub mod certs;
pub mod clients;
pub mod cluster;
pub mod http;
pub mod http_raw;
pub mod packet_client;
pub mod raw;
pub mod schema;
pub mod webhook;

/// A running `gridmq serve` process.
pub struct Gridmq {
    child: Child,
    /// Its plain MQTT listener; with [`Gridmq::with_listeners`], the config's first `tcp`
    /// listener, or its first listener when it has none.
    pub addr: SocketAddr,
    /// The address of its management API, when the config has a `[management]` table.
    pub http: Option<SocketAddr>,
    /// The address of its data-plane API, when the config has an `[http]` table.
    pub api: Option<SocketAddr>,
    /// Whether the management API speaks HTTPS (announced as `https`).
    pub http_tls: bool,
    /// Whether the data-plane API speaks HTTPS (announced as `apis`).
    pub api_tls: bool,
    /// The first MQTT-over-TLS listener, when the config declares one.
    pub mqtts: Option<SocketAddr>,
    /// The metrics-only listener, when `[metrics]` gives `listen` (announced as `metrics`).
    pub metrics: Option<SocketAddr>,
    /// `(scheme, address)` of every MQTT listener, in config order (`mqtt`, `mqtts`, `ws`,
    /// `wss`).
    pub listeners: Vec<(String, SocketAddr)>,
    log: Log,
    _config: Option<tempfile::NamedTempFile>,
    /// Its durable state; `None` for a broker started `--in-memory`.
    data: Option<Arc<tempfile::TempDir>>,
}

/// How [`Gridmq::launch`] starts the broker.
struct Launch<'a> {
    config: &'a str,
    /// Extra `serve` arguments.
    args: &'a [&'a str],
    /// `RUST_LOG` for the broker; the test's own `RUST_LOG` (or `warn`) when `None`.
    rust_log: Option<&'a str>,
    /// Where its durable state lives; `--in-memory` when `None`.
    data: Option<Arc<tempfile::TempDir>>,
    /// Whether to pass `--listen 127.0.0.1:0`, which replaces the config's first `tcp`
    /// listener or adds one.
    listen: bool,
}

impl Gridmq {
    /// Starts gridmq on its embedded defaults, listening on 127.0.0.1 on a free port.
    pub fn start() -> Gridmq {
        Gridmq::start_with_config("")
    }

    /// Starts gridmq with `config` (TOML) as its config file; an empty string means no file.
    pub fn start_with_config(config: &str) -> Gridmq {
        let data = Arc::new(tempfile::tempdir().expect("create data dir"));
        Gridmq::start_in(data, config)
    }

    /// Starts gridmq with its durable state in `data`: pass another instance's `data_dir()`
    /// to restart a broker on what the previous one left on disk.
    pub fn start_in(data: Arc<tempfile::TempDir>, config: &str) -> Gridmq {
        let launch = Launch { config, args: &[], rust_log: None, data: Some(data), listen: true };
        Gridmq::started(Gridmq::launch(launch))
    }

    /// Starts gridmq with `config`, extra `serve` arguments and `RUST_LOG=rust_log`, and
    /// returns with it the [`Log`] of every line it writes to stderr.
    pub fn start_logged(config: &str, args: &[&str], rust_log: &str) -> (Gridmq, Log) {
        let data = Arc::new(tempfile::tempdir().expect("create data dir"));
        let launch =
            Launch { config, args, rust_log: Some(rust_log), data: Some(data), listen: true };
        let gridmq = Gridmq::started(Gridmq::launch(launch));
        let log = gridmq.log.clone();
        (gridmq, log)
    }

    /// Starts `gridmq serve --in-memory` with exactly the listeners `config` declares (TLS and
    /// WebSocket ones on port 0 included); panics with its stderr if it does not start.
    pub fn with_listeners(config: &str) -> Gridmq {
        Gridmq::started(Gridmq::try_with_listeners(config))
    }

    /// Like [`Gridmq::with_listeners`]; `Err` holds what gridmq printed on stderr when it
    /// exited before listening (a rejected config).
    pub fn try_with_listeners(config: &str) -> Result<Gridmq, String> {
        Gridmq::launch(Launch { config, args: &[], rust_log: None, data: None, listen: false })
    }

    fn started(launched: Result<Gridmq, String>) -> Gridmq {
        launched.unwrap_or_else(|stderr| panic!("gridmq exited before listening: {stderr}"))
    }

    fn launch(launch: Launch<'_>) -> Result<Gridmq, String> {
        let Launch { config, args, rust_log, data, listen } = launch;
        let file = if config.is_empty() {
            None
        } else {
            let mut file = tempfile::NamedTempFile::new().expect("create config file");
            std::io::Write::write_all(&mut file, config.as_bytes()).expect("write config file");
            Some(file)
        };
        let mut command = Command::new(binary());
        command.arg("serve");
        if listen {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        match &data {
            Some(data) => command.arg("--data-dir").arg(data.path()),
            None => command.arg("--in-memory"),
        };
        if let Some(file) = &file {
            command.arg("--config").arg(file.path());
        }
        command.args(args);
        let rust_log = match rust_log {
            Some(filter) => filter.to_string(),
            None => std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        };
        let mut child = command
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gridmq");
        // Forward stderr to the test's output, and keep every line for the test and for the
        // start-up error.
        let log = Log::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = log.lines.clone();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                lines.lock().expect("log lock").push(line);
            }
        });
        let expected = mqtt_listeners(config, listen);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The management, data-plane and metrics listeners, when they run, are announced
        // before the MQTT listeners, which come in config order.
        let (mut http, mut http_tls) = (None, false);
        let (mut api, mut api_tls) = (None, false);
        let mut metrics = None;
        let mut listeners: Vec<(String, SocketAddr)> = Vec::new();
        while listeners.len() < expected {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                let _ = stderr_thread.join();
                return Err(log.lines().join("\n"));
            };
            let Some((scheme, rest)) =
                line.strip_prefix("gridmq listening ").and_then(|rest| rest.split_once(' '))
            else {
                continue;
            };
            let addr: SocketAddr = rest.trim().parse().expect("listener address");
            match scheme {
                "http" | "https" => (http, http_tls) = (Some(addr), scheme == "https"),
                "api" | "apis" => (api, api_tls) = (Some(addr), scheme == "apis"),
                "metrics" => metrics = Some(addr),
                _ => listeners.push((scheme.to_owned(), addr)),
            }
        }
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let first = |scheme: &str| listeners.iter().find(|(s, _)| s == scheme).map(|(_, a)| *a);
        let addr = first("mqtt").or(listeners.first().map(|(_, a)| *a)).expect("a listener");
        let mqtts = first("mqtts");
        Ok(Gridmq {
            child,
            addr,
            http,
            api,
            http_tls,
            api_tls,
            mqtts,
            metrics,
            listeners,
            log,
            _config: file,
            data,
        })
    }

    /// The address of the first MQTT listener with `scheme` (`mqtt`, `mqtts`, `ws`, `wss`).
    pub fn listener(&self, scheme: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(s, _)| s == scheme)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no {scheme} listener in {:?}", self.listeners))
    }

    /// The config file the broker was started with.
    pub fn config_path(&self) -> Option<&Path> {
        self._config.as_ref().map(|file| file.path())
    }

    /// Replaces the config file's contents (the broker reads them at its next reload).
    pub fn rewrite_config(&self, config: &str) {
        let path = self.config_path().expect("started with a config file");
        std::fs::write(path, config).expect("rewrite config file");
    }

    /// Sends SIGHUP: the broker reloads its config file.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// The directory holding this broker's durable state.
    pub fn data_dir(&self) -> Arc<tempfile::TempDir> {
        self.data.clone().expect("a broker started on a data directory, not --in-memory")
    }

    /// Kills the broker with SIGKILL (a crash: nothing is flushed) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The pid of the broker process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `grace` for a clean exit; returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gridmq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many MQTT listeners gridmq announces with `config`: those under `[[server.listeners]]`,
/// plus the one `--listen` adds when none of them is `tcp`; one (its default) for a config
/// that declares none, or that it cannot read (it then exits).
fn mqtt_listeners(config: &str, listen: bool) -> usize {
    let Ok(table) = config.parse::<toml::Table>() else { return 1 };
    let declared = table
        .get("server")
        .and_then(|server| server.get("listeners"))
        .and_then(|listeners| listeners.as_array())
        .cloned()
        .unwrap_or_default();
    if declared.is_empty() {
        return 1;
    }
    let tcp = declared.iter().any(|l| l.get("kind").and_then(|k| k.as_str()) == Some("tcp"));
    declared.len() + usize::from(listen && !tcp)
}

/// The lines a broker started with [`Gridmq::start_logged`] wrote to stderr so far.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Log {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }
}

/// The gridmq binary under test: `GRIDMQ_BIN` when set, else the one cargo built with the tests.
///
/// The end-to-end tests are test targets of the `gateway` package (gateway/Cargo.toml), so
/// cargo builds the `gridmq` binary from the current sources whenever it builds them, and runs
/// them with its path in `CARGO_BIN_EXE_gridmq`: a test never runs against a stale binary. A
/// test executable started by hand finds the same binary beside it, in `target/<profile>/`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GRIDMQ_BIN") {
        return PathBuf::from(path);
    }
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_gridmq") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps; the binary is in target/<profile>.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let bin = dir.join("gridmq");
    assert!(
        bin.exists(),
        "{} not found: run the tests with `cargo test -p gateway --test <area>` or set GRIDMQ_BIN",
        bin.display()
    );
    bin
}

/// A path in the repository, given from the workspace root (`tests/azure_mgmt`, `schemas`).
pub fn repo_file(relative: &str) -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().expect("the workspace root holds tests/").join(relative)
}
