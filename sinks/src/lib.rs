//! Delivery sinks for gridmq: they know CloudEvents, not MQTT.
//!
//! - [`event`]: the CloudEvent type, its JSON format, ids and Event Grid's time format.

pub mod event;

pub use event::{CloudEvent, Data};
