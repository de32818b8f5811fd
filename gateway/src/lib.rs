//! gridmq's gateway: an MQTT 3.1.1/5.0 broker and, later, the CloudEvents routing pipeline.

pub mod mqtt;
