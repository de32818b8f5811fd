//! The MQTT 3.1.1 and 5.0 wire protocol: packet types, properties, reason codes and a pure codec.
//!
//! Nothing in this module knows about sessions, subscriptions or sockets. The codec takes bytes
//! and returns packets (or `Ok(None)` when the input is not yet a whole packet) and takes packets
//! and appends bytes. Payloads are `Bytes`, so a decoded PUBLISH can be fanned out to any number
//! of subscribers without copying its payload.

pub mod codec;
pub mod error;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod topic;

pub use codec::Codec;
pub use error::DecodeError;
pub use packet::*;
pub use properties::{Properties, SharedProperties};
pub use reason::ReasonCode;
