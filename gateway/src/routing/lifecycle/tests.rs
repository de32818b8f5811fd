use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

const SOURCE: &str =
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/namespaces/myns";

/// 2023-07-29T01:27:40.2446871Z, the time of Event Grid's documented example.
fn example_time() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_690_594_060, 244_687_100)
}

/// Checks the attributes every lifecycle event shares and returns its `data`.
fn common(event: &CloudEvent, ty: &str, subject: &str) -> Value {
    assert_eq!(event.ty, ty);
    assert_eq!(event.source, SOURCE);
    assert_eq!(event.subject.as_deref(), Some(subject));
    assert_eq!(event.time.as_deref(), Some("2023-07-29T01:27:40.2446871Z"));
    assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(event.dataschema, None);
    assert!(event.extensions.is_empty());
    assert_eq!(event.id.len(), 36, "a UUID: {}", event.id);
    match &event.data {
        Data::Json(data) => data.to_value(),
        other => panic!("lifecycle data is JSON, not {other:?}"),
    }
}

#[test]
fn session_connected_has_event_grid_fields() {
    let event = session_connected(SOURCE, "myns", "client1", "session1", 1, example_time());
    let data = common(&event, SESSION_CONNECTED, "clients/client1/sessions/session1");
    assert_eq!(
        data,
        json!({"namespaceName": "myns", "clientAuthenticationName": "client1",
               "clientSessionName": "session1", "sequenceNumber": 1})
    );
}

#[test]
fn session_disconnected_matches_event_grid_example() {
    let reason = DisconnectReason::ClientDisconnect(ReasonCode::NORMAL_DISCONNECTION);
    let event =
        session_disconnected(SOURCE, "myns", "client1", "session1", 1, &reason, example_time());
    let data = common(&event, SESSION_DISCONNECTED, "clients/client1/sessions/session1");
    assert_eq!(
        data,
        json!({"namespaceName": "myns", "clientAuthenticationName": "client1",
               "clientSessionName": "session1", "sequenceNumber": 1,
               "disconnectionReason": "ClientInitiatedDisconnect"})
    );
}

#[test]
fn sequence_numbers_are_json_numbers_at_any_size() {
    let event = session_connected(SOURCE, "ns", "a", "s", u64::MAX, example_time());
    let data = common(&event, SESSION_CONNECTED, "clients/a/sessions/s");
    assert_eq!(data["sequenceNumber"], json!(u64::MAX));
    assert!(data["sequenceNumber"].is_u64());
}

#[test]
fn client_created_or_updated_has_event_grid_fields() {
    let mut attributes = Map::new();
    attributes.insert("floor".into(), json!(3));
    attributes.insert("sensors".into(), json!(["gps", "can"]));
    let created = UNIX_EPOCH + Duration::new(1_690_593_274, 204_810_800);
    let updated = UNIX_EPOCH + Duration::new(1_690_593_300, 0);
    for (enabled, state) in [(true, "Enabled"), (false, "Disabled")] {
        let event = client_created_or_updated(
            SOURCE,
            "myns",
            "client1",
            "car-1",
            enabled,
            &attributes,
            created,
            updated,
            example_time(),
        );
        let data = common(&event, CLIENT_CREATED_OR_UPDATED, "clients/client1");
        assert_eq!(
            data,
            json!({"createdOn": "2023-07-29T01:14:34.2048108Z",
                   "updatedOn": "2023-07-29T01:15:00.0000000Z",
                   "namespaceName": "myns", "clientName": "client1",
                   "clientAuthenticationName": "car-1", "state": state,
                   "attributes": {"floor": 3, "sensors": ["gps", "can"]}})
        );
    }
}

#[test]
fn client_without_attributes_has_an_empty_object() {
    let event = client_created_or_updated(
        SOURCE,
        "ns",
        "c",
        "c",
        true,
        &Map::new(),
        example_time(),
        example_time(),
        example_time(),
    );
    let data = common(&event, CLIENT_CREATED_OR_UPDATED, "clients/c");
    assert_eq!(data["attributes"], json!({}));
}

#[test]
fn client_deleted_has_event_grid_fields() {
    let event = client_deleted(SOURCE, "myns", "client1", "car-1", example_time());
    let data = common(&event, CLIENT_DELETED, "clients/client1");
    assert_eq!(
        data,
        json!({"namespaceName": "myns", "clientName": "client1",
               "clientAuthenticationName": "car-1"})
    );
}

#[test]
fn every_event_gets_its_own_id() {
    let a = client_deleted(SOURCE, "ns", "c", "c", example_time());
    let b = client_deleted(SOURCE, "ns", "c", "c", example_time());
    assert_ne!(a.id, b.id);
}

#[test]
fn types_are_event_grids() {
    assert_eq!(SESSION_CONNECTED, "Microsoft.EventGrid.MQTTClientSessionConnected");
    assert_eq!(SESSION_DISCONNECTED, "Microsoft.EventGrid.MQTTClientSessionDisconnected");
    assert_eq!(CLIENT_CREATED_OR_UPDATED, "Microsoft.EventGrid.MQTTClientCreatedOrUpdated");
    assert_eq!(CLIENT_DELETED, "Microsoft.EventGrid.MQTTClientDeleted");
}

#[test]
fn variants_without_a_code_map_to_one_reason() {
    let check = |reason: DisconnectReason, expected: &str| {
        assert_eq!(disconnection_reason(&reason), expected, "{reason:?}");
    };
    check(DisconnectReason::ConnectionLost, "ConnectionLost");
    check(DisconnectReason::KeepAliveTimeout, "ConnectionLost");
    check(DisconnectReason::SessionTakenOver, "SessionTakenOver");
    check(DisconnectReason::ServerShutdown, "ServerInitiatedDisconnect");
    check(DisconnectReason::SessionOverflow, "SessionOverflow");
}

/// Every reason code the specification defines, for the variants that carry one.
fn all_codes() -> impl Iterator<Item = ReasonCode> {
    (0..=u8::MAX).filter_map(ReasonCode::from_u8)
}

#[test]
fn a_client_disconnect_is_client_initiated_whatever_its_code() {
    for code in all_codes() {
        let reason = DisconnectReason::ClientDisconnect(code);
        assert_eq!(disconnection_reason(&reason), "ClientInitiatedDisconnect", "{code:?}");
    }
}

#[test]
fn protocol_violations_are_client_errors_unless_the_code_says_otherwise() {
    use ReasonCode::*;
    let expected = |code: ReasonCode| match code {
        MessageRateTooHigh | QuotaExceeded | ConnectionRateExceeded => "QuotaExceeded",
        NotAuthorized => "ClientAuthorizationError",
        UnspecifiedError | ImplementationSpecificError | ServerUnavailable | ServerBusy => {
            "ServerError"
        }
        ServerShuttingDown | UseAnotherServer | ServerMoved => "ServerInitiatedDisconnect",
        _ => "ClientError",
    };
    for code in all_codes() {
        let reason = DisconnectReason::ProtocolViolation(code);
        assert_eq!(disconnection_reason(&reason), expected(code), "{code:?}");
    }
    // The codes the connection actually closes with for what a client sent.
    for code in [
        MalformedPacket,
        ProtocolError,
        PacketTooLarge,
        TopicAliasInvalid,
        ReceiveMaximumExceeded,
        PayloadFormatInvalid,
        TopicNameInvalid,
        TopicFilterInvalid,
        UnsupportedProtocolVersion,
    ] {
        let reason = DisconnectReason::ProtocolViolation(code);
        assert_eq!(disconnection_reason(&reason), "ClientError", "{code:?}");
    }
}

#[test]
fn administrative_disconnects_follow_their_code() {
    use ReasonCode::*;
    let check = |code: ReasonCode, expected: &str| {
        let reason = DisconnectReason::Administrative(code);
        assert_eq!(disconnection_reason(&reason), expected, "{code:?}");
    };
    // A client disabled, deleted or renamed; credentials expired; re-authentication refused.
    check(AdministrativeAction, "ClientAuthenticationError");
    check(MaximumConnectTime, "ClientAuthenticationError");
    check(BadUserNameOrPassword, "ClientAuthenticationError");
    check(NotAuthorized, "ClientAuthenticationError");
    check(BadAuthenticationMethod, "ClientAuthenticationError");
    check(Banned, "IpForbidden");
    check(SessionTakenOver, "SessionTakenOver");
    check(QuotaExceeded, "SessionOverflow");
    check(MessageRateTooHigh, "QuotaExceeded");
    check(ConnectionRateExceeded, "QuotaExceeded");
    check(UnspecifiedError, "ServerError");
    check(ImplementationSpecificError, "ServerError");
    check(ServerUnavailable, "ServerError");
    check(ServerBusy, "ServerError");
    check(ServerShuttingDown, "ServerInitiatedDisconnect");
    check(UseAnotherServer, "ServerInitiatedDisconnect");
    check(ServerMoved, "ServerInitiatedDisconnect");
    check(ReasonCode::NORMAL_DISCONNECTION, "ServerInitiatedDisconnect");
}

#[test]
fn every_reason_is_one_of_event_grids_eleven() {
    let mut reasons = vec![
        DisconnectReason::ConnectionLost,
        DisconnectReason::KeepAliveTimeout,
        DisconnectReason::SessionTakenOver,
        DisconnectReason::ServerShutdown,
        DisconnectReason::SessionOverflow,
    ];
    for code in all_codes() {
        reasons.push(DisconnectReason::ClientDisconnect(code));
        reasons.push(DisconnectReason::ProtocolViolation(code));
        reasons.push(DisconnectReason::Administrative(code));
    }
    let mut seen: Vec<&str> = reasons.iter().map(disconnection_reason).collect();
    for reason in &seen {
        assert!(DISCONNECTION_REASONS.contains(reason), "{reason}");
    }
    // And each of the eleven is reachable from some broker reason.
    seen.sort_unstable();
    seen.dedup();
    let mut all = DISCONNECTION_REASONS.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all);
}
