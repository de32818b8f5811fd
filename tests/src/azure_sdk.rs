//! Runs the unmodified Python `azure-eventgrid` SDK (`tests/azure_sdk/eventgrid_scenario.py`)
//! against a gridmq data plane, one process per scenario, and returns what the SDK reported.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// How long one scenario may take: the delayed release alone waits 10 s.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a scenario's namespace topic lives and how to reach it.
pub struct Target<'a> {
    /// `http://ADDR` or `https://ADDR`.
    pub endpoint: &'a str,
    /// A namespace access key, as the SDK's `AzureKeyCredential` takes it.
    pub key: &'a str,
    pub topic: &'a str,
    pub subscription: &'a str,
    /// A CA certificate (PEM) to trust for HTTPS, as `connection_verify`.
    pub ca: Option<&'a Path>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("azure_sdk/eventgrid_scenario.py")
}

/// Runs `scenario` against `target` and returns its JSON report; panics with the SDK's
/// traceback when the scenario fails.
pub async fn run(scenario: &str, target: &Target<'_>) -> Value {
    let mut command = tokio::process::Command::new("python3");
    command.arg(script()).args([
        scenario,
        target.endpoint,
        target.key,
        target.topic,
        target.subscription,
    ]);
    if let Some(ca) = target.ca {
        command.arg(ca);
    }
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, command.kill_on_drop(true).output())
        .await
        .expect("the SDK scenario finished in time")
        .expect("run python3 (tests/run installs azure-eventgrid)");
    assert!(
        output.status.success(),
        "the SDK scenario {scenario} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{error}: scenario output {:?}", String::from_utf8_lossy(&output.stdout))
    })
}
