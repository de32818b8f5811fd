//! Cluster mode: gridmq nodes sharing MQTT state through a NATS JetStream cluster
//! (tests/src/cluster.rs starts the servers and the nodes).

// A crate root looks for its modules beside itself, not in cluster/: each names its file.
#[path = "cluster/dataplane.rs"]
mod dataplane;
#[path = "cluster/deadletters.rs"]
mod deadletters;
#[path = "cluster/durability.rs"]
mod durability;
#[path = "cluster/fencing.rs"]
mod fencing;
#[path = "cluster/handover.rs"]
mod handover;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/lifecycle.rs"]
mod lifecycle;
#[path = "cluster/pubsub.rs"]
mod pubsub;
#[path = "cluster/pull.rs"]
mod pull;
#[path = "cluster/push.rs"]
mod push;
#[path = "cluster/resources.rs"]
mod resources;
#[path = "cluster/sessions.rs"]
mod sessions;
#[path = "cluster/shared.rs"]
mod shared;
#[path = "cluster/startup.rs"]
mod startup;
#[path = "cluster/topics.rs"]
mod topics;
#[path = "cluster/traffic.rs"]
mod traffic;
