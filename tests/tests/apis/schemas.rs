//! The JSON Schemas in `schemas/`: they compile, the documents gridmq produces (and the configs
//! it ships) validate against them and against the CloudEvents schema, and broken documents do
//! not.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use std::collections::BTreeMap;

use gateway::hooks::{ClientIdentity, DisconnectReason, RoutedMessage};
use gateway::mqtt::{Properties, Protocol, QoS, ReasonCode};
use gateway::routing::enrich::Enrichments;
use gateway::routing::{event, lifecycle};
use gateway_tests::schema::{
    CLOUDEVENTS_SCHEMA, compile, schemas_dir, toml_to_json, validate, validate_cloudevent,
};
use serde_json::{Value, json};

const ROUTED: &str = "routed-event.schema.json";
const CONNECTED: &str = "lifecycle-session-connected.schema.json";
const DISCONNECTED: &str = "lifecycle-session-disconnected.schema.json";
const CREATED_OR_UPDATED: &str = "lifecycle-client-created-or-updated.schema.json";
const DELETED: &str = "lifecycle-client-deleted.schema.json";
const DEAD_LETTER: &str = "dead-letter-record.schema.json";
const CONFIG: &str = "gridmq-config.schema.json";

const ARM_ID: &str =
    "/subscriptions/sub/resourceGroups/myrg/providers/Microsoft.EventGrid/namespaces/myns";

/// Valid against `schema` and, for events, against the CloudEvents schema.
#[track_caller]
fn accepted(schema: &str, instance: &Value) {
    if let Err(error) = validate(schema, instance) {
        panic!("{schema} refused {instance:#}:\n{error}");
    }
}

#[track_caller]
fn accepted_event(schema: &str, event: &Value) {
    accepted(schema, event);
    if let Err(error) = validate_cloudevent(event) {
        panic!("the CloudEvents schema refused {event:#}:\n{error}");
    }
}

#[track_caller]
fn refused(schema: &str, instance: &Value) {
    assert!(validate(schema, instance).is_err(), "{schema} accepted {instance:#}");
}

/// `base` with `change` applied to its JSON object (a `null` removes the key).
fn mutated(base: &Value, path: &[&str], value: Value) -> Value {
    let mut out = base.clone();
    let mut target = &mut out;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    let map = target.as_object_mut().expect("an object");
    let last = path[path.len() - 1].to_string();
    if value.is_null() {
        map.remove(&last);
    } else {
        map.insert(last, value);
    }
    out
}

fn files_in(dir: PathBuf, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_str().is_some_and(|p| p.ends_with(suffix)))
        .collect();
    files.sort();
    files
}

// === the schemas themselves ===

#[test]
fn every_schema_compiles() {
    let files = files_in(schemas_dir(), ".schema.json");
    assert!(files.len() >= 7, "schemas found: {files:?}");
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("a file name");
        compile(name).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    compile(CLOUDEVENTS_SCHEMA).unwrap();
}

#[test]
fn the_cloudevents_copy_is_the_specifications_schema() {
    let copy: Value = serde_json::from_str(
        &std::fs::read_to_string(schemas_dir().join(CLOUDEVENTS_SCHEMA)).unwrap(),
    )
    .unwrap();
    assert_eq!(copy["description"], "CloudEvents Specification JSON Schema");
    assert_eq!(copy["required"], json!(["id", "source", "specversion", "type"]));
}

#[test]
fn the_disconnection_reasons_are_the_gateways() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schemas_dir().join(DISCONNECTED)).unwrap())
            .unwrap();
    let listed = &schema["properties"]["data"]["properties"]["disconnectionReason"]["enum"];
    assert_eq!(listed, &json!(lifecycle::DISCONNECTION_REASONS));
}

// === routed events ===

fn routed_json() -> Value {
    json!({
        "specversion": "1.0",
        "id": "b4ef1c2e-4a8f-4c1e-9a59-3f0c7a1d2e11",
        "time": "2019-11-18T15:13:39.4589254Z",
        "type": "MQTT.EventPublished",
        "source": "testnamespace",
        "subject": "campus/buildings/building17",
        "datacontenttype": "application/json",
        "data": {"temperature": 21.5, "unit": "C"},
        "clientname": "client1",
        "mqtttopic": "campus/buildings/building17",
        "mqttcorrelationdata": "cmVxdWVzdDE=",
        "mqttpfi": 1
    })
}

fn routed_binary() -> Value {
    json!({
        "specversion": "1.0",
        "id": "5d6c9a8f-0f1e-4c34-8a55-0d2a8c6b2f00",
        "time": "2024-03-01T08:00:00.0000000Z",
        "type": "MQTT.EventPublished",
        "source": "fleet",
        "subject": "vehicles/car1/can",
        "datacontenttype": "application/octet-stream",
        "data_base64": "AAECAw=="
    })
}

#[test]
fn routed_events_validate() {
    accepted_event(ROUTED, &routed_json());
    accepted_event(ROUTED, &routed_binary());
    // UTF-8 text that is not JSON is inlined as a JSON string.
    let text = mutated(&routed_json(), &["data"], json!("21.5 C"));
    accepted_event(ROUTED, &mutated(&text, &["datacontenttype"], Value::Null));
    // Empty base64 is still base64.
    accepted_event(ROUTED, &mutated(&routed_binary(), &["data_base64"], json!("")));
}

#[test]
fn broken_routed_events_are_refused() {
    let event = routed_json();
    refused(ROUTED, &mutated(&event, &["id"], Value::Null));
    assert!(validate_cloudevent(&mutated(&event, &["id"], Value::Null)).is_err());
    refused(ROUTED, &mutated(&event, &["type"], json!("MQTT.Published")));
    refused(ROUTED, &mutated(&event, &["specversion"], json!("0.3")));
    refused(ROUTED, &mutated(&event, &["subject"], Value::Null));
    // Event Grid writes seven fractional digits.
    refused(ROUTED, &mutated(&event, &["time"], json!("2019-11-18T15:13:39.458Z")));
    refused(ROUTED, &mutated(&event, &["time"], json!("2019-11-18T25:13:39.4589254Z")));
    // Never both data and data_base64.
    refused(ROUTED, &mutated(&event, &["data_base64"], json!("AA==")));
    // An empty payload has neither.
    accepted_event(ROUTED, &mutated(&event, &["data"], Value::Null));
    refused(ROUTED, &mutated(&routed_binary(), &["data_base64"], json!("not base64!")));
    // Enrichment names and values.
    refused(ROUTED, &mutated(&event, &["ClientName"], json!("x")));
    refused(ROUTED, &mutated(&event, &["client_name"], json!("x")));
    refused(ROUTED, &mutated(&event, &["azspthing"], json!("x")));
    refused(ROUTED, &mutated(&event, &["a23456789012345678901"], json!("x")));
    refused(ROUTED, &mutated(&event, &["site"], json!({"nested": true})));
    refused(ROUTED, &mutated(&event, &["site"], json!(1.5)));
    accepted_event(ROUTED, &mutated(&event, &["a2345678901234567890"], json!(true)));
}

/// A message as the routing tap sees it.
fn message(protocol: Protocol, payload: &'static [u8], properties: Properties) -> RoutedMessage {
    RoutedMessage {
        publisher: ClientIdentity {
            client_id: "car1".into(),
            authentication_name: "car-1".into(),
            attributes: BTreeMap::new(),
        },
        protocol,
        topic: "vehicles/car1/telemetry".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        payload: payload.into(),
        properties: properties.into_shared(),
    }
}

#[test]
fn the_gateways_routed_events_validate() {
    let statics = BTreeMap::from([("site".to_string(), "plant-7".to_string())]);
    let dynamics = BTreeMap::from([
        ("clientname".to_string(), "${client.authenticationName}".to_string()),
        ("mqttpfi".to_string(), "${mqtt.message.pfi}".to_string()),
        ("mqttcorrelationdata".to_string(), "${mqtt.message.correlationData}".to_string()),
        ("unit".to_string(), "${mqtt.message.userProperties.unit}".to_string()),
    ]);
    let enrichments = Enrichments::parse(&statics, &dynamics).unwrap();
    let json = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        correlation_data: Some(bytes_of(b"request1")),
        user_properties: vec![("unit".into(), "C".into())],
        ..Properties::default()
    };
    let text = Properties { payload_format_indicator: Some(1), ..Properties::default() };
    let messages = [
        message(Protocol::V5, br#"{"temperature": 21.5}"#, json),
        message(Protocol::V5, b"21.5 C", text),
        message(Protocol::V5, b"\x00\x01\xff", Properties::default()),
        message(Protocol::V311, br#"{"temperature": 21.5}"#, Properties::default()),
        message(Protocol::V311, b"", Properties::default()),
    ];
    for message in &messages {
        let mut routed = event::to_cloud_event("fleet", message, std::time::SystemTime::now());
        accepted_event(ROUTED, &routed.to_json());
        enrichments.apply(message, &mut routed);
        accepted_event(ROUTED, &routed.to_json());
    }
}

fn bytes_of(bytes: &'static [u8]) -> bytes::Bytes {
    bytes::Bytes::from_static(bytes)
}

// === lifecycle events ===

fn at(secs: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::new(secs, 123_456_700)
}

#[test]
fn event_grids_documented_lifecycle_example_validates() {
    let example = json!({
        "specversion": "1.0",
        "id": "e30e5174-787d-4e19-8812-580148bfcf7b",
        "time": "2023-07-29T01:27:40.2446871Z",
        "type": "Microsoft.EventGrid.MQTTClientSessionDisconnected",
        "source": ARM_ID,
        "subject": "clients/client1/sessions/session1",
        "data": {"namespaceName": "myns", "clientAuthenticationName": "client1",
                 "clientSessionName": "session1", "sequenceNumber": 1,
                 "disconnectionReason": "ClientInitiatedDisconnect"}
    });
    accepted_event(DISCONNECTED, &example);
}

#[test]
fn the_gateways_session_events_validate() {
    let connected =
        lifecycle::session_connected(ARM_ID, "myns", "car-1", "car1", 1, at(1_700_000_000));
    accepted_event(CONNECTED, &connected.to_json());
    let mut reasons = vec![
        DisconnectReason::ConnectionLost,
        DisconnectReason::KeepAliveTimeout,
        DisconnectReason::SessionTakenOver,
        DisconnectReason::ServerShutdown,
        DisconnectReason::SessionOverflow,
    ];
    for code in (0..=u8::MAX).filter_map(ReasonCode::from_u8) {
        reasons.push(DisconnectReason::ClientDisconnect(code));
        reasons.push(DisconnectReason::ProtocolViolation(code));
        reasons.push(DisconnectReason::Administrative(code));
    }
    for reason in &reasons {
        let event = lifecycle::session_disconnected(
            ARM_ID,
            "myns",
            "car-1",
            "car1",
            7,
            reason,
            at(1_700_000_001),
        );
        accepted_event(DISCONNECTED, &event.to_json());
    }
}

#[test]
fn the_gateways_client_events_validate() {
    let attributes = json!({"site": "berlin", "floor": 3, "sensors": ["gps", "can"]});
    let attributes = attributes.as_object().unwrap();
    for enabled in [true, false] {
        let event = lifecycle::client_created_or_updated(
            ARM_ID,
            "myns",
            "car1",
            "car-1",
            enabled,
            attributes,
            at(1_600_000_000),
            at(1_700_000_000),
            at(1_700_000_002),
        );
        accepted_event(CREATED_OR_UPDATED, &event.to_json());
    }
    let event = lifecycle::client_deleted(ARM_ID, "myns", "car1", "car-1", at(1_700_000_003));
    accepted_event(DELETED, &event.to_json());
}

#[test]
fn broken_lifecycle_events_are_refused() {
    let connected =
        lifecycle::session_connected(ARM_ID, "myns", "car-1", "car1", 1, at(1_700_000_000))
            .to_json();
    refused(CONNECTED, &mutated(&connected, &["id"], Value::Null));
    refused(CONNECTED, &mutated(&connected, &["type"], json!(lifecycle::SESSION_DISCONNECTED)));
    refused(CONNECTED, &mutated(&connected, &["data", "sequenceNumber"], json!("1")));
    refused(CONNECTED, &mutated(&connected, &["data", "sequenceNumber"], json!(0)));
    refused(CONNECTED, &mutated(&connected, &["data", "extra"], json!(1)));
    refused(CONNECTED, &mutated(&connected, &["subject"], json!("clients/car-1")));
    // The connected schema has no reason; the disconnected one needs one of the eleven.
    refused(
        CONNECTED,
        &mutated(&connected, &["data", "disconnectionReason"], json!("ClientError")),
    );
    let disconnected = lifecycle::session_disconnected(
        ARM_ID,
        "myns",
        "car-1",
        "car1",
        1,
        &DisconnectReason::ConnectionLost,
        at(1_700_000_000),
    )
    .to_json();
    refused(DISCONNECTED, &mutated(&disconnected, &["data", "disconnectionReason"], json!("Bye")));
    refused(DISCONNECTED, &mutated(&disconnected, &["data", "disconnectionReason"], Value::Null));
    refused(DISCONNECTED, &connected);

    let deleted = lifecycle::client_deleted(ARM_ID, "myns", "car1", "car-1", at(1)).to_json();
    refused(DELETED, &mutated(&deleted, &["data", "clientName"], json!("no spaces")));
    refused(DELETED, &mutated(&deleted, &["datacontenttype"], json!("text/plain")));
    let updated = lifecycle::client_created_or_updated(
        ARM_ID,
        "myns",
        "car1",
        "car-1",
        true,
        &serde_json::Map::new(),
        at(1),
        at(2),
        at(3),
    )
    .to_json();
    refused(CREATED_OR_UPDATED, &mutated(&updated, &["data", "state"], json!("enabled")));
    refused(CREATED_OR_UPDATED, &mutated(&updated, &["data", "attributes"], json!({"x": 1.5})));
    refused(CREATED_OR_UPDATED, &mutated(&updated, &["data", "createdOn"], json!("yesterday")));
}

// === dead-letter records ===

fn dead_letter_record() -> Value {
    json!({
        "event": routed_binary(),
        "customDeliveryProperties": {"x-site": "plant-7"},
        "deadletterProperties": {
            "deadletterreason": "MaxDeliveryAttemptsExceeded",
            "deliveryattempts": 3,
            "deliveryresult": "Unauthorized",
            "deliverystatuscode": 401,
            "publishutc": "2024-03-01T08:00:00.0000000Z",
            "deliveryattemptutc": "2024-03-01T08:01:10.0000000Z"
        }
    })
}

#[test]
fn dead_letter_records_validate() {
    accepted(DEAD_LETTER, &dead_letter_record());
    let with_json = mutated(&dead_letter_record(), &["event"], routed_json());
    accepted(DEAD_LETTER, &with_json);
    let minimal = mutated(&dead_letter_record(), &["customDeliveryProperties"], Value::Null);
    let minimal = mutated(&minimal, &["deadletterProperties", "deliveryattemptutc"], Value::Null);
    accepted(DEAD_LETTER, &minimal);
}

#[test]
fn the_sinks_dead_letter_records_validate() {
    let routed = event::to_cloud_event(
        "fleet",
        &message(Protocol::V311, b"\x00\x01", Properties::default()),
        std::time::SystemTime::now(),
    );
    for (reason, status) in [
        (sinks::DeadLetterReason::MaxDeliveryAttemptsExceeded, Some(503)),
        (sinks::DeadLetterReason::MaxRetryDurationExceeded, None),
        (sinks::DeadLetterReason::NonRetriable, Some(401)),
    ] {
        let record = sinks::DeadLetterRecord {
            event: routed.clone(),
            reason,
            attempts: 3,
            last_result: "Busy".into(),
            last_status: status,
            published: sinks::event::format_time(std::time::SystemTime::now()),
            last_attempt: sinks::event::format_time(std::time::SystemTime::now()),
            custom_delivery_properties: BTreeMap::from([("x-site".into(), "plant-7".into())]),
        };
        accepted(DEAD_LETTER, &record.to_json());
    }
}

#[test]
fn broken_dead_letter_records_are_refused() {
    let record = dead_letter_record();
    refused(DEAD_LETTER, &mutated(&record, &["event", "id"], Value::Null));
    refused(DEAD_LETTER, &mutated(&record, &["event", "data"], json!({})));
    refused(DEAD_LETTER, &mutated(&record, &["deadletterProperties"], Value::Null));
    refused(DEAD_LETTER, &mutated(&record, &["deadLetterProperties"], json!({})));
    let properties = ["deadletterProperties", "deliveryattempts"];
    refused(DEAD_LETTER, &mutated(&record, &properties, json!(-1)));
    let properties = ["deadletterProperties", "publishutc"];
    refused(DEAD_LETTER, &mutated(&record, &properties, json!("March")));
    let properties = ["deadletterProperties", "deadletterreason"];
    refused(DEAD_LETTER, &mutated(&record, &properties, json!("Unknown")));
}

// === the config file ===

/// What gridmq itself says about a config (given as the JSON the TOML maps to): read by its own
/// types and validated, as at start-up.
fn gateway_verdict(config: &Value) -> Result<(), String> {
    let config: gateway::Config =
        serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
    config.validate().map_err(|error| error.to_string())
}

/// The schema and gridmq both accept `config`.
#[track_caller]
fn config_accepted(config: &Value) {
    accepted(CONFIG, config);
    if let Err(error) = gateway_verdict(config) {
        panic!("the schema accepts what gridmq refuses ({error}): {config:#}");
    }
}

/// The schema and gridmq both refuse `config`.
#[track_caller]
fn config_refused(config: &Value) {
    refused(CONFIG, config);
    assert!(gateway_verdict(config).is_err(), "the schema refuses what gridmq accepts: {config:#}");
}

/// A config with every table, as a user might write it.
const FULL_CONFIG: &str = r#"
[server]
shutdown_grace_secs = 5

[log]
format = "json"
diagnostic_events_per_second = 50

[[server.listeners]]
kind = "tcp"
address = "0.0.0.0:1883"

[[server.listeners]]
kind = "wss"
address = "[::]:8443"
path = "/mqtt"
certificate = "tls/server.pem"
private_key = "tls/server.key"
client_auth = "optional"
client_ca = "tls/ca.pem"
verify_client_chain = true
min_tls_version = "1.3"

[mqtt]
max_packet_size = 262144
queue_full = "end-session"

[store]
data_dir = "/var/lib/gridmq"
max_batch_ops = 1000
commit_linger_ms = 2

[cluster]
nats_urls = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
node_id = "a"
subject_prefix = "gm"
replicas = 3
connect_timeout_secs = 10
fence_after_ms = 2000
release_timeout_ms = 4000

[access.limits]
clients = 100

[auth]
allow_anonymous = false

[auth.jwt]
issuer = "https://issuer.example"
audiences = ["fleet.example"]
jwks_url = "https://issuer.example/keys"
algorithms = ["RS256"]

[auth.webhook]
endpoint = "http://127.0.0.1:9000/auth"
bearer_token_env = "AUTH_TOKEN"

[management]
listen = "127.0.0.1:8081"
admin_token_env = "GRIDMQ_ADMIN_TOKEN"
certificate = "tls/server.pem"
private_key = "tls/server.key"
min_tls_version = "1.3"

[metrics]
enabled = true
listen = "127.0.0.1:9464"

[http]
listen = "0.0.0.0:8443"
access_keys = ["ZGF0YS1wbGFuZS1rZXk="]
certificate = "tls/server.pem"
private_key = "tls/server.key"
min_tls_version = "1.2"
max_request_bytes = 1048576
max_event_bytes = 1048576
max_events_per_request = 1000

[namespace]
name = "fleet"
subscription_id = "6a0f3e52-1c7b-4d2e-9a4f-0b8c2d1e3f40"
resource_group = "rg-fleet"
alternativeAuthenticationNameSources = ["ClientCertificateSubject", "ClientCertificateDns"]

[clients.car1]
authenticationName = "car-1"
attributes = { site = "berlin", floor = 3, sensors = ["gps", "can"] }
state = "Enabled"
clientCertificateAuthentication = { validationScheme = "ThumbprintMatch", allowedThumbprints = ["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"] }

[clients."dev:2"]
passwordHash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"

[clientGroups.berlin]
query = "attributes.site = 'berlin'"

[topicSpaces.vehicles]
topicTemplates = ["vehicles/${client.authenticationName}/#"]

[permissionBindings.berlin-publish]
clientGroupName = "berlin"
topicSpaceName = "vehicles"
permission = "Publisher"

[permissionBindings.all-subscribe]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Subscriber"

[caCertificates.fleet-ca]
encodedCertificate = """-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ0x+/=
-----END CERTIFICATE-----"""

[routing]
max_buffered_events = 5000

[[routing.routes]]
topic_filter = "vehicles/#"
topic = "telemetry"

[[routing.routes]]
topic = "everything"

[routing.enrichments.static]
site = "plant7"

[routing.enrichments.dynamic]
clientname = "${client.authenticationName}"
mqttpfi = "${mqtt.message.pfi}"

[topics.telemetry]
eventRetentionInDays = 1
inputSchema = "CloudEventSchemaV1_0"
publisherType = "Custom"

[topics.telemetry.eventSubscriptions.archive]
eventDeliverySchema = "CloudEventSchemaV1_0"
deliveryConfiguration = { deliveryMode = "Queue", queue = { receiveLockDurationInSeconds = 60, maxDeliveryCount = 5, eventTimeToLive = "PT12H" } }
filtersConfiguration = { includedEventTypes = ["MQTT.EventPublished"], filters = [{ operatorType = "StringBeginsWith", key = "subject", values = ["vehicles/"] }] }

[topics.telemetry.eventSubscriptions.alerts.deliveryConfiguration]
deliveryMode = "Push"
push = { maxDeliveryCount = 3, destination = { endpointType = "WebHook", properties = { endpointUrl = "https://example.com/alerts", maxEventsPerBatch = 10 } } }

[topics.telemetry.eventSubscriptions.hook]
maxDeliveryCount = 5
eventTimeToLive = "PT30M"
retryDelaysSeconds = [0, 0.5, 1]

[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "http://127.0.0.1:8000/hook"
contentMode = "Binary"
maxEventsPerBatch = 10
preferredBatchSizeInKilobytes = 64
timeoutSeconds = 30
maxConcurrency = 4
webhookOrigin = "gridmq.local"
deliveryAttributeMappings = [
  { name = "x-site", type = "Static", value = "plant-7" },
  { name = "authorization", type = "Static", value = "Bearer abc", isSecret = true },
  { name = "x-device", type = "Dynamic", sourceField = "data.deviceId" },
]

[topics.telemetry.eventSubscriptions.hook.filters]
subjectBeginsWith = "vehicles/"
subjectEndsWith = "/can"
isSubjectCaseSensitive = true
includedEventTypes = ["MQTT.EventPublished"]
enableAdvancedFilteringOnArrays = true
advancedFilters = [
  { operatorType = "NumberGreaterThan", key = "data.temp", value = 100 },
  { operatorType = "NumberInRange", key = "data.speed", values = [[0, 50], [90, 120]] },
  { operatorType = "StringIn", key = "site", values = ["plant7"] },
  { operatorType = "BoolEquals", key = "data.ok", value = true },
  { operatorType = "IsNotNull", key = "data.id" },
]

[topics.everything.eventSubscriptions.forward.destination]
endpointType = "CustomTopic"
endpoint = "https://mytopic.westeurope-1.eventgrid.azure.net/api/events"
sasTokenKey = "c2VjcmV0"
sasTokenTtlSeconds = 3600
maxEventsPerBatch = 100

[topics.everything.eventSubscriptions.forward]
maxDeliveryCount = 30
eventTimeToLive = "P1D"

[systemTopic.eventSubscriptions.lifecycle.destination]
endpointType = "WebHook"
endpointUrl = "http://127.0.0.1:8000/lifecycle"
"#;

fn full_config() -> Value {
    toml_to_json(FULL_CONFIG).expect("FULL_CONFIG is TOML")
}

#[test]
fn the_shipped_configs_validate() {
    let mut files = vec![schemas_dir().join("gridmq.example.toml")];
    let examples = files_in(schemas_dir().join("../examples"), ".toml");
    files.extend(examples.into_iter().filter(|file| !file.ends_with("Cargo.toml")));
    files.extend(files_in(schemas_dir().join("../examples/cluster"), ".toml"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let config = toml_to_json(&text).unwrap();
        if let Err(error) = validate(CONFIG, &config) {
            panic!("{}: {error}", file.display());
        }
        if let Err(error) = gateway_verdict(&config) {
            panic!("{}: gridmq refuses it: {error}", file.display());
        }
    }
}

#[test]
fn a_config_with_every_table_validates() {
    config_accepted(&full_config());
    config_accepted(&json!({}));
}

#[test]
fn unknown_config_fields_are_refused() {
    let config = full_config();
    config_refused(&mutated(&config, &["routes"], json!([])));
    config_refused(&mutated(&config, &["mqtt", "max_packet_bytes"], json!(1)));
    config_refused(&mutated(&config, &["log", "level"], json!("debug")));
    config_refused(&mutated(&config, &["log", "format"], json!("xml")));
    config_refused(&mutated(&config, &["metrics", "port"], json!(9464)));
    config_refused(&mutated(&config, &["cluster", "replica"], json!(3)));
    config_refused(&mutated(&config, &["cluster", "replicas"], json!(0)));
    config_refused(&mutated(&config, &["cluster", "nats_urls"], json!([])));
    config_refused(&mutated(&config, &["metrics", "listen"], json!("localhost")));
    config_refused(&mutated(&config, &["clients", "car1", "AuthenticationName"], json!("x")));
    let route = json!({"topic": "telemetry", "filter": "#"});
    config_refused(&json!({"routing": {"routes": [route]}}));
    let hook = ["topics", "telemetry", "eventSubscriptions", "hook"];
    config_refused(&mutated(
        &config,
        &[hook.as_slice(), &["maxDeliveryCounts"]].concat(),
        json!(1),
    ));
    let destination = [hook.as_slice(), &["destination"]].concat();
    config_refused(&mutated(
        &config,
        &[destination.as_slice(), &["endpoint"]].concat(),
        json!("x"),
    ));
    config_refused(&mutated(&config, &["systemTopic", "eventSubscriptions", "x"], json!({})));
}

#[test]
fn arm_shaped_subscriptions_are_checked_like_flattened_ones() {
    let config = full_config();
    let archive = ["topics", "telemetry", "eventSubscriptions", "archive"];
    let alerts = ["topics", "telemetry", "eventSubscriptions", "alerts"];
    let at = |base: &[&str], tail: &[&str]| -> Vec<String> {
        base.iter().chain(tail).map(|s| s.to_string()).collect()
    };
    let set = |path: Vec<String>, value: Value| {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        mutated(&config, &path, value)
    };
    // One shape per subscription.
    config_refused(&set(at(&archive, &["maxDeliveryCount"]), json!(3)));
    config_refused(&set(at(&archive, &["filters"]), json!({"subjectBeginsWith": "v"})));
    // A queue takes `queue`, a push `push` with a destination.
    config_refused(&set(
        at(&archive, &["deliveryConfiguration", "push"]),
        json!({"maxDeliveryCount": 3}),
    ));
    config_refused(&set(
        at(&alerts, &["deliveryConfiguration", "push", "destination"]),
        Value::Null,
    ));
    config_refused(&set(at(&alerts, &["deliveryConfiguration", "queue"]), json!({})));
    // The same ranges as the flattened fields.
    let queue = at(&archive, &["deliveryConfiguration", "queue"]);
    config_refused(&set([queue.clone(), vec!["maxDeliveryCount".into()]].concat(), json!(11)));
    config_refused(&set(
        [queue.clone(), vec!["receiveLockDurationInSeconds".into()]].concat(),
        json!(301),
    ));
    config_refused(&set([queue, vec!["eventTimeToLive".into()]].concat(), json!("P1W")));
    let push = at(&alerts, &["deliveryConfiguration", "push"]);
    config_refused(&set([push.clone(), vec!["maxDeliveryCount".into()]].concat(), json!(11)));
    let properties = [push, vec!["destination".into(), "properties".into()]].concat();
    config_refused(&set([properties.clone(), vec!["endpointUrl".into()]].concat(), Value::Null));
    config_refused(&set(
        [properties, vec!["resourceId".into()]].concat(),
        json!("/subscriptions/x"),
    ));
    config_refused(&set(at(&archive, &["eventDeliverySchema"]), json!("EventGridSchema")));
    config_refused(&mutated(
        &config,
        &["topics", "telemetry", "inputSchema"],
        json!("EventGridSchema"),
    ));
    config_refused(&mutated(&config, &["namespace", "subscription_id"], json!("not/a/guid")));
    config_refused(&mutated(&config, &["namespace", "resource_group"], json!("ends-with.")));
}

#[test]
fn out_of_range_config_values_are_refused() {
    let config = full_config();
    let hook = ["topics", "telemetry", "eventSubscriptions", "hook"];
    let at =
        |tail: &[&str]| -> Vec<String> { hook.iter().chain(tail).map(|s| s.to_string()).collect() };
    let set = |path: Vec<String>, value: Value| {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        mutated(&config, &path, value)
    };
    // Webhooks take at most 10 attempts, custom topics 30.
    config_refused(&set(at(&["maxDeliveryCount"]), json!(11)));
    config_refused(&set(at(&["eventTimeToLive"]), json!("P1W")));
    config_refused(&set(at(&["eventTimeToLive"]), json!("PT")));
    config_refused(&set(at(&["destination", "contentMode"]), json!("Batched")));
    config_refused(&set(at(&["destination", "maxEventsPerBatch"]), json!(5001)));
    config_refused(&set(at(&["destination", "endpointType"]), json!("EventHub")));
    config_refused(&set(at(&["destination", "endpointUrl"]), Value::Null));
    config_refused(&set(
        at(&["filters", "advancedFilters"]),
        json!([{"operatorType": "NumberEquals", "key": "k", "value": 1}]),
    ));
    config_refused(&set(
        at(&["filters", "advancedFilters"]),
        json!([{"operatorType": "NumberLessThan", "key": "k", "value": "1"}]),
    ));
    config_refused(&set(
        at(&["destination", "deliveryAttributeMappings"]),
        json!([{"name": "aeg-x", "type": "Static", "value": "v"}]),
    ));
    config_refused(&set(
        at(&["destination", "deliveryAttributeMappings"]),
        json!([{"name": "x", "type": "Dynamic", "value": "v"}]),
    ));
    config_refused(&mutated(&config, &["topics", "telemetry", "eventRetentionInDays"], json!(8)));
    config_refused(&mutated(&config, &["routing", "max_buffered_events"], json!(0)));
    config_refused(&mutated(&config, &["routing", "enrichments", "static", "Site"], json!("x")));
    config_refused(&mutated(&config, &["routing", "enrichments", "dynamic", "x"], json!("plain")));
    config_refused(&mutated(&config, &["mqtt", "queue_full"], json!("drop_oldest")));
    config_refused(&mutated(&config, &["mqtt", "max_packet_size"], json!(10)));
    config_refused(&mutated(&config, &["management", "admin_token"], json!("long-enough-token")));
    config_refused(&mutated(&config, &["namespace", "name"], json!("x")));
    // HTTPS needs both the certificate and the key, and TLS 1.2 at the oldest.
    config_refused(&mutated(&config, &["http", "private_key"], Value::Null));
    config_refused(&mutated(&config, &["management", "certificate"], Value::Null));
    config_refused(&mutated(&config, &["http", "min_tls_version"], json!("1.1")));
    config_refused(&mutated(&config, &["clients", "car1", "passwordHash"], json!("hunter2")));
    // A plain TCP listener takes no TLS settings; a TLS one needs its certificate.
    let tcp = json!({"kind": "tcp", "address": "0.0.0.0:1883", "certificate": "c.pem"});
    config_refused(&json!({"server": {"listeners": [tcp]}}));
    let tls = json!({"kind": "tls", "address": "0.0.0.0:8883"});
    config_refused(&json!({"server": {"listeners": [tls]}}));
    let named = json!({"kind": "tcp", "address": "localhost:1883"});
    config_refused(&json!({"server": {"listeners": [named]}}));
    // Exactly one custom-topic key.
    let forward =
        ["topics", "everything", "eventSubscriptions", "forward", "destination", "sasKey"];
    config_refused(&mutated(&config, &forward, json!("k")));
}
