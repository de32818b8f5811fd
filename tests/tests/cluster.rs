//! Cluster mode: gridmq nodes sharing MQTT state through a NATS JetStream cluster
//! (tests/src/cluster.rs starts the servers and the nodes).

// A crate root looks for its modules beside itself, not in cluster/: each names its file.
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/sessions.rs"]
mod sessions;
