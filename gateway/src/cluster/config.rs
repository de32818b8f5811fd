//! The `[cluster]` table: which NATS cluster holds the shared state, and who this node is.

use std::path::PathBuf;
use std::time::Duration;

/// `[cluster]`: present, it turns cluster mode on (see `crate::cluster`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers to connect to, e.g. `["nats://127.0.0.1:4222"]`; any one is enough, the
    /// client learns the others from the server.
    pub nats_urls: Vec<String>,
    /// This node's name, unique in the cluster: it owns sessions and answers takeovers under
    /// it. Default: the host name.
    #[serde(default)]
    pub node_id: Option<String>,
    /// The first token of every subject, stream and bucket name this cluster uses, so that
    /// two gridmq clusters can share one NATS cluster. Default `gm`.
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// JetStream replicas of every stream and bucket. Default 3; 1 for a single NATS server.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long start-up waits for NATS before it fails, in seconds. Default 30.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How long QoS 1/2 messages stay in the shared message log, in seconds: the longest a
    /// node can be behind and still catch up. Default one day.
    #[serde(default = "default_message_retention")]
    pub message_retention_secs: u64,
    /// A node cut off from NATS this long disconnects all its clients (fencing), so another
    /// node can serve them. Default 3,000 ms; it must be below `release_timeout_ms`.
    #[serde(default = "default_fence_after")]
    pub fence_after_ms: u64,
    /// How long a takeover waits for the owning node to release a session before claiming it
    /// anyway. Default 5,000 ms.
    #[serde(default = "default_release_timeout")]
    pub release_timeout_ms: u64,
    /// NATS user and password.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// NATS token.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding an NKey seed (`SU...`).
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// PEM CA certificates to verify the NATS servers with; setting it requires TLS.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for NATS servers that verify clients.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

fn default_prefix() -> String {
    "gm".into()
}
fn default_replicas() -> usize {
    3
}
fn default_connect_timeout() -> u64 {
    30
}
fn default_message_retention() -> u64 {
    86_400
}
fn default_fence_after() -> u64 {
    3_000
}
fn default_release_timeout() -> u64 {
    5_000
}

/// An invalid field of `[cluster]`, e.g. `cluster.replicas: must be between 1 and 5`.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ClusterConfigError {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ClusterConfigError {
    ClusterConfigError { field, problem: problem.into() }
}

impl ClusterConfig {
    /// Checks what serde's types alone cannot.
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        if self.nats_urls.is_empty() {
            return Err(invalid("cluster.nats_urls", "needs at least one NATS server URL"));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid("cluster.replicas", "must be between 1 and 5 (JetStream's range)"));
        }
        let token_ok = |s: &str| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token_ok(&self.subject_prefix) {
            return Err(invalid(
                "cluster.subject_prefix",
                "must be letters, digits, '-' or '_' (it names subjects, streams and buckets)",
            ));
        }
        if let Some(node) = &self.node_id
            && !token_ok(node)
        {
            return Err(invalid("cluster.node_id", "must be letters, digits, '-' or '_'"));
        }
        if self.fence_after_ms >= self.release_timeout_ms {
            return Err(invalid(
                "cluster.fence_after_ms",
                "must be below cluster.release_timeout_ms: a node cut off from NATS must stop \
                 serving its clients before another node claims them",
            ));
        }
        if self.password.is_some() != self.user.is_some() {
            return Err(invalid(
                "cluster.password",
                "cluster.user and cluster.password go together",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid(
                "cluster.tls_key_file",
                "cluster.tls_cert_file and cluster.tls_key_file go together",
            ));
        }
        if self.message_retention_secs == 0 {
            return Err(invalid("cluster.message_retention_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// This node's id: `node_id`, else the host name (reduced to the characters ids allow).
    pub fn node(&self) -> String {
        if let Some(node) = &self.node_id {
            return node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "node".into());
        let cleaned: String = host
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        if cleaned.is_empty() { "node".into() } else { cleaned }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn fence_after(&self) -> Duration {
        Duration::from_millis(self.fence_after_ms)
    }
    pub fn release_timeout(&self) -> Duration {
        Duration::from_millis(self.release_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, ClusterConfigError> {
        let config: ClusterConfig =
            toml::from_str(text).map_err(|e| invalid("toml", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_fill_in() {
        let config = parse("nats_urls = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a\"").unwrap();
        assert_eq!(config.subject_prefix, "gm");
        assert_eq!(config.replicas, 3);
        assert_eq!(config.node(), "a");
        assert_eq!(config.fence_after(), Duration::from_secs(3));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("nats_urls = []", "cluster.nats_urls"),
            ("nats_urls = [\"x\"]\nreplicas = 0", "cluster.replicas"),
            ("nats_urls = [\"x\"]\nsubject_prefix = \"a.b\"", "cluster.subject_prefix"),
            ("nats_urls = [\"x\"]\nnode_id = \"a b\"", "cluster.node_id"),
            ("nats_urls = [\"x\"]\nfence_after_ms = 6000", "cluster.fence_after_ms"),
            ("nats_urls = [\"x\"]\nuser = \"u\"", "cluster.password"),
        ];
        for (text, field) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.starts_with(field), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = parse("nats_urls = [\"x\"]\nreplica = 3").unwrap_err().to_string();
        assert!(error.contains("replica"), "{error}");
    }
}
