//! The routing pipeline's configuration: `[routing]` (gridmq's own table, snake_case), the
//! namespace topics `[topics.NAME]` with their event subscriptions, and `[systemTopic]` for
//! lifecycle events (Event Grid's resource shapes, camelCase).
//!
//! ```toml
//! [[routing.routes]]
//! topic_filter = "vehicles/#"
//! topic = "telemetry"
//!
//! [routing.enrichments.static]
//! site = "plant-7"
//!
//! [topics.telemetry.eventSubscriptions.hook.destination]
//! endpointType = "WebHook"
//! endpointUrl = "http://127.0.0.1:8000/hook"
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::routing::enrich::Enrichments;
use crate::routing::filter::{Filter, FiltersConfig};

/// The `[routing]` table. Routing is on when it declares at least one route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Most events waiting for delivery across all namespace topics (an event counts once
    /// however many subscriptions still owe it). At the bound a publish that would be routed
    /// is refused: a 5.0 publisher gets PUBACK 0x97 (Quota exceeded), a 3.1.1 QoS 1/2
    /// publisher is disconnected so that it sends again, a QoS 0 message is dropped and
    /// counted in `gridmq_routing_routed_messages_total` (`result="failure"`).
    pub max_buffered_events: usize,
    /// `[[routing.routes]]`: which messages go to which namespace topic. A message matching
    /// several routes goes to each of their topics (once per topic).
    pub routes: Vec<RouteConfig>,
    /// `[routing.enrichments]`: extension attributes added to every routed event.
    pub enrichments: EnrichmentsConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_buffered_events: 100_000,
            routes: Vec::new(),
            enrichments: EnrichmentsConfig::default(),
        }
    }
}

/// One `[[routing.routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// MQTT topic filter the message's topic must match; `#` (every topic not starting with
    /// `$`) by default.
    #[serde(default = "every_topic")]
    pub topic_filter: String,
    /// The namespace topic (a `[topics.NAME]` table) the events go to.
    pub topic: String,
}

fn every_topic() -> String {
    "#".into()
}

/// `[routing.enrichments]`: Event Grid's static and dynamic routing enrichments, as maps from
/// the extension attribute name to a value (static) or one `${...}` variable (dynamic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentsConfig {
    #[serde(rename = "static")]
    pub static_: BTreeMap<String, String>,
    pub dynamic: BTreeMap<String, String>,
}

/// A `[topics.NAME]` namespace topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct TopicConfig {
    /// Days an event may wait for delivery (1–7); also the largest subscription time to live.
    pub event_retention_in_days: u32,
    /// Event Grid's `inputSchema`: `CloudEventSchemaV1_0`, the only one, when given.
    pub input_schema: Option<String>,
    /// Event Grid's `publisherType`: `Custom`, the only one, when given.
    pub publisher_type: Option<String>,
    /// `[topics.NAME.eventSubscriptions.SUB]`.
    pub event_subscriptions: BTreeMap<String, SubscriptionConfig>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            event_retention_in_days: 7,
            input_schema: None,
            publisher_type: None,
            event_subscriptions: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    /// Checks the topic's own fields (not its subscriptions); the error names the field under
    /// `path`.
    pub fn validate(&self, path: &str) -> Result<(), RoutingConfigError> {
        if !(1..=7).contains(&self.event_retention_in_days) {
            return Err(invalid(
                format!("{path}.eventRetentionInDays"),
                format!("must be 1 to 7, found {}", self.event_retention_in_days),
            ));
        }
        if let Some(schema) = &self.input_schema
            && schema != super::arm::CLOUD_EVENTS_SCHEMA
        {
            return Err(invalid(
                format!("{path}.inputSchema"),
                "namespace topics take CloudEventSchemaV1_0 only",
            ));
        }
        if let Some(publisher) = &self.publisher_type
            && publisher != "Custom"
        {
            return Err(invalid(format!("{path}.publisherType"), "must be Custom"));
        }
        Ok(())
    }

    /// Checks the topic at `path` and plans each of its subscriptions with its retention.
    pub fn plan(&self, path: &str) -> Result<TopicPlan, RoutingConfigError> {
        self.validate(path)?;
        let retention = self.retention();
        let mut subscriptions = BTreeMap::new();
        for (name, config) in &self.event_subscriptions {
            let plan =
                config.plan(&format!("{path}.eventSubscriptions.{name}"), name, retention)?;
            subscriptions.insert(name.clone(), plan);
        }
        Ok(TopicPlan { config: self.clone(), subscriptions })
    }

    /// How long an event may wait: the subscriptions' default and largest time to live.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.event_retention_in_days) * 86_400)
    }

    /// The topic's properties in ARM shape (without its subscriptions).
    pub fn to_arm(&self) -> serde_json::Value {
        serde_json::json!({
            "eventRetentionInDays": self.event_retention_in_days,
            "inputSchema": super::arm::CLOUD_EVENTS_SCHEMA,
            "publisherType": "Custom",
        })
    }
}

/// `[systemTopic]`: where lifecycle events go. Lifecycle events are produced only when it has
/// at least one subscription.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SystemTopicConfig {
    pub event_subscriptions: BTreeMap<String, SubscriptionConfig>,
}

/// An event subscription: push to a destination, or a queue for pull delivery over HTTP.
///
/// Takes Event Grid's ARM shape (`deliveryConfiguration`, `filtersConfiguration`,
/// `eventDeliverySchema`; see [`super::arm`]) or the flattened fields below, not both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionConfig {
    /// ARM shape: delivery mode, queue or push settings and destination.
    #[serde(default)]
    pub delivery_configuration: Option<super::arm::DeliveryConfiguration>,
    /// ARM shape: included event types and advanced filters.
    #[serde(default)]
    pub filters_configuration: Option<super::arm::FiltersConfiguration>,
    /// ARM shape: `CloudEventSchemaV1_0`, the only one, when given.
    #[serde(default)]
    pub event_delivery_schema: Option<String>,
    /// `Push` (default: events go to `destination`) or `Queue` (consumers receive them over
    /// the data-plane HTTP API).
    #[serde(default)]
    pub delivery_mode: Option<DeliveryMode>,
    /// Queue subscriptions: seconds a received event stays locked to its consumer (Event Grid:
    /// 60–300, default 60; gridmq also takes 1–59).
    pub receive_lock_duration_in_seconds: Option<u32>,
    /// Most delivery attempts per event (1–10 for webhooks, 1–30 for custom topics); then the
    /// event is dead-lettered.
    pub max_delivery_count: Option<u32>,
    /// How long an event may wait for delivery, as an ISO 8601 duration (`PT1M` to the topic's
    /// retention); then it is dead-lettered. Default: the topic's retention (one day for custom
    /// topics).
    pub event_time_to_live: Option<String>,
    /// Replaces the retry schedule with these delays in seconds (the last one repeats). For
    /// tests and experiments; Event Grid's schedule applies without it.
    pub retry_delays_seconds: Option<Vec<f64>>,
    /// Where events are pushed (push subscriptions only).
    pub destination: Option<Destination>,
    /// Which events this subscription takes.
    #[serde(default)]
    pub filters: FiltersConfig,
}

/// How a subscription's events leave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DeliveryMode {
    #[default]
    Push,
    Queue,
}

/// A push destination, by Event Grid's `endpointType`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "endpointType")]
pub enum Destination {
    WebHook(sinks::WebhookConfig),
    CustomTopic(sinks::CustomTopicConfig),
    EventHub(sinks::EventHubsConfig),
}

/// The routing part of the config file, checked together because routes name topics.
pub struct RoutingSection<'a> {
    pub routing: &'a RoutingConfig,
    pub topics: &'a BTreeMap<String, TopicConfig>,
    pub system_topic: Option<&'a SystemTopicConfig>,
    /// Whether topics can be created at run time (the management API is on): then a route may
    /// name a topic the file does not declare.
    pub runtime_topics: bool,
}

/// An invalid routing field, named by its path in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct RoutingConfigError {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RoutingConfigError {
    RoutingConfigError { field: field.into(), problem: problem.into() }
}

/// The routing section checked and turned into what the router runs with. Checking the
/// config produces it ([`RoutingSection::plan`]); the router is built from it and a reload
/// applies it, so nothing is checked or planned a second way.
#[derive(Clone)]
pub struct RoutingPlan {
    /// See [`RoutingConfig::max_buffered_events`].
    pub max_buffered_events: usize,
    /// MQTT topic filter and namespace topic of each route, in the file's order.
    pub routes: Vec<(String, Arc<str>)>,
    pub enrichments: Enrichments,
    /// The namespace topics the file declares.
    pub topics: BTreeMap<String, TopicPlan>,
    /// The system topic's subscriptions (lifecycle events); empty without any.
    pub system: BTreeMap<String, SubscriptionPlan>,
    /// See [`RoutingSection::runtime_topics`].
    pub runtime_topics: bool,
}

/// A namespace topic with its subscriptions planned.
#[derive(Clone)]
pub struct TopicPlan {
    /// The topic as configured, subscriptions included: what a reload compares and the
    /// management API shows.
    pub config: TopicConfig,
    pub subscriptions: BTreeMap<String, SubscriptionPlan>,
}

impl RoutingSection<'_> {
    /// Checks every routing field and plans the topics and subscriptions; the error names the
    /// first bad field.
    pub fn plan(&self) -> Result<RoutingPlan, RoutingConfigError> {
        if self.routing.max_buffered_events == 0 {
            return Err(invalid("routing.max_buffered_events", "must be at least 1"));
        }
        for (index, route) in self.routing.routes.iter().enumerate() {
            if !crate::mqtt::topic::valid_topic_filter(&route.topic_filter)
                || route.topic_filter.starts_with("$share/")
            {
                return Err(invalid(
                    format!("routing.routes[{index}].topic_filter"),
                    format!("{:?} is not a valid MQTT topic filter", route.topic_filter),
                ));
            }
            if !self.topics.contains_key(&route.topic) && !self.runtime_topics {
                return Err(invalid(
                    format!("routing.routes[{index}].topic"),
                    format!(
                        "no namespace topic {:?} is declared ([topics.{}])",
                        route.topic, route.topic
                    ),
                ));
            }
        }
        let enrichments = Enrichments::parse(
            &self.routing.enrichments.static_,
            &self.routing.enrichments.dynamic,
        )
        .map_err(|error| invalid(error.field, error.problem.to_string()))?;
        let mut topics = BTreeMap::new();
        for (name, topic) in self.topics {
            let path = format!("topics.{name}");
            crate::access::model::check_resource_name(name).map_err(|p| invalid(&path, p))?;
            topics.insert(name.clone(), topic.plan(&path)?);
        }
        let mut system = BTreeMap::new();
        for (sub, config) in self.system_topic.iter().flat_map(|s| &s.event_subscriptions) {
            let path = format!("systemTopic.eventSubscriptions.{sub}");
            system.insert(sub.clone(), config.plan(&path, sub, SYSTEM_TOPIC_RETENTION)?);
        }
        let routes = self
            .routing
            .routes
            .iter()
            .map(|route| (route.topic_filter.clone(), Arc::<str>::from(route.topic.as_str())))
            .collect();
        Ok(RoutingPlan {
            max_buffered_events: self.routing.max_buffered_events,
            routes,
            enrichments,
            topics,
            system,
            runtime_topics: self.runtime_topics,
        })
    }
}

/// How long the system topic keeps lifecycle events: Event Grid's longest retention.
pub const SYSTEM_TOPIC_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// A subscription's settings checked and turned into what the dispatcher runs with.
#[derive(Debug, Clone)]
pub struct SubscriptionPlan {
    /// Where the subscription is configured (`topics.T.eventSubscriptions.S`, `properties`):
    /// what errors found when its sink is built are named under.
    pub path: String,
    /// Where events are pushed; `None` for a queue subscription.
    pub destination: Option<Destination>,
    pub policy: sinks::RetryPolicy,
    pub filter: Filter,
    /// The filters as configured (flattened), for the management API.
    pub filters: FiltersConfig,
    /// Queue subscriptions: the receive lock.
    pub lock_duration: Duration,
}

impl SubscriptionConfig {
    /// Validates the subscription at `path` and derives its retry policy and filter.
    pub fn plan(
        &self,
        path: &str,
        name: &str,
        retention: Duration,
    ) -> Result<SubscriptionPlan, RoutingConfigError> {
        crate::access::model::check_resource_name(name).map_err(|p| invalid(path, p))?;
        let (flat, paths) = self.resolved(path)?;
        flat.plan_flat(path, &paths, retention)
    }

    /// [`SubscriptionConfig::plan`] of a resolved (flattened) subscription.
    fn plan_flat(
        &self,
        path: &str,
        paths: &super::arm::FieldPaths,
        retention: Duration,
    ) -> Result<SubscriptionPlan, RoutingConfigError> {
        let subscription_path = path;
        let path = paths.delivery.as_str();
        let destination_path = paths.destination.as_str();
        let lock = self.receive_lock_duration_in_seconds;
        match (self.delivery_mode.unwrap_or_default(), &self.destination, lock) {
            (DeliveryMode::Push, None, _) => {
                return Err(invalid(
                    destination_path,
                    "a push subscription needs a destination (or deliveryMode = \"Queue\")",
                ));
            }
            (DeliveryMode::Queue, Some(_), _) => {
                return Err(invalid(
                    destination_path,
                    "a queue subscription has no destination: consumers receive over HTTP",
                ));
            }
            (DeliveryMode::Push, Some(_), Some(_)) => {
                return Err(invalid(
                    format!("{path}.receiveLockDurationInSeconds"),
                    "only queue subscriptions have a receive lock",
                ));
            }
            (DeliveryMode::Queue, None, Some(secs)) if !(1..=300).contains(&secs) => {
                return Err(invalid(
                    format!("{path}.receiveLockDurationInSeconds"),
                    format!("must be 1 to 300, found {secs}"),
                ));
            }
            _ => {}
        }
        let destination_problem =
            |p: sinks::ConfigProblem| invalid(format!("{destination_path}.{}", p.field), p.problem);
        let schedule = match &self.destination {
            None => sinks::Schedule::Namespace,
            Some(Destination::WebHook(webhook)) => {
                webhook.validate().map_err(destination_problem)?;
                sinks::Schedule::Namespace
            }
            Some(Destination::EventHub(hub)) => {
                hub.validate().map_err(destination_problem)?;
                sinks::Schedule::Namespace
            }
            Some(Destination::CustomTopic(topic)) => {
                topic.validate().map_err(destination_problem)?;
                sinks::Schedule::CustomTopic
            }
        };
        // Event Grid's defaults and bounds come from the sinks' retry policy, the one place
        // that knows them.
        let defaults = sinks::RetryPolicy::for_subscription(schedule, retention);
        let max_count = schedule.max_attempts();
        let default_ttl = defaults.time_to_live;
        let max_attempts = self.max_delivery_count.unwrap_or(defaults.max_attempts);
        if !(1..=max_count).contains(&max_attempts) {
            return Err(invalid(
                format!("{path}.maxDeliveryCount"),
                format!("must be 1 to {max_count}, found {max_attempts}"),
            ));
        }
        let time_to_live = match &self.event_time_to_live {
            None => default_ttl,
            Some(text) => {
                let field = format!("{path}.eventTimeToLive");
                let ttl =
                    parse_iso8601_duration(text).map_err(|p| invalid(&field, p.to_string()))?;
                if ttl < Duration::from_secs(60) || ttl > retention {
                    return Err(invalid(
                        field,
                        format!(
                            "must be at least PT1M and at most the topic's retention ({} days), found {text}",
                            retention.as_secs() / 86_400
                        ),
                    ));
                }
                ttl
            }
        };
        let delays = match &self.retry_delays_seconds {
            None => None,
            Some(delays) => {
                let field = format!("{}.retryDelaysSeconds", paths.base);
                if delays.is_empty() {
                    return Err(invalid(field, "must hold at least one delay"));
                }
                let mut out = Vec::with_capacity(delays.len());
                for delay in delays {
                    if !delay.is_finite() || *delay < 0.0 || *delay > 86_400.0 {
                        return Err(invalid(
                            &field,
                            format!("delays must be 0 to 86400 seconds, found {delay}"),
                        ));
                    }
                    out.push(Duration::from_secs_f64(*delay));
                }
                Some(out)
            }
        };
        let filter = self.filters.compile(&paths.filters).map_err(|error| {
            invalid(paths.filter_field(&error.field), error.problem.to_string())
        })?;
        let policy = sinks::RetryPolicy { max_attempts, time_to_live, delays, ..defaults };
        let lock_duration = Duration::from_secs(u64::from(lock.unwrap_or(60)));
        Ok(SubscriptionPlan {
            path: subscription_path.to_owned(),
            destination: self.destination.clone(),
            policy,
            filter,
            filters: self.filters.clone(),
            lock_duration,
        })
    }
}

/// Text that is not an ISO 8601 duration of the kind Event Grid takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 8601 duration such as P7D, PT1H or PT30S")]
pub struct NotADuration(pub String);

/// Parses the ISO 8601 durations Event Grid takes (`P7D`, `PT1M`, `P1DT12H`, `PT30S`); years,
/// months and weeks are refused because their length is not fixed.
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, NotADuration> {
    let bad = || NotADuration(text.to_owned());
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    if rest.is_empty() {
        return Err(bad());
    }
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut add = |part: &str, units: &[(char, f64)]| -> Result<(), NotADuration> {
        let mut number = String::new();
        let mut last_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let position = units.iter().position(|(unit, _)| *unit == c).ok_or_else(bad)?;
            if position < last_unit || number.is_empty() {
                return Err(bad());
            }
            last_unit = position + 1;
            let value: f64 = number.parse().map_err(|_| bad())?;
            total += value * units[position].1;
            number.clear();
        }
        if number.is_empty() { Ok(()) } else { Err(bad()) }
    };
    add(date, &[('D', 86_400.0)])?;
    if let Some(time) = time {
        add(time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !total.is_finite() || total > 1e10 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations() {
        let check = |text: &str, secs: Option<u64>| {
            assert_eq!(parse_iso8601_duration(text).ok().map(|d| d.as_secs()), secs, "{text}");
        };
        check("P7D", Some(7 * 86_400));
        check("PT1M", Some(60));
        check("PT30S", Some(30));
        check("P1DT12H", Some(86_400 + 12 * 3_600));
        check("PT1H30M", Some(5_400));
        check("P1Y", None);
        check("P", None);
        check("PT", None);
        check("7D", None);
        check("PT1S1M", None);
        check("P1W", None);
    }

    #[test]
    fn the_plan_carries_event_grids_retry_defaults() {
        let topics: BTreeMap<String, TopicConfig> = toml::from_str(
            r#"
            [orders]
            eventRetentionInDays = 3
            [orders.eventSubscriptions.hook.destination]
            endpointType = "WebHook"
            endpointUrl = "http://127.0.0.1:1/hook"
            [orders.eventSubscriptions.forward.destination]
            endpointType = "CustomTopic"
            endpoint = "http://127.0.0.1:1/api/events"
            sasKey = "a2V5"
            [orders.eventSubscriptions.pull]
            deliveryMode = "Queue"
            maxDeliveryCount = 4
            "#,
        )
        .expect("toml");
        let routing = RoutingConfig::default();
        let section = RoutingSection {
            routing: &routing,
            topics: &topics,
            system_topic: None,
            runtime_topics: false,
        };
        let plan = section.plan().expect("plan");
        let subs = &plan.topics["orders"].subscriptions;
        let policy = |name: &str| (subs[name].policy.max_attempts, subs[name].policy.time_to_live);
        // A namespace subscription may retry as long as its topic keeps the event; a custom
        // topic's for at most a day.
        assert_eq!(policy("hook"), (10, Duration::from_secs(3 * 86_400)));
        assert_eq!(policy("forward"), (30, Duration::from_secs(86_400)));
        assert_eq!(policy("pull"), (4, Duration::from_secs(3 * 86_400)));
        assert_eq!(subs["pull"].lock_duration, Duration::from_secs(60));
        assert_eq!(subs["hook"].path, "topics.orders.eventSubscriptions.hook");
        assert!(plan.system.is_empty() && plan.routes.is_empty());

        let mut too_many = topics.clone();
        let pull = too_many.get_mut("orders").and_then(|t| t.event_subscriptions.get_mut("pull"));
        pull.expect("pull").max_delivery_count = Some(11);
        let section = RoutingSection { topics: &too_many, ..section };
        let error = section.plan().err().expect("refused").to_string();
        assert_eq!(
            error,
            "topics.orders.eventSubscriptions.pull.maxDeliveryCount: must be 1 to 10, found 11"
        );
    }
}
