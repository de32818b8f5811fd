//! The broker process and its listeners: crash and restart on the same data directory,
//! SIGTERM, config reload, diagnostic logs, metrics, readiness, parked connections, TLS and
//! WebSocket.

// A crate root looks for its modules beside itself, not in server/: each names its file.
#[path = "server/diagnostics.rs"]
mod diagnostics;
#[path = "server/durability.rs"]
mod durability;
#[path = "server/metrics.rs"]
mod metrics;
#[path = "server/parking.rs"]
mod parking;
#[path = "server/readiness.rs"]
mod readiness;
#[path = "server/reload.rs"]
mod reload;
#[path = "server/shutdown.rs"]
mod shutdown;
#[path = "server/tls.rs"]
mod tls;
#[path = "server/websocket.rs"]
mod websocket;
