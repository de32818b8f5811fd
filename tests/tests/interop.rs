//! Other implementations against gridmq: the mosquitto command-line clients, Eclipse Paho
//! (Python), and the unmodified Azure Python SDKs (data plane and management).

// A crate root looks for its modules beside itself, not in interop/: each names its file.
#[path = "interop/arm_sdk.rs"]
mod arm_sdk;
#[path = "interop/azure_eventgrid.rs"]
mod azure_eventgrid;
#[path = "interop/mosquitto.rs"]
mod mosquitto;
#[path = "interop/paho.rs"]
mod paho;
