//! MQTT limits and session policy, as the `[mqtt]` table of the config file.

use serde::Deserialize;

/// What happens when a session's queue reaches `max_queued_messages` or `max_queued_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueFull {
    /// The oldest queued message is dropped to make room, and the
    /// `gridmq_mqtt_dropped_messages_total{reason="queue_full"}` counter goes up.
    DropOldest,
    /// The session is discarded, as Event Grid's SessionOverflow does: a connected client gets
    /// DISCONNECT 0x97 (quota exceeded) and its queued messages are gone.
    EndSession,
}

/// An invalid field of the `[mqtt]` table, e.g. `mqtt.max_inflight: must be at least 1`.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct MqttConfigError {
    pub field: &'static str,
    pub problem: String,
}

/// The `[mqtt]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Largest packet accepted from a client, in bytes; a larger one ends the connection with
    /// DISCONNECT 0x95. Announced in CONNACK as Maximum Packet Size.
    pub max_packet_size: u32,
    /// Longest keep-alive granted, in seconds (Event Grid: 1,160). A 5.0 client asking for more,
    /// or for 0, is told this value as Server Keep Alive; a 3.1.1 client is held to it.
    pub max_keep_alive: u16,
    /// QoS 1/2 publishes a client may have unacknowledged towards the broker; one more ends
    /// the connection with DISCONNECT 0x93. Announced in CONNACK.
    pub receive_maximum: u16,
    /// Topic aliases a 5.0 client may use towards the broker (0 turns them off).
    pub topic_alias_maximum: u16,
    /// Longest session expiry granted, in seconds; a larger request is capped and the cap is
    /// returned in CONNACK.
    pub max_session_expiry: u32,
    /// Messages a session may hold beyond its in-flight window (offline, or a slow reader).
    pub max_queued_messages: usize,
    /// Payload bytes a session may hold queued.
    pub max_queued_bytes: usize,
    /// What happens when either queue bound is reached.
    pub queue_full: QueueFull,
    /// Longest pause, in milliseconds, imposed on a publisher whose message (any QoS) went to
    /// a connected subscriber whose queue reached `publisher_pause_queue`: the publisher's next
    /// packets are not read until the subscriber's queue is down to half of that, so a slow
    /// subscriber slows its publishers
    /// instead of losing messages. A subscriber that does not drain during a whole pause is
    /// marked stalled: publishers stop waiting for it until it drains again, and its queue
    /// bound and `queue_full` apply, so a stuck subscriber costs each publisher at most one
    /// pause. 0 turns pausing off.
    pub max_publisher_pause_ms: u64,
    /// Queued messages at which a connected subscriber holds its publishers back (see
    /// `max_publisher_pause_ms`); half of `max_queued_messages` or `max_queued_bytes` does so
    /// too, whichever comes first. Low enough that a fan-out to many slow subscribers keeps
    /// little queued (each queued delivery holds its message), high enough that a subscriber
    /// always has a full write batch waiting.
    pub publisher_pause_queue: usize,
    /// Most QoS 1/2 messages in flight towards one client, whatever its Receive Maximum says.
    pub max_inflight: u16,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Milliseconds without traffic after which a plain TCP connection is parked: it gives up
    /// its task and its timer, and one shared loop watches its socket and keep-alive until
    /// something arrives for it (ARCHITECTURE.md, "Parked connections"). A connection with
    /// nothing to do right after CONNACK parks at once. 0 turns parking off.
    pub park_after_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 1024 * 1024,
            max_keep_alive: 1160,
            receive_maximum: 100,
            topic_alias_maximum: 10,
            max_session_expiry: 86_400,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            queue_full: QueueFull::DropOldest,
            max_inflight: 100,
            max_publisher_pause_ms: 1000,
            publisher_pause_queue: 64,
            connect_timeout_secs: 10,
            park_after_ms: 10_000,
        }
    }
}

impl MqttConfig {
    pub(crate) fn validate(&self) -> Result<(), MqttConfigError> {
        let invalid = |field, problem: &str| MqttConfigError { field, problem: problem.into() };
        if self.max_packet_size < 64 {
            return Err(invalid("mqtt.max_packet_size", "must be at least 64 bytes"));
        }
        if self.max_packet_size > 268_435_460 {
            return Err(invalid("mqtt.max_packet_size", "must be at most 268435460 bytes"));
        }
        if self.max_keep_alive == 0 {
            return Err(invalid("mqtt.max_keep_alive", "must be at least 1 second"));
        }
        if self.receive_maximum == 0 {
            return Err(invalid("mqtt.receive_maximum", "must be at least 1"));
        }
        if self.max_inflight == 0 {
            return Err(invalid("mqtt.max_inflight", "must be at least 1"));
        }
        if self.max_queued_messages == 0 {
            return Err(invalid("mqtt.max_queued_messages", "must be at least 1"));
        }
        if self.publisher_pause_queue == 0 {
            return Err(invalid("mqtt.publisher_pause_queue", "must be at least 1"));
        }
        if self.connect_timeout_secs == 0 {
            return Err(invalid("mqtt.connect_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}
