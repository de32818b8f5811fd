//! The `gridmq` command line's client commands: they talk to a running gridmq's data-plane
//! API (`[http]`), so that a person can try pull delivery and HTTP publish without writing
//! HTTP by hand. Part of the binary, not the library.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the data-plane API is and the credential it takes.
#[derive(Args)]
pub struct Endpoint {
    /// Base URL of the data-plane API (`[http] listen`).
    #[arg(long, env = "GRIDMQ_API_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// One of `[http] access_keys`, sent as `aeg-sas-key`.
    #[arg(long, env = "GRIDMQ_ACCESS_KEY")]
    key: String,
}

/// `gridmq topics ...`: namespace topics and their queue subscriptions.
#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Receives events (long poll) and prints `{"lockToken","deliveryCount","event"}` per line.
    Receive {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        subscription: String,
        #[arg(long, default_value_t = 1)]
        max_events: u32,
        /// Seconds to wait for a first event.
        #[arg(long, default_value_t = 10)]
        max_wait: u32,
    },
    /// Acknowledges received events (deletes them).
    Ack(Tokens),
    /// Releases received events for redelivery, optionally after a delay (0, 10, 60, 600,
    /// 3600 s).
    Release {
        #[command(flatten)]
        tokens: Tokens,
        #[arg(long, default_value_t = 0)]
        delay: u32,
    },
    /// Rejects received events (dead-letters them).
    Reject(Tokens),
    /// Extends the locks of received events.
    Renew(Tokens),
    /// Publishes one CloudEvent (JSON) to a namespace topic.
    Publish {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        topic: String,
        /// The event, in the CloudEvents JSON format.
        event: String,
    },
}

/// Lock tokens of one queue subscription.
#[derive(Args)]
pub struct Tokens {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    subscription: String,
    /// Lock tokens, as printed by `gridmq topics receive`.
    #[arg(required = true)]
    tokens: Vec<String>,
}

/// `gridmq publish`: one MQTT message through the data plane's HTTP publish.
#[derive(Args)]
pub struct PublishCommand {
    #[command(flatten)]
    endpoint: Endpoint,
    /// MQTT topic name.
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 1)]
    qos: u8,
    #[arg(long)]
    retain: bool,
    #[arg(long)]
    content_type: Option<String>,
    /// A user property `NAME=VALUE`; repeatable.
    #[arg(long = "user-property")]
    user_properties: Vec<String>,
    /// The payload.
    payload: String,
}

pub async fn topics(command: TopicsCommand) -> anyhow::Result<()> {
    let (endpoint, path, body) = match command {
        TopicsCommand::Receive { endpoint, topic, subscription, max_events, max_wait } => {
            let path = format!(
                "/topics/{topic}/eventsubscriptions/{subscription}:receive?maxEvents={max_events}&maxWaitTime={max_wait}"
            );
            let answer = post(&endpoint, &path, None, Value::Null).await?;
            for item in answer["value"].as_array().into_iter().flatten() {
                let line = json!({
                    "lockToken": item["brokerProperties"]["lockToken"],
                    "deliveryCount": item["brokerProperties"]["deliveryCount"],
                    "event": item["event"],
                });
                println!("{line}");
            }
            return Ok(());
        }
        TopicsCommand::Ack(t) => token_op(t, "acknowledge", ""),
        TopicsCommand::Release { tokens, delay } => {
            token_op(tokens, "release", &format!("?releaseDelayInSeconds={delay}"))
        }
        TopicsCommand::Reject(t) => token_op(t, "reject", ""),
        TopicsCommand::Renew(t) => token_op(t, "renewLock", ""),
        TopicsCommand::Publish { endpoint, topic, event } => {
            let event: Value = serde_json::from_str(&event).context("the event is not JSON")?;
            let path = format!("/topics/{topic}:publish");
            let answer =
                post(&endpoint, &path, Some("application/cloudevents+json; charset=utf-8"), event)
                    .await?;
            println!("{answer}");
            return Ok(());
        }
    };
    let answer = post(&endpoint, &path, None, body).await?;
    println!("{answer}");
    // Settle operations answer 200 even when tokens failed; the command fails when any did,
    // so scripts notice.
    let failed: Vec<String> = answer["failedLockTokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{} ({})", f["lockToken"], f["error"]["code"].as_str().unwrap_or("?")))
        .collect();
    if !failed.is_empty() {
        bail!("{} lock token(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

pub async fn publish(command: PublishCommand) -> anyhow::Result<()> {
    use base64::Engine as _;
    let client = sinks::http_client().map_err(anyhow::Error::msg)?;
    let topic = gateway::dataplane::percent_encode(&command.topic);
    let url = format!("{}/mqtt/messages?topic={topic}", command.endpoint.url.trim_end_matches('/'));
    let mut request = client
        .post(url)
        .header("aeg-sas-key", &command.endpoint.key)
        .header("mqtt-qos", command.qos.to_string())
        .header("mqtt-retain", if command.retain { "1" } else { "0" })
        .body(command.payload);
    if let Some(content_type) = &command.content_type {
        request = request.header("content-type", content_type);
    }
    if !command.user_properties.is_empty() {
        let mut pairs = Vec::new();
        for property in &command.user_properties {
            let Some((name, value)) = property.split_once('=') else {
                bail!("--user-property {property:?}: expected NAME=VALUE");
            };
            pairs.push(json!({ name: value }));
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(Value::from(pairs).to_string());
        request = request.header("mqtt-user-properties", encoded);
    }
    let response = request.send().await.context("send the request")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("HTTP {status}: {text}");
    }
    println!("published (HTTP {status})");
    Ok(())
}

fn token_op(tokens: Tokens, operation: &str, query: &str) -> (Endpoint, String, Value) {
    let path = format!(
        "/topics/{}/eventsubscriptions/{}:{operation}{query}",
        tokens.topic, tokens.subscription
    );
    (tokens.endpoint, path, json!({ "lockTokens": tokens.tokens }))
}

async fn post(
    endpoint: &Endpoint,
    path: &str,
    content_type: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let client = sinks::http_client().map_err(anyhow::Error::msg)?;
    let url = format!("{}{path}", endpoint.url.trim_end_matches('/'));
    let mut request = client.post(url).header("aeg-sas-key", &endpoint.key);
    if !body.is_null() {
        request = request
            .header("content-type", content_type.unwrap_or("application/json"))
            .body(body.to_string());
    }
    let response = request.send().await.context("send the request")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        bail!("HTTP {status}: {answer}");
    }
    Ok(answer)
}
