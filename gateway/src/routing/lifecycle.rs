//! Event Grid's MQTT client lifecycle events as CloudEvents: a session connected or
//! disconnected, a client created, updated or deleted.
//!
//! Pure functions: the caller supplies the `source` (Event Grid uses the namespace's resource
//! id here, not the bare name routed messages carry), the names, the session's sequence number
//! and the time the change was detected. Every event gets a fresh id, `time` in Event Grid's
//! format (seven fractional digits), `datacontenttype` `application/json` and `data` with
//! exactly the fields of Event Grid's schema; `sequenceNumber` is a JSON number, as in Event
//! Grid's examples and REST spec (one docs table says string).
//!
//! # Disconnection reasons
//! Event Grid reports one of eleven strings; [`disconnection_reason`] maps the broker's
//! [`DisconnectReason`] onto them:
//!
//! | Broker's reason | `disconnectionReason` |
//! |---|---|
//! | `ClientDisconnect(any code)` | `ClientInitiatedDisconnect` |
//! | `ConnectionLost`, `KeepAliveTimeout` | `ConnectionLost` |
//! | `SessionTakenOver` | `SessionTakenOver` |
//! | `SessionOverflow` | `SessionOverflow` |
//! | `ServerShutdown` | `ServerInitiatedDisconnect` |
//! | `ProtocolViolation(0x96, 0x97, 0x9F)` | `QuotaExceeded` |
//! | `ProtocolViolation(0x87)` | `ClientAuthorizationError` |
//! | `ProtocolViolation(0x80, 0x83, 0x88, 0x89)` | `ServerError` |
//! | `ProtocolViolation(0x8B, 0x9C, 0x9D)` | `ServerInitiatedDisconnect` |
//! | `ProtocolViolation(other)` | `ClientError` |
//! | `Administrative(0x86, 0x87, 0x8C, 0x98, 0xA0)` | `ClientAuthenticationError` |
//! | `Administrative(0x8A)` | `IpForbidden` |
//! | `Administrative(0x8E)` | `SessionTakenOver` |
//! | `Administrative(0x97)` | `SessionOverflow` |
//! | `Administrative(0x96, 0x9F)` | `QuotaExceeded` |
//! | `Administrative(0x80, 0x83, 0x88, 0x89)` | `ServerError` |
//! | `Administrative(other)` | `ServerInitiatedDisconnect` |
//!
//! Why these choices:
//! - A client's DISCONNECT is its own decision whatever code it carries, and Event Grid counts
//!   a WebSocket close frame the same way.
//! - A keep-alive timeout is how a silently dead network shows itself, so it is a lost
//!   connection, not a client error.
//! - A protocol violation is the client's fault (`ClientError`) unless its code says
//!   otherwise: 0x96/0x97/0x9F are throttling, which Event Grid reports as `QuotaExceeded`
//!   (0x97 is also what a 3.1.1 publisher gets when the routing tap has too many events
//!   waiting); 0x87 is an authorizer's refusal; the 0x80-range server codes mean gridmq itself
//!   failed, e.g. the routing tap could not take a message.
//! - `Administrative` comes from the server deciding about a connected client. 0x98 is what the
//!   namespace sends when a client is disabled, deleted or renamed, and 0xA0 ends a session
//!   whose credentials (a JWT) expired: Event Grid lists both ("client disabled/changed",
//!   "certificate expired") under `ClientAuthenticationError`. A failed re-authentication
//!   arrives as the authenticator's refusal code (0x86, 0x87 or 0x8C); its 0x87 means "this
//!   identity is refused" (disabled client, token or certificate checks failed), an
//!   authentication outcome, so it is `ClientAuthenticationError` too, unlike 0x87 from the
//!   authorizer.
//! - 0x8A (banned) is the code a network-level ban sends; Event Grid's name for that is
//!   `IpForbidden` (IP filters). gridmq has no IP filter today, so nothing sends it yet.
//! - The broker already turns kicks with 0x8E and 0x97 into `SessionTakenOver` and
//!   `SessionOverflow`; the same codes inside `Administrative` are mapped the same way so the
//!   result does not depend on which path built the reason.
//! - gridmq revokes subscriptions rather than disconnecting when a binding or group changes,
//!   so `ClientAuthorizationError` comes only from an authorizer refusal that closed the
//!   connection.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use sinks::event::{format_time, new_id};
use sinks::{CloudEvent, Data};

use crate::hooks::DisconnectReason;
use crate::mqtt::ReasonCode;

/// The `type` of the event emitted when a client's session connects.
pub const SESSION_CONNECTED: &str = "Microsoft.EventGrid.MQTTClientSessionConnected";
/// The `type` of the event emitted when a client's session disconnects.
pub const SESSION_DISCONNECTED: &str = "Microsoft.EventGrid.MQTTClientSessionDisconnected";
/// The `type` of the event emitted when a registered client is created or changed.
pub const CLIENT_CREATED_OR_UPDATED: &str = "Microsoft.EventGrid.MQTTClientCreatedOrUpdated";
/// The `type` of the event emitted when a registered client is deleted.
pub const CLIENT_DELETED: &str = "Microsoft.EventGrid.MQTTClientDeleted";

/// The `datacontenttype` of every lifecycle event.
pub const CONTENT_TYPE: &str = "application/json";

/// Event Grid's eleven `disconnectionReason` values, in its documentation's order.
pub const DISCONNECTION_REASONS: [&str; 11] = [
    CLIENT_AUTHENTICATION_ERROR,
    CLIENT_AUTHORIZATION_ERROR,
    CLIENT_ERROR,
    CLIENT_INITIATED_DISCONNECT,
    CONNECTION_LOST,
    IP_FORBIDDEN,
    QUOTA_EXCEEDED,
    SERVER_ERROR,
    SERVER_INITIATED_DISCONNECT,
    SESSION_OVERFLOW,
    SESSION_TAKEN_OVER,
];

const CLIENT_AUTHENTICATION_ERROR: &str = "ClientAuthenticationError";
const CLIENT_AUTHORIZATION_ERROR: &str = "ClientAuthorizationError";
const CLIENT_ERROR: &str = "ClientError";
const CLIENT_INITIATED_DISCONNECT: &str = "ClientInitiatedDisconnect";
const CONNECTION_LOST: &str = "ConnectionLost";
const IP_FORBIDDEN: &str = "IpForbidden";
const QUOTA_EXCEEDED: &str = "QuotaExceeded";
const SERVER_ERROR: &str = "ServerError";
const SERVER_INITIATED_DISCONNECT: &str = "ServerInitiatedDisconnect";
const SESSION_OVERFLOW: &str = "SessionOverflow";
const SESSION_TAKEN_OVER: &str = "SessionTakenOver";

/// `MQTTClientSessionConnected`: the session `session_name` of the client authenticated as
/// `authentication_name` connected, for the `sequence_number`th time.
pub fn session_connected(
    source: &str,
    namespace: &str,
    authentication_name: &str,
    session_name: &str,
    sequence_number: u64,
    at: SystemTime,
) -> CloudEvent {
    let data = session_data(namespace, authentication_name, session_name, sequence_number);
    let subject = session_subject(authentication_name, session_name);
    event(source, SESSION_CONNECTED, subject, Value::Object(data), at)
}

/// `MQTTClientSessionDisconnected`: the connection that [`session_connected`] reported with
/// the same `sequence_number` ended, for `reason`.
pub fn session_disconnected(
    source: &str,
    namespace: &str,
    authentication_name: &str,
    session_name: &str,
    sequence_number: u64,
    reason: &DisconnectReason,
    at: SystemTime,
) -> CloudEvent {
    let mut data = session_data(namespace, authentication_name, session_name, sequence_number);
    data.insert("disconnectionReason".into(), Value::from(disconnection_reason(reason)));
    let subject = session_subject(authentication_name, session_name);
    event(source, SESSION_DISCONNECTED, subject, Value::Object(data), at)
}

/// `MQTTClientCreatedOrUpdated`: the registered client `client_name` now has these properties.
#[allow(clippy::too_many_arguments)] // One argument per field of Event Grid's schema.
pub fn client_created_or_updated(
    source: &str,
    namespace: &str,
    client_name: &str,
    authentication_name: &str,
    state_enabled: bool,
    attributes: &Map<String, Value>,
    created_on: SystemTime,
    updated_on: SystemTime,
    at: SystemTime,
) -> CloudEvent {
    let data = json!({
        "createdOn": format_time(created_on),
        "updatedOn": format_time(updated_on),
        "namespaceName": namespace,
        "clientName": client_name,
        "clientAuthenticationName": authentication_name,
        "state": if state_enabled { "Enabled" } else { "Disabled" },
        "attributes": Value::Object(attributes.clone()),
    });
    event(source, CLIENT_CREATED_OR_UPDATED, client_subject(client_name), data, at)
}

/// `MQTTClientDeleted`: the registered client `client_name` is gone.
pub fn client_deleted(
    source: &str,
    namespace: &str,
    client_name: &str,
    authentication_name: &str,
    at: SystemTime,
) -> CloudEvent {
    let data = json!({
        "namespaceName": namespace,
        "clientName": client_name,
        "clientAuthenticationName": authentication_name,
    });
    event(source, CLIENT_DELETED, client_subject(client_name), data, at)
}

/// Event Grid's `disconnectionReason` for `reason`; the module documentation has the table.
pub fn disconnection_reason(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientDisconnect(_) => CLIENT_INITIATED_DISCONNECT,
        DisconnectReason::ConnectionLost | DisconnectReason::KeepAliveTimeout => CONNECTION_LOST,
        DisconnectReason::SessionTakenOver => SESSION_TAKEN_OVER,
        DisconnectReason::SessionOverflow => SESSION_OVERFLOW,
        DisconnectReason::ServerShutdown => SERVER_INITIATED_DISCONNECT,
        DisconnectReason::ProtocolViolation(code) => violation_reason(*code),
        DisconnectReason::Administrative(code) => administrative_reason(*code),
    }
}

/// The reason for a connection the broker closed because of what the client sent.
fn violation_reason(code: ReasonCode) -> &'static str {
    use ReasonCode::*;
    match code {
        MessageRateTooHigh | QuotaExceeded | ConnectionRateExceeded => QUOTA_EXCEEDED,
        NotAuthorized => CLIENT_AUTHORIZATION_ERROR,
        UnspecifiedError | ImplementationSpecificError | ServerUnavailable | ServerBusy => {
            SERVER_ERROR
        }
        ServerShuttingDown | UseAnotherServer | ServerMoved => SERVER_INITIATED_DISCONNECT,
        _ => CLIENT_ERROR,
    }
}

/// The reason for a connection the server ended on its own decision.
fn administrative_reason(code: ReasonCode) -> &'static str {
    use ReasonCode::*;
    match code {
        BadUserNameOrPassword
        | NotAuthorized
        | BadAuthenticationMethod
        | AdministrativeAction
        | MaximumConnectTime => CLIENT_AUTHENTICATION_ERROR,
        Banned => IP_FORBIDDEN,
        SessionTakenOver => SESSION_TAKEN_OVER,
        QuotaExceeded => SESSION_OVERFLOW,
        MessageRateTooHigh | ConnectionRateExceeded => QUOTA_EXCEEDED,
        UnspecifiedError | ImplementationSpecificError | ServerUnavailable | ServerBusy => {
            SERVER_ERROR
        }
        _ => SERVER_INITIATED_DISCONNECT,
    }
}

/// The `data` fields both session events share.
fn session_data(
    namespace: &str,
    authentication_name: &str,
    session_name: &str,
    sequence_number: u64,
) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("namespaceName".into(), Value::from(namespace));
    data.insert("clientAuthenticationName".into(), Value::from(authentication_name));
    data.insert("clientSessionName".into(), Value::from(session_name));
    data.insert("sequenceNumber".into(), Value::from(sequence_number));
    data
}

fn session_subject(authentication_name: &str, session_name: &str) -> String {
    format!("clients/{authentication_name}/sessions/{session_name}")
}

fn client_subject(client_name: &str) -> String {
    format!("clients/{client_name}")
}

fn event(source: &str, ty: &str, subject: String, data: Value, at: SystemTime) -> CloudEvent {
    CloudEvent {
        id: new_id(),
        source: source.into(),
        ty: ty.into(),
        subject: Some(subject),
        time: Some(format_time(at)),
        datacontenttype: Some(CONTENT_TYPE.into()),
        dataschema: None,
        extensions: BTreeMap::new(),
        data: Data::from_json_value(data),
    }
}

#[cfg(test)]
mod tests;
