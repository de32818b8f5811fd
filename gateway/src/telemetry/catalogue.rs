//! Every metric the gateway keeps: names, help texts, histogram buckets, and the handles hot
//! paths count through.
//!
//! The names follow Event Grid's namespace metrics (Azure Monitor,
//! `Microsoft.EventGrid/namespaces`) in Prometheus form; the table in README "Monitoring" lists
//! them with their labels. No label takes a client id, a topic name or another unbounded value:
//! event subscriptions and namespace topics are configured resources, bounded by
//! `[access.limits]`; reasons are MQTT reason codes or small fixed sets.
//!
//! Hot paths (every publish, every delivery, every read and write) count through the handles
//! below, registered once per process on first use, so a count is one atomic add. They must
//! not be touched before [`super::install`], or they stay bound to no recorder; the gateway
//! installs it before any listener accepts.

use std::sync::{Arc, LazyLock};

use metrics::{Counter, Gauge, Histogram, Unit, counter, gauge, histogram};

use crate::mqtt::{QoS, ReasonCode};

// === MQTT (Event Grid: MQTT.Connections, MQTT.RequestCount, MQTT.SuccessfulPublishedMessages,
// MQTT.FailedPublishedMessages, MQTT.SuccessfulDeliveredMessages, MQTT.Throughput,
// MQTT.SuccessfulSubscriptionOperations, MQTT.FailedSubscriptionOperations,
// MQTT.DroppedSessions) ===

pub const CONNECTIONS: &str = "gridmq_mqtt_connections";
pub const CONNECTION_ATTEMPTS: &str = "gridmq_mqtt_connection_attempts_total";
pub const CONNECTIONS_UNANSWERED: &str = "gridmq_mqtt_unanswered_connections_total";
pub const PUBLISHED: &str = "gridmq_mqtt_published_messages_total";
pub const DELIVERED: &str = "gridmq_mqtt_delivered_messages_total";
pub const BYTES_RECEIVED: &str = "gridmq_mqtt_received_bytes_total";
pub const BYTES_SENT: &str = "gridmq_mqtt_sent_bytes_total";
pub const SUBSCRIPTION_OPERATIONS: &str = "gridmq_mqtt_subscription_operations_total";
pub const DROPPED_SESSIONS: &str = "gridmq_mqtt_dropped_sessions_total";

// === routing (Event Grid: RoutedMessages, Successful/FailedDeliveredEvents,
// DeadLetteredCount, DroppedEventCount, ExpiredEventCount, DestinationProcessingDurationInMs,
// Successful/FailedReceivedEvents, Successful/FailedAcknowledgedEvents, ...ReleasedEvents,
// ...RejectedEvents, ...LockLostEvents) ===

pub const ROUTED: &str = "gridmq_routing_routed_messages_total";
pub const SUBSCRIPTION_DELIVERED: &str = "gridmq_subscription_delivered_events_total";
pub const SUBSCRIPTION_FAILED: &str = "gridmq_subscription_failed_deliveries_total";
pub const SUBSCRIPTION_DEAD_LETTERED: &str = "gridmq_subscription_dead_lettered_events_total";
pub const SUBSCRIPTION_DROPPED: &str = "gridmq_subscription_dropped_events_total";
pub const SUBSCRIPTION_EXPIRED: &str = "gridmq_subscription_expired_events_total";
pub const DESTINATION_SECONDS: &str = "gridmq_subscription_destination_processing_seconds";
pub const PULL_RECEIVED: &str = "gridmq_pull_received_events_total";
pub const PULL_ACKNOWLEDGED: &str = "gridmq_pull_acknowledged_events_total";
pub const PULL_RELEASED: &str = "gridmq_pull_released_events_total";
pub const PULL_REJECTED: &str = "gridmq_pull_rejected_events_total";
pub const PULL_LOCK_LOST: &str = "gridmq_pull_lock_lost_events_total";
pub const PULL_FAILED_SETTLES: &str = "gridmq_pull_failed_settles_total";
pub const TOPIC_BACKLOG: &str = "gridmq_topic_backlog_events";
pub const TOPIC_OLDEST_AGE: &str = "gridmq_topic_oldest_event_age_seconds";

// === broker internals ===

pub const SESSION_QUEUE_DEPTH: &str = "gridmq_session_queue_depth";
pub const SESSIONS: &str = "gridmq_sessions";
pub const CONNECTIONS_PARKED: &str = "gridmq_connections_parked";
pub const STORE_COMMIT_SECONDS: &str = "gridmq_store_commit_seconds";
pub const STORE_COMMIT_OPS: &str = "gridmq_store_commit_ops";
pub const JOURNAL_BACKLOG: &str = "gridmq_store_journal_backlog_ops";
pub const RETAINED_MESSAGES: &str = "gridmq_retained_messages";
pub const RETAINED_BYTES: &str = "gridmq_retained_bytes";
pub const PROCESS_RSS: &str = "gridmq_process_resident_memory_bytes";
pub const PROCESS_FDS: &str = "gridmq_process_open_fds";

// === counted by the `ops` and `reload` parts through the facade (issue 18) ===

pub const CONFIG_RELOADS: &str = "gridmq_config_reloads_total";
pub const DIAGNOSTIC_SUPPRESSED: &str = "gridmq_diagnostic_events_suppressed_total";

// === cluster mode (`crate::cluster`) ===

pub const CLUSTER_NOT_FORWARDED: &str = "gridmq_cluster_unforwarded_messages_total";
pub const CLUSTER_NATS_CONNECTED: &str = "gridmq_cluster_nats_connected";
pub const CLUSTER_FENCED: &str = "gridmq_cluster_fenced_total";

/// Buckets per histogram family: destination round trips from a loopback sink (ms) to a slow
/// webhook's 30 s timeout; group commits from a page-cache write to a slow disk's fsync; batch
/// sizes up to `store.max_batch_ops`' range; session queues up to `mqtt.max_queued_messages`'
/// range.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (
        DESTINATION_SECONDS,
        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
    ),
    (
        STORE_COMMIT_SECONDS,
        &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
    ),
    (STORE_COMMIT_OPS, &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0]),
    (SESSION_QUEUE_DEPTH, &[0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]),
];

/// Registers help texts and units with the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "MQTT connections open now (parked ones included).");
    describe_counter!(CONNECTION_ATTEMPTS, "CONNECTs answered, by result and CONNACK reason.");
    describe_counter!(
        CONNECTIONS_UNANSWERED,
        "Connections closed before any CONNACK, by reason: timeout, malformed, closed."
    );
    describe_counter!(PUBLISHED, "PUBLISH packets received, by QoS, result and reason.");
    describe_counter!(DELIVERED, "PUBLISH packets sent to subscribers, by QoS.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Bytes read from MQTT clients.");
    describe_counter!(BYTES_SENT, Unit::Bytes, "Bytes written to MQTT clients.");
    describe_counter!(SUBSCRIPTION_OPERATIONS, "SUBSCRIBE and UNSUBSCRIBE filters, by result.");
    describe_counter!(DROPPED_SESSIONS, "Sessions ended by the broker, by reason.");
    describe_counter!(ROUTED, "MQTT messages offered to routing, by result.");
    describe_counter!(SUBSCRIPTION_DELIVERED, "Events delivered to a push destination.");
    describe_counter!(SUBSCRIPTION_FAILED, "Failed delivery attempts, by error class.");
    describe_counter!(SUBSCRIPTION_DEAD_LETTERED, "Events dead-lettered.");
    describe_counter!(SUBSCRIPTION_DROPPED, "Events dropped without a dead letter.");
    describe_counter!(SUBSCRIPTION_EXPIRED, "Events whose time to live ran out.");
    describe_histogram!(
        DESTINATION_SECONDS,
        Unit::Seconds,
        "Time a push destination took to answer."
    );
    describe_counter!(PULL_RECEIVED, "Events handed out by a pull receive.");
    describe_counter!(PULL_ACKNOWLEDGED, "Events acknowledged.");
    describe_counter!(PULL_RELEASED, "Events released.");
    describe_counter!(PULL_REJECTED, "Events rejected.");
    describe_counter!(PULL_LOCK_LOST, "Settles refused because the lock had lapsed.");
    describe_counter!(PULL_FAILED_SETTLES, "Lock tokens a settle refused, by operation and code.");
    describe_gauge!(TOPIC_BACKLOG, "Events of a namespace topic not yet settled.");
    describe_gauge!(TOPIC_OLDEST_AGE, Unit::Seconds, "Age of a topic's oldest pending event.");
    describe_histogram!(SESSION_QUEUE_DEPTH, "Sessions' queued messages, sampled per scrape.");
    describe_gauge!(SESSIONS, "Sessions held, connected or not.");
    describe_gauge!(CONNECTIONS_PARKED, "Connections parked without a task.");
    describe_histogram!(STORE_COMMIT_SECONDS, Unit::Seconds, "Group commit latency.");
    describe_histogram!(STORE_COMMIT_OPS, "Operations per group commit.");
    describe_gauge!(JOURNAL_BACKLOG, "Operations waiting for the next commit.");
    describe_gauge!(RETAINED_MESSAGES, "Retained messages held.");
    describe_gauge!(RETAINED_BYTES, Unit::Bytes, "Payload bytes of retained messages.");
    describe_gauge!(PROCESS_RSS, Unit::Bytes, "Resident memory of the process.");
    describe_gauge!(PROCESS_FDS, "Open file descriptors of the process.");
    describe_counter!(
        CLUSTER_NOT_FORWARDED,
        "Messages delivered on their own node only, by reason (QoS 0 queue full, topic too long)."
    );
    describe_gauge!(CLUSTER_NATS_CONNECTED, "1 while the node's NATS connection is up.");
    describe_counter!(
        CLUSTER_FENCED,
        "Times the node disconnected every client, cut off from NATS."
    );
}

/// The label value of a QoS.
fn qos_label(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    }
}

/// One handle per QoS.
pub struct PerQos([Counter; 3]);

impl PerQos {
    fn new(make: impl Fn(&'static str) -> Counter) -> PerQos {
        PerQos([make("0"), make("1"), make("2")])
    }

    /// The handle for `qos`.
    pub fn get(&self, qos: QoS) -> &Counter {
        &self.0[qos as usize]
    }
}

/// Successful publishes by QoS.
pub static PUBLISHED_OK: LazyLock<PerQos> = LazyLock::new(|| {
    PerQos::new(
        |qos| counter!(PUBLISHED, "qos" => qos, "result" => "success", "reason" => "Success"),
    )
});

/// Deliveries by QoS.
pub static DELIVERED_BY_QOS: LazyLock<PerQos> =
    LazyLock::new(|| PerQos::new(|qos| counter!(DELIVERED, "qos" => qos)));

/// Cluster mode: QoS 0 messages the forwarding queue had no room for.
pub static CLUSTER_QOS0_DROPPED: LazyLock<Counter> =
    LazyLock::new(|| counter!(CLUSTER_NOT_FORWARDED, "reason" => "qos0_queue_full"));
/// Cluster mode: messages whose topic makes too long a subject.
pub static CLUSTER_TOPIC_TOO_LONG: LazyLock<Counter> =
    LazyLock::new(|| counter!(CLUSTER_NOT_FORWARDED, "reason" => "topic_too_long"));

pub static RECEIVED_BYTES: LazyLock<Counter> = LazyLock::new(|| counter!(BYTES_RECEIVED));
pub static SENT_BYTES: LazyLock<Counter> = LazyLock::new(|| counter!(BYTES_SENT));
pub static OPEN_CONNECTIONS: LazyLock<Gauge> = LazyLock::new(|| gauge!(CONNECTIONS));
pub static ROUTED_OK: LazyLock<Counter> = LazyLock::new(|| counter!(ROUTED, "result" => "success"));
pub static COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| histogram!(STORE_COMMIT_SECONDS));
pub static COMMIT_OPS: LazyLock<Histogram> = LazyLock::new(|| histogram!(STORE_COMMIT_OPS));

/// A refused publish (rare: the label lookup is acceptable here); `reason` is the PUBACK or
/// DISCONNECT reason code.
pub fn publish_failed(qos: QoS, reason: ReasonCode) {
    let reason = format!("{reason:?}");
    counter!(PUBLISHED, "qos" => qos_label(qos), "result" => "failure", "reason" => reason)
        .increment(1);
}

/// Accepted CONNECTs, the common case of [`connection_attempt`] kept as a handle for
/// connection storms.
static CONNECT_OK: LazyLock<Counter> =
    LazyLock::new(|| counter!(CONNECTION_ATTEMPTS, "result" => "success", "reason" => "Success"));

/// A CONNECT answered with the CONNACK reason `code`.
pub fn connection_attempt(code: ReasonCode) {
    if code == ReasonCode::Success {
        CONNECT_OK.increment(1);
        return;
    }
    let result = if code.is_error() { "failure" } else { "success" };
    let reason = format!("{code:?}");
    counter!(CONNECTION_ATTEMPTS, "result" => result, "reason" => reason).increment(1);
}

/// A connection that ended before any CONNACK: `timeout` (no CONNECT within
/// `mqtt.connect_timeout_secs`), `malformed` (a CONNECT the protocol gives no answer to), or
/// `closed` (the client closed first, or its read failed).
pub fn connection_unanswered(reason: &'static str) {
    counter!(CONNECTIONS_UNANSWERED, "reason" => reason).increment(1);
}

/// `count` SUBSCRIBE or UNSUBSCRIBE filters with one result.
pub fn subscription_operations(operation: &'static str, success: bool, count: u64) {
    if count == 0 {
        return;
    }
    let result = if success { "success" } else { "failure" };
    counter!(SUBSCRIPTION_OPERATIONS, "operation" => operation, "result" => result)
        .increment(count);
}

/// A connection the broker ended, with the DISCONNECT reason `code`.
pub fn dropped_session(code: ReasonCode) {
    counter!(DROPPED_SESSIONS, "reason" => format!("{code:?}")).increment(1);
}

/// A routed message that found no route or was refused.
pub fn routed_failed(reason: &'static str) {
    counter!(ROUTED, "result" => "failure", "reason" => reason).increment(1);
}

pub const DROPPED_MESSAGES: &str = "gridmq_mqtt_dropped_messages_total";
pub const SESSION_STALLS: &str = "gridmq_session_stalls_total";
pub const STORE_ELIDED: &str = "gridmq_store_elided_ops_total";
pub const LINGER_REFUSED: &str = "gridmq_linger_refused_total";
pub const ROUTING_UNMATCHED: &str = "gridmq_routing_unmatched_events_total";
pub const LIFECYCLE_DROPPED: &str = "gridmq_lifecycle_events_dropped_total";

/// Messages a session never received, by reason.
pub static DROPPED_EXPIRED: LazyLock<Counter> =
    LazyLock::new(|| counter!(DROPPED_MESSAGES, "reason" => "expired"));
pub static DROPPED_TOO_LARGE: LazyLock<Counter> =
    LazyLock::new(|| counter!(DROPPED_MESSAGES, "reason" => "too_large"));
pub static DROPPED_QUEUE_FULL: LazyLock<Counter> =
    LazyLock::new(|| counter!(DROPPED_MESSAGES, "reason" => "queue_full"));
pub static DROPPED_NO_SHARED_MEMBER: LazyLock<Counter> =
    LazyLock::new(|| counter!(DROPPED_MESSAGES, "reason" => "no_shared_member"));
pub static ELIDED: LazyLock<Counter> = LazyLock::new(|| counter!(STORE_ELIDED));
pub static UNMATCHED: LazyLock<Counter> = LazyLock::new(|| counter!(ROUTING_UNMATCHED));

/// The handles of one event subscription, labelled `topic` and `subscription` (configured
/// names, bounded by `[access.limits]`), made when its dispatcher or queue is built.
pub struct SubscriptionCounters {
    topic: Arc<str>,
    name: Arc<str>,
    pub delivered: Counter,
    pub dead_lettered: Counter,
    pub dropped: Counter,
    pub expired: Counter,
    pub destination: Histogram,
    pub received: Counter,
    pub acknowledged: Counter,
    pub released: Counter,
    pub rejected: Counter,
    pub lock_lost: Counter,
}

impl SubscriptionCounters {
    pub fn new(topic: &Arc<str>, name: &Arc<str>) -> SubscriptionCounters {
        let labels = [
            metrics::Label::new("topic", topic.to_string()),
            metrics::Label::new("subscription", name.to_string()),
        ];
        SubscriptionCounters {
            topic: topic.clone(),
            name: name.clone(),
            delivered: counter!(SUBSCRIPTION_DELIVERED, labels.iter()),
            dead_lettered: counter!(SUBSCRIPTION_DEAD_LETTERED, labels.iter()),
            dropped: counter!(SUBSCRIPTION_DROPPED, labels.iter()),
            expired: counter!(SUBSCRIPTION_EXPIRED, labels.iter()),
            destination: histogram!(DESTINATION_SECONDS, labels.iter()),
            received: counter!(PULL_RECEIVED, labels.iter()),
            acknowledged: counter!(PULL_ACKNOWLEDGED, labels.iter()),
            released: counter!(PULL_RELEASED, labels.iter()),
            rejected: counter!(PULL_REJECTED, labels.iter()),
            lock_lost: counter!(PULL_LOCK_LOST, labels.iter()),
        }
    }

    /// `tokens` lock tokens that settle `operation` (`acknowledge`, `release`, `reject`,
    /// `renewLock`) refused with Event Grid's `code` (`BadToken`, `TokenLost`, or `other`).
    pub fn failed_settles(&self, operation: &'static str, code: &'static str, tokens: u64) {
        counter!(
            PULL_FAILED_SETTLES,
            "topic" => self.topic.to_string(),
            "subscription" => self.name.to_string(),
            "operation" => operation,
            "code" => code
        )
        .increment(tokens);
    }

    /// `events` events whose delivery attempt failed with `error` (Event Grid's outcome name:
    /// `Busy`, `TimedOut`, `NotFound`, ...).
    pub fn failed(&self, error: &'static str, events: u64) {
        counter!(
            SUBSCRIPTION_FAILED,
            "topic" => self.topic.to_string(),
            "subscription" => self.name.to_string(),
            "error" => error
        )
        .increment(events);
    }
}
