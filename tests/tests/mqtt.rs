//! MQTT 3.1.1 and 5.0 through real clients (rumqttc, and rumqttc's codec on a bare socket):
//! CONNECT and keep alive, sessions, QoS, topics, retained messages, wills, shared
//! subscriptions, 5.0 features, clients of both versions together, flow control and runs.

// A crate root looks for its modules beside itself, not in mqtt/: each names its file.
#[path = "mqtt/connect.rs"]
mod connect;
#[path = "mqtt/cross_version.rs"]
mod cross_version;
#[path = "mqtt/flow_control.rs"]
mod flow_control;
#[path = "mqtt/mqtt5_features.rs"]
mod mqtt5_features;
#[path = "mqtt/qos.rs"]
mod qos;
#[path = "mqtt/retained.rs"]
mod retained;
#[path = "mqtt/runs.rs"]
mod runs;
#[path = "mqtt/sessions.rs"]
mod sessions;
#[path = "mqtt/shared.rs"]
mod shared;
#[path = "mqtt/topics.rs"]
mod topics;
#[path = "mqtt/will.rs"]
mod will;
