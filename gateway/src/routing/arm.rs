//! Event Grid's ARM shapes of an event subscription (`deliveryConfiguration`,
//! `filtersConfiguration`, `eventDeliverySchema`), and the one mapping between them and the
//! flattened shape gridmq's config has always taken.
//!
//! Both shapes are fields of [`SubscriptionConfig`], so a `[topics.X.eventSubscriptions.Y]`
//! table and a management API body take either; [`SubscriptionConfig::resolved`] turns the ARM
//! fields into the flattened ones before anything is planned, and [`to_arm`] renders a planned
//! subscription back in ARM shape for the management API. `docs/arm-shapes.md` has the table.
//!
//! Destinations keep gridmq's properties under ARM's `{"endpointType", "properties"}`: ARM
//! names an Event Hub or a namespace topic by its Azure resource id, which gridmq cannot
//! resolve to an endpoint and credentials, so `EventHub` takes the Event Hubs sink's fields and
//! an Event Grid topic to forward to is `CustomTopic` with the custom topic sink's fields.

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{DeliveryMode, Destination, SubscriptionConfig, SubscriptionPlan};
use super::filter::{AdvancedFilter, FiltersConfig};

/// The only event delivery schema of namespace topics.
pub const CLOUD_EVENTS_SCHEMA: &str = "CloudEventSchemaV1_0";

/// `deliveryConfiguration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliveryConfiguration {
    /// `Queue` or `Push`; when absent, `Queue` if only `queue` is given, else `Push`.
    pub delivery_mode: Option<DeliveryMode>,
    pub queue: Option<QueueInfo>,
    pub push: Option<PushInfo>,
}

/// `deliveryConfiguration.queue`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueInfo {
    pub receive_lock_duration_in_seconds: Option<u32>,
    pub max_delivery_count: Option<u32>,
    pub event_time_to_live: Option<String>,
}

/// `deliveryConfiguration.push`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PushInfo {
    pub max_delivery_count: Option<u32>,
    pub event_time_to_live: Option<String>,
    pub destination: Option<ArmDestination>,
}

/// A push destination in ARM's shape: `{"endpointType": "WebHook", "properties": {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "endpointType", content = "properties")]
pub enum ArmDestination {
    WebHook(sinks::WebhookConfig),
    CustomTopic(sinks::CustomTopicConfig),
    EventHub(sinks::EventHubsConfig),
}

/// `filtersConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FiltersConfiguration {
    pub included_event_types: Option<Vec<String>>,
    #[serde(default)]
    pub filters: Vec<AdvancedFilter>,
}

/// Where the fields of a resolved subscription came from, so errors name what the user wrote.
#[derive(Debug, Clone)]
pub struct FieldPaths {
    /// The subscription itself (`retryDelaysSeconds` is named under it in either shape).
    pub base: String,
    /// Prefix of `maxDeliveryCount`, `eventTimeToLive` and `receiveLockDurationInSeconds`.
    pub delivery: String,
    /// The destination object (its fields are named under it).
    pub destination: String,
    /// Prefix of the filter fields.
    pub filters: String,
    /// Whether the filters came as `filtersConfiguration`, whose advanced filters are `filters`.
    pub arm_filters: bool,
}

impl FieldPaths {
    /// A filter error's field as the user wrote it: `filtersConfiguration.filters[0]` for
    /// what the flattened shape calls `filters.advancedFilters[0]`.
    pub fn filter_field(&self, field: &str) -> String {
        let flattened = format!("{}.advancedFilters", self.filters);
        match field.strip_prefix(&flattened) {
            Some(rest) if self.arm_filters => format!("{}.filters{rest}", self.filters),
            _ => field.to_string(),
        }
    }
}

fn invalid(field: String, problem: &str) -> super::config::RoutingConfigError {
    super::config::RoutingConfigError { field, problem: problem.into() }
}

impl SubscriptionConfig {
    /// The flattened equivalent of this subscription, with where each part came from. The ARM
    /// fields and their flattened counterparts cannot be mixed; the error names the field.
    pub fn resolved(
        &self,
        path: &str,
    ) -> Result<(SubscriptionConfig, FieldPaths), super::config::RoutingConfigError> {
        let mut flat = self.clone();
        let mut paths = FieldPaths {
            base: path.to_string(),
            arm_filters: false,
            delivery: path.to_string(),
            destination: format!("{path}.destination"),
            filters: format!("{path}.filters"),
        };
        if let Some(schema) = flat.event_delivery_schema.take()
            && schema != CLOUD_EVENTS_SCHEMA
        {
            return Err(invalid(
                format!("{path}.eventDeliverySchema"),
                "namespace topics deliver CloudEventSchemaV1_0 only",
            ));
        }
        if let Some(delivery) = flat.delivery_configuration.take() {
            let flattened = [
                ("deliveryMode", flat.delivery_mode.is_some()),
                ("receiveLockDurationInSeconds", flat.receive_lock_duration_in_seconds.is_some()),
                ("maxDeliveryCount", flat.max_delivery_count.is_some()),
                ("eventTimeToLive", flat.event_time_to_live.is_some()),
                ("destination", flat.destination.is_some()),
            ];
            if let Some((field, _)) = flattened.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("{path}.{field}"),
                    "give deliveryConfiguration or the flattened fields, not both",
                ));
            }
            let here = format!("{path}.deliveryConfiguration");
            let mode = delivery.delivery_mode.unwrap_or(match (&delivery.queue, &delivery.push) {
                (Some(_), None) => DeliveryMode::Queue,
                _ => DeliveryMode::Push,
            });
            flat.delivery_mode = Some(mode);
            match mode {
                DeliveryMode::Queue => {
                    if delivery.push.is_some() {
                        return Err(invalid(
                            format!("{here}.push"),
                            "a Queue subscription takes `queue`, not `push`",
                        ));
                    }
                    let queue = delivery.queue.unwrap_or_default();
                    flat.receive_lock_duration_in_seconds = queue.receive_lock_duration_in_seconds;
                    flat.max_delivery_count = queue.max_delivery_count;
                    flat.event_time_to_live = queue.event_time_to_live;
                    paths.delivery = format!("{here}.queue");
                }
                DeliveryMode::Push => {
                    if delivery.queue.is_some() {
                        return Err(invalid(
                            format!("{here}.queue"),
                            "a Push subscription takes `push`, not `queue`",
                        ));
                    }
                    let push = delivery.push.unwrap_or_default();
                    flat.max_delivery_count = push.max_delivery_count;
                    flat.event_time_to_live = push.event_time_to_live;
                    flat.destination = push.destination.map(|d| match d {
                        ArmDestination::WebHook(w) => Destination::WebHook(w),
                        ArmDestination::CustomTopic(c) => Destination::CustomTopic(c),
                        ArmDestination::EventHub(e) => Destination::EventHub(e),
                    });
                    paths.delivery = format!("{here}.push");
                    paths.destination = format!("{here}.push.destination.properties");
                }
            }
        }
        if let Some(filters) = flat.filters_configuration.take() {
            if flat.filters != FiltersConfig::default() {
                return Err(invalid(
                    format!("{path}.filters"),
                    "give filtersConfiguration or filters, not both",
                ));
            }
            flat.filters = FiltersConfig {
                included_event_types: filters.included_event_types,
                advanced_filters: filters.filters,
                ..FiltersConfig::default()
            };
            paths.filters = format!("{path}.filtersConfiguration");
            paths.arm_filters = true;
        }
        Ok((flat, paths))
    }
}

/// A planned subscription's properties in ARM shape, as the management API answers them: the
/// effective values (defaults filled in), no secrets, and none of gridmq's own extensions
/// (subject filters, retry delays, sink tuning beyond batching).
pub fn to_arm(plan: &SubscriptionPlan) -> Value {
    let max_delivery_count = plan.policy.max_attempts;
    let time_to_live = iso8601(plan.policy.time_to_live);
    let delivery = match &plan.destination {
        None => json!({
            "deliveryMode": "Queue",
            "queue": {
                "receiveLockDurationInSeconds": plan.lock_duration.as_secs(),
                "maxDeliveryCount": max_delivery_count,
                "eventTimeToLive": time_to_live,
            },
        }),
        Some(destination) => json!({
            "deliveryMode": "Push",
            "push": {
                "maxDeliveryCount": max_delivery_count,
                "eventTimeToLive": time_to_live,
                "destination": destination_to_arm(destination),
            },
        }),
    };
    let mut filters = json!({
        "filters": serde_json::to_value(&plan.filters.advanced_filters).unwrap_or(Value::Null),
    });
    if let Some(types) = &plan.filters.included_event_types {
        filters["includedEventTypes"] = json!(types);
    }
    json!({
        "deliveryConfiguration": delivery,
        "eventDeliverySchema": CLOUD_EVENTS_SCHEMA,
        "filtersConfiguration": filters,
    })
}

fn destination_to_arm(destination: &Destination) -> Value {
    match destination {
        Destination::WebHook(webhook) => json!({
            "endpointType": "WebHook",
            "properties": {
                "endpointUrl": webhook.endpoint_url,
                "maxEventsPerBatch": webhook.max_events_per_batch,
                "preferredBatchSizeInKilobytes": webhook.preferred_batch_size_in_kilobytes,
            },
        }),
        Destination::CustomTopic(topic) => json!({
            "endpointType": "CustomTopic",
            "properties": {
                "endpoint": topic.endpoint,
                "maxEventsPerBatch": topic.max_events_per_batch,
                "preferredBatchSizeInKilobytes": topic.preferred_batch_size_in_kilobytes,
            },
        }),
        Destination::EventHub(hub) => {
            let mut properties = serde_json::Map::new();
            if let Some(namespace) = &hub.fully_qualified_namespace {
                properties.insert("fullyQualifiedNamespace".into(), json!(namespace));
            }
            if let Some(name) = &hub.event_hub_name {
                properties.insert("eventHubName".into(), json!(name));
            }
            json!({ "endpointType": "EventHub", "properties": properties })
        }
    }
}

/// A duration as ISO 8601 in days, hours, minutes and seconds (`P7D`, `PT1H30M`).
pub fn iso8601(duration: std::time::Duration) -> String {
    let mut secs = duration.as_secs();
    let days = secs / 86_400;
    secs %= 86_400;
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if secs > 0 || days == 0 {
        out.push('T');
        let (hours, minutes, seconds) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&format!("{seconds}S"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_and_flattened_shapes_plan_alike() {
        let arm: SubscriptionConfig = serde_json::from_value(json!({
            "deliveryConfiguration": {
                "deliveryMode": "Queue",
                "queue": {"receiveLockDurationInSeconds": 90, "maxDeliveryCount": 4,
                          "eventTimeToLive": "P1D"},
            },
            "eventDeliverySchema": "CloudEventSchemaV1_0",
            "filtersConfiguration": {"includedEventTypes": ["a"],
                "filters": [{"operatorType": "StringIn", "key": "subject", "values": ["x"]}]},
        }))
        .unwrap();
        let flat: SubscriptionConfig = serde_json::from_value(json!({
            "deliveryMode": "Queue", "receiveLockDurationInSeconds": 90, "maxDeliveryCount": 4,
            "eventTimeToLive": "P1D",
            "filters": {"includedEventTypes": ["a"],
                "advancedFilters": [{"operatorType": "StringIn", "key": "subject", "values": ["x"]}]},
        }))
        .unwrap();
        let retention = std::time::Duration::from_secs(7 * 86_400);
        let (arm_flat, _) = arm.resolved("s").unwrap();
        assert_eq!(arm_flat, flat.resolved("s").unwrap().0);
        let plan = arm.plan("s", "sub", retention).unwrap();
        let rendered = to_arm(&plan);
        assert_eq!(rendered["deliveryConfiguration"]["queue"]["eventTimeToLive"], "P1D");
        assert_eq!(rendered["deliveryConfiguration"]["queue"]["receiveLockDurationInSeconds"], 90);
        // What the API answers can be sent back.
        let back: SubscriptionConfig = serde_json::from_value(rendered).unwrap();
        assert_eq!(back.resolved("s").unwrap().0, arm_flat);
    }

    #[test]
    fn mixing_shapes_names_the_field() {
        let mixed: SubscriptionConfig = serde_json::from_value(json!({
            "maxDeliveryCount": 3,
            "deliveryConfiguration": {"deliveryMode": "Queue"},
        }))
        .unwrap();
        let error = mixed.resolved("topics.t.eventSubscriptions.s").err().unwrap();
        assert_eq!(error.field, "topics.t.eventSubscriptions.s.maxDeliveryCount");
        let push: SubscriptionConfig = serde_json::from_value(json!({
            "deliveryConfiguration": {"deliveryMode": "Push", "push": {"maxDeliveryCount": 99,
                "destination": {"endpointType": "WebHook",
                                "properties": {"endpointUrl": "http://127.0.0.1:1/h"}}}},
        }))
        .unwrap();
        let error = push.plan("p", "push", std::time::Duration::from_secs(86_400)).err().unwrap();
        assert_eq!(error.field, "p.deliveryConfiguration.push.maxDeliveryCount");
        let filters: SubscriptionConfig = serde_json::from_value(json!({
            "deliveryMode": "Queue",
            "filtersConfiguration": {"filters": [{"operatorType": "NumberIn", "key": "k"}]},
        }))
        .unwrap();
        let error = filters.plan("q", "queue", std::time::Duration::from_secs(86_400)).err();
        assert!(error.unwrap().field.starts_with("q.filtersConfiguration.filters[0]"));
    }

    #[test]
    fn durations_render_as_iso8601() {
        use std::time::Duration;
        assert_eq!(iso8601(Duration::from_secs(7 * 86_400)), "P7D");
        assert_eq!(iso8601(Duration::from_secs(5_400)), "PT1H30M");
        assert_eq!(iso8601(Duration::from_secs(86_430)), "P1DT30S");
        assert_eq!(iso8601(Duration::ZERO), "PT0S");
    }
}
