//! The in-process ring: the library driven through its public API, without the binary (the
//! end-to-end tests are in the top-level tests/). One binary with a module per area, so the
//! suite links once here.

// A crate root looks for its modules beside itself, not in inprocess/: each names its file.
#[path = "inprocess/auth_jwt.rs"]
mod auth_jwt;
#[path = "inprocess/auth_password.rs"]
mod auth_password;
#[path = "inprocess/auth_webhook.rs"]
mod auth_webhook;
#[path = "inprocess/auth_x509.rs"]
mod auth_x509;
#[path = "inprocess/codec_roundtrip.rs"]
mod codec_roundtrip;
#[path = "inprocess/codec_rumqttc.rs"]
mod codec_rumqttc;
#[path = "inprocess/connection_size.rs"]
mod connection_size;
/// What the authentication tests share.
#[path = "inprocess/support/auth.rs"]
mod support;
