//! The HTTP APIs: the data plane, the management API, both over HTTPS, and the JSON Schemas
//! of what they accept and produce.

// A crate root looks for its modules beside itself, not in apis/: each names its file.
#[path = "apis/dataplane.rs"]
mod dataplane;
#[path = "apis/https.rs"]
mod https;
#[path = "apis/mgmt.rs"]
mod mgmt;
#[path = "apis/schemas.rs"]
mod schemas;
