//! Raw MQTT bytes on the wire: malformed and truncated packets, framing, sweeps of every first
//! byte, what follows a bad packet, and the lingering close after the broker disconnects.

// A crate root looks for its modules beside itself, not in wire/: each names its file.
#[path = "wire/consequences.rs"]
mod consequences;
#[path = "wire/framing.rs"]
mod framing;
#[path = "wire/linger.rs"]
mod linger;
#[path = "wire/malformed.rs"]
mod malformed;
#[path = "wire/sweep.rs"]
mod sweep;
#[path = "wire/truncation.rs"]
mod truncation;
