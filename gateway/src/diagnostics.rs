//! Diagnostic logs: one structured `tracing` event per thing an operator audits, in the
//! categories and with the fields of Event Grid's namespace diagnostic logs (Azure Monitor,
//! `Microsoft.EventGrid/namespaces`: the `EGNSuccessfulMqttConnections`,
//! `EGNFailedMqttConnections`, `EGNMqttDisconnections`, `EGNFailedMqttPublishedMessages`,
//! `EGNFailedMqttSubscriptions` and data-plane request tables).
//!
//! Each category logs under a target of its own, so `RUST_LOG` filters them one by one, e.g.
//! `RUST_LOG=info,gridmq::diagnostics::failed_mqtt_connections=off`:
//!
//! | target | level |
//! |---|---|
//! | `gridmq::diagnostics::successful_mqtt_connections` | info |
//! | `gridmq::diagnostics::failed_mqtt_connections` | warn |
//! | `gridmq::diagnostics::mqtt_disconnections` | info |
//! | `gridmq::diagnostics::failed_mqtt_published_messages` | warn |
//! | `gridmq::diagnostics::failed_mqtt_subscription_operations` | warn |
//! | `gridmq::diagnostics::failed_http_data_plane_operations` | warn |
//! | `gridmq::diagnostics::suppressed` | warn |
//!
//! Field names are Event Grid's columns in camel case: `clientIdentity` (the authentication
//! name), `sessionName` (the MQTT client id), `protocol` (`MQTT3` or `MQTT5`), `operationName`,
//! `resultSignature` (the reason code or HTTP status) and `resultDescription`.
//!
//! A connection storm must not make the log the bottleneck, so every category passes a token
//! bucket first ([`limiter`]): `log.diagnostic_events_per_second` events a second (100 by
//! default) with a burst of as many. What the bucket refuses is counted in
//! `gridmq_diagnostic_events_suppressed_total{category}` and reported by one
//! `gridmq::diagnostics::suppressed` event per category every [`SUMMARY_INTERVAL`] (and at
//! shutdown) while there is something to report.

pub mod limiter;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::hooks::DisconnectReason;
use crate::mqtt::{Protocol, QoS, ReasonCode};

/// How often the counts of suppressed events are logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Event Grid's diagnostic log categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    SuccessfulMqttConnections,
    FailedMqttConnections,
    MqttDisconnections,
    FailedMqttPublishedMessages,
    FailedMqttSubscriptionOperations,
    FailedHttpDataPlaneOperations,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::SuccessfulMqttConnections,
        Category::FailedMqttConnections,
        Category::MqttDisconnections,
        Category::FailedMqttPublishedMessages,
        Category::FailedMqttSubscriptionOperations,
        Category::FailedHttpDataPlaneOperations,
    ];

    /// The category's name, as its target ends and as the metric's `category` label.
    pub fn name(self) -> &'static str {
        match self {
            Category::SuccessfulMqttConnections => "successful_mqtt_connections",
            Category::FailedMqttConnections => "failed_mqtt_connections",
            Category::MqttDisconnections => "mqtt_disconnections",
            Category::FailedMqttPublishedMessages => "failed_mqtt_published_messages",
            Category::FailedMqttSubscriptionOperations => "failed_mqtt_subscription_operations",
            Category::FailedHttpDataPlaneOperations => "failed_http_data_plane_operations",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Event Grid's protocol column.
fn protocol_name(protocol: Protocol, websocket: bool) -> &'static str {
    match (protocol, websocket) {
        (Protocol::V311, false) => "MQTT3",
        (Protocol::V311, true) => "MQTT3-WS",
        (Protocol::V5, false) => "MQTT5",
        (Protocol::V5, true) => "MQTT5-WS",
    }
}

/// A client completed CONNECT/CONNACK.
pub struct MqttConnected<'a> {
    pub client_identity: &'a str,
    pub session_name: &'a str,
    pub protocol: Protocol,
    /// Over WebSocket.
    pub websocket: bool,
    /// The authentication method (MQTT 5 enhanced authentication), or `None` for
    /// username/password, certificates or anonymous clients.
    pub authentication_type: Option<&'a str>,
    pub session_present: bool,
}

impl MqttConnected<'_> {
    pub fn emit(self) {
        // A filtered-out category costs neither a token nor a suppressed count.
        if !tracing::enabled!(target: "gridmq::diagnostics::successful_mqtt_connections", Level::INFO)
            || !limiter::admit(Category::SuccessfulMqttConnections)
        {
            return;
        }
        tracing::info!(
            target: "gridmq::diagnostics::successful_mqtt_connections",
            category = "SuccessfulMqttConnections",
            operationName = "Connect",
            clientIdentity = self.client_identity,
            sessionName = self.session_name,
            protocol = protocol_name(self.protocol, self.websocket),
            authenticationType = self.authentication_type.unwrap_or("Default"),
            sessionPresent = self.session_present,
            "MQTT connection succeeded."
        );
    }
}

/// A CONNECT that was refused (CONNACK with a failure code, or closed without one).
pub struct MqttConnectFailed<'a> {
    /// The client id, when the CONNECT got that far.
    pub session_name: Option<&'a str>,
    /// The username the client gave, as Event Grid's `clientIdentity` of a failed attempt.
    pub client_identity: Option<&'a str>,
    pub protocol: Option<Protocol>,
    /// Over WebSocket.
    pub websocket: bool,
    pub peer: std::net::SocketAddr,
    pub code: ReasonCode,
    pub description: Option<&'a str>,
}

impl MqttConnectFailed<'_> {
    pub fn emit(self) {
        // A filtered-out category costs neither a token nor a suppressed count.
        if !tracing::enabled!(target: "gridmq::diagnostics::failed_mqtt_connections", Level::WARN)
            || !limiter::admit(Category::FailedMqttConnections)
        {
            return;
        }
        tracing::warn!(
            target: "gridmq::diagnostics::failed_mqtt_connections",
            category = "FailedMqttConnections",
            operationName = "Connect",
            clientIdentity = self.client_identity.unwrap_or(""),
            sessionName = self.session_name.unwrap_or(""),
            protocol = self.protocol.map_or("", |p| protocol_name(p, self.websocket)),
            clientIp = %self.peer.ip(),
            resultSignature = ?self.code,
            resultDescription = self.description.unwrap_or(""),
            "MQTT connection failed."
        );
    }
}

/// A connected client's connection ended.
pub struct MqttDisconnected<'a> {
    pub client_identity: &'a str,
    pub session_name: &'a str,
    pub protocol: Protocol,
    /// Over WebSocket.
    pub websocket: bool,
    pub reason: &'a DisconnectReason,
}

impl MqttDisconnected<'_> {
    pub fn emit(self) {
        // A filtered-out category costs neither a token nor a suppressed count.
        if !tracing::enabled!(target: "gridmq::diagnostics::mqtt_disconnections", Level::INFO)
            || !limiter::admit(Category::MqttDisconnections)
        {
            return;
        }
        tracing::info!(
            target: "gridmq::diagnostics::mqtt_disconnections",
            category = "MqttDisconnections",
            operationName = "Disconnect",
            clientIdentity = self.client_identity,
            sessionName = self.session_name,
            protocol = protocol_name(self.protocol, self.websocket),
            resultSignature = crate::routing::lifecycle::disconnection_reason(self.reason),
            resultDescription = ?self.reason,
            "MQTT client disconnected."
        );
    }
}

/// A PUBLISH the broker refused (not authorized, invalid payload, routing buffer full...).
pub struct MqttPublishFailed<'a> {
    pub client_identity: &'a str,
    pub session_name: &'a str,
    pub protocol: Protocol,
    /// Over WebSocket.
    pub websocket: bool,
    pub topic_name: &'a str,
    pub qos: QoS,
    pub code: ReasonCode,
    pub description: Option<&'a str>,
}

impl MqttPublishFailed<'_> {
    pub fn emit(self) {
        // A filtered-out category costs neither a token nor a suppressed count.
        if !tracing::enabled!(target: "gridmq::diagnostics::failed_mqtt_published_messages", Level::WARN)
            || !limiter::admit(Category::FailedMqttPublishedMessages)
        {
            return;
        }
        tracing::warn!(
            target: "gridmq::diagnostics::failed_mqtt_published_messages",
            category = "FailedMqttPublishedMessages",
            operationName = "Publish",
            clientIdentity = self.client_identity,
            sessionName = self.session_name,
            protocol = protocol_name(self.protocol, self.websocket),
            topicName = self.topic_name,
            qos = self.qos as u8,
            resultSignature = ?self.code,
            resultDescription = self.description.unwrap_or(""),
            "MQTT publish failed."
        );
    }
}

/// A SUBSCRIBE filter the broker refused.
pub struct MqttSubscribeFailed<'a> {
    pub client_identity: &'a str,
    pub session_name: &'a str,
    pub protocol: Protocol,
    /// Over WebSocket.
    pub websocket: bool,
    pub topic_filter: &'a str,
    pub code: ReasonCode,
    pub description: Option<&'a str>,
}

impl MqttSubscribeFailed<'_> {
    pub fn emit(self) {
        // A filtered-out category costs neither a token nor a suppressed count.
        if !tracing::enabled!(target: "gridmq::diagnostics::failed_mqtt_subscription_operations", Level::WARN)
            || !limiter::admit(Category::FailedMqttSubscriptionOperations)
        {
            return;
        }
        tracing::warn!(
            target: "gridmq::diagnostics::failed_mqtt_subscription_operations",
            category = "FailedMqttSubscriptionOperations",
            operationName = "Subscribe",
            clientIdentity = self.client_identity,
            sessionName = self.session_name,
            protocol = protocol_name(self.protocol, self.websocket),
            topicFilter = self.topic_filter,
            resultSignature = ?self.code,
            resultDescription = self.description.unwrap_or(""),
            "MQTT subscribe failed."
        );
    }
}

/// A data-plane HTTP request answered with an error status.
pub struct DataPlaneFailed<'a> {
    pub method: &'a str,
    /// The route's pattern (e.g. `/topics/{topic}:publish`), never the concrete path.
    pub operation_name: &'a str,
    pub status: u16,
    pub authentication_type: &'a str,
}

impl DataPlaneFailed<'_> {
    pub fn emit(self) {
        // A filtered-out category costs neither a token nor a suppressed count.
        if !tracing::enabled!(target: "gridmq::diagnostics::failed_http_data_plane_operations", Level::WARN)
            || !limiter::admit(Category::FailedHttpDataPlaneOperations)
        {
            return;
        }
        tracing::warn!(
            target: "gridmq::diagnostics::failed_http_data_plane_operations",
            category = "FailedHttpDataPlaneOperations",
            operationName = self.operation_name,
            method = self.method,
            authenticationType = self.authentication_type,
            resultSignature = self.status,
            "Data-plane request failed."
        );
    }
}

/// Logs the counts of suppressed events every [`SUMMARY_INTERVAL`] until `shutdown`, and once
/// more then, so none goes unreported.
pub async fn report_suppressed(shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(SUMMARY_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while shutdown.run_until_cancelled(interval.tick()).await.is_some() {
        summarize();
    }
    summarize();
}

/// Logs one summary event per category with events suppressed since the last summary.
pub fn summarize() {
    for category in Category::ALL {
        let suppressed = limiter::take_suppressed(category);
        if suppressed > 0 {
            tracing::warn!(
                target: "gridmq::diagnostics::suppressed",
                category = category.name(),
                suppressed,
                "Diagnostic events suppressed by the rate limit."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_named_as_event_grid_names_them() {
        assert_eq!(protocol_name(Protocol::V311, false), "MQTT3");
        assert_eq!(protocol_name(Protocol::V311, true), "MQTT3-WS");
        assert_eq!(protocol_name(Protocol::V5, false), "MQTT5");
        assert_eq!(protocol_name(Protocol::V5, true), "MQTT5-WS");
    }

    #[test]
    fn category_names_end_their_targets() {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), 6);
        for (index, category) in Category::ALL.into_iter().enumerate() {
            assert_eq!(category.index(), index, "{names:?}");
        }
    }
}
