//! The HTTP APIs: the data plane, the management API, both over HTTPS, the JSON Schemas
//! of what they accept and produce, and the operator console in a real browser.

// A crate root looks for its modules beside itself, not in apis/: each names its file.
#[path = "apis/console.rs"]
mod console;
#[path = "apis/dataplane.rs"]
mod dataplane;
#[path = "apis/https.rs"]
mod https;
#[path = "apis/mgmt.rs"]
mod mgmt;
#[path = "apis/schemas.rs"]
mod schemas;
