//! Cluster mode: gridmq nodes sharing MQTT state through NATS JetStream (issue 19).

pub mod subject;
