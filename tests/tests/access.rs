//! Authentication and authorization over the network: refused identities and credentials,
//! denied topics, and grants withdrawn while a session is offline.

// A crate root looks for its modules beside itself, not in access/: each names its file.
#[path = "access/adversarial.rs"]
mod adversarial;
#[path = "access/auth_network.rs"]
mod auth_network;
#[path = "access/sessions.rs"]
mod sessions;
