//! Events → Event Hubs messages: each event is one AMQP message in the batch envelope, its body
//! the CloudEvent in the JSON format (structured mode), with Event Grid's application
//! properties and the subscription's delivery properties.
//!
//! Every message carries `aeg-subscription-name`, `aeg-delivery-count` (attempts made before
//! this one: 0 on the first delivery), `aeg-output-event-id` (the event's id),
//! `aeg-compatibility-mode-enabled` (`false`) and `aeg-metadata-version` (`1`), all strings
//! as the webhook headers are. Unlike a webhook request, where one set of headers serves the
//! whole batch, dynamic properties are read from each event. The AMQP `message-id` is the
//! event's id, so a consumer can drop duplicates of a redelivered batch.

use azure_messaging_eventhubs::models::EventData;

use crate::delivery_property::DeliveryProperty;
use crate::event::CloudEvent;
use crate::http::STRUCTURED;
use crate::sink::Delivery;

/// Bytes an event's message takes beyond its body and properties: the message and property
/// section headers, `message-id`, `content-type`, and the data section that wraps it in the
/// envelope. Generous, so estimates err on the side of smaller batches.
const MESSAGE_OVERHEAD: usize = 160;

/// Bytes an application property takes beyond its name and value.
const PROPERTY_OVERHEAD: usize = 8;

/// Bytes the envelope takes beyond its messages (annotations, partition key, headers).
pub(super) const ENVELOPE_OVERHEAD: usize = 512;

/// What every message needs besides its event.
pub(super) struct Settings<'a> {
    pub subscription_name: &'a str,
    /// The delivery properties that become application properties (not `PartitionKey`).
    pub properties: &'a [DeliveryProperty],
}

/// The message for one delivery.
pub(super) fn event_data(settings: &Settings<'_>, delivery: &Delivery<'_>) -> EventData {
    let event = delivery.event;
    let attempts_before = delivery.delivery_count.saturating_sub(1);
    let mut builder = EventData::builder()
        .with_body(event.to_json_bytes())
        .with_content_type(STRUCTURED.to_owned())
        .with_message_id(event.id.clone());
    for (name, value) in properties(settings, event) {
        builder = builder.add_property(name, value);
    }
    builder.add_property("aeg-delivery-count".to_owned(), attempts_before.to_string()).build()
}

/// The partition key for `event`: the `PartitionKey` property's value, none when there is no
/// such property or a dynamic one finds nothing.
pub(super) fn partition_key(
    property: Option<&DeliveryProperty>,
    event: &CloudEvent,
) -> Option<String> {
    property.and_then(|property| property.value_for(event))
}

/// A generous estimate of the bytes one delivery adds to a batch.
pub(super) fn estimated_size(settings: &Settings<'_>, delivery: &Delivery<'_>) -> usize {
    let properties: usize = properties(settings, delivery.event)
        .map(|(name, value)| name.len() + value.len() + PROPERTY_OVERHEAD)
        .sum();
    // `aeg-delivery-count` and its value.
    let count = "aeg-delivery-count".len() + 10 + PROPERTY_OVERHEAD;
    delivery.event.to_json_bytes().len() + properties + count + MESSAGE_OVERHEAD
}

/// The application properties of `event`'s message, but `aeg-delivery-count`.
fn properties<'s>(
    settings: &'s Settings<'_>,
    event: &'s CloudEvent,
) -> impl Iterator<Item = (String, String)> + 's {
    let fixed = [
        ("aeg-subscription-name", settings.subscription_name.to_owned()),
        ("aeg-output-event-id", event.id.clone()),
        ("aeg-compatibility-mode-enabled", "false".to_owned()),
        ("aeg-metadata-version", "1".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value));
    let custom = settings
        .properties
        .iter()
        .filter_map(move |property| Some((property.name().to_owned(), property.value_for(event)?)));
    fixed.chain(custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::event;

    #[test]
    fn body_properties_and_id() {
        let properties = [
            DeliveryProperty::Static { name: "site".into(), value: "p7".into(), is_secret: true },
            DeliveryProperty::Dynamic {
                name: "vehicle".into(),
                source_field: "data.vehicle.id".into(),
            },
            DeliveryProperty::Dynamic {
                name: "absent".into(),
                source_field: "data.nothing".into(),
            },
        ];
        let settings = Settings { subscription_name: "orders-sub", properties: &properties };
        let event = event("e1");
        let data = event_data(&settings, &Delivery { event: &event, delivery_count: 3 });
        assert_eq!(data.body(), Some(event.to_json_bytes().as_slice()));
        assert_eq!(data.content_type(), Some("application/cloudevents+json; charset=utf-8"));
        assert_eq!(
            data.message_id().map(|id| format!("{id:?}")),
            Some(format!("{:?}", azure_core_amqp::message::AmqpMessageId::from("e1")))
        );
        let mut found: Vec<(String, String)> = data
            .properties()
            .unwrap()
            .iter()
            .map(|(name, value)| (name.clone(), format!("{value:?}")))
            .collect();
        found.sort();
        let text = |s: &str| format!("{:?}", azure_core_amqp::AmqpSimpleValue::from(s.to_owned()));
        let mut expected = vec![
            ("aeg-compatibility-mode-enabled".to_owned(), text("false")),
            ("aeg-delivery-count".to_owned(), text("2")),
            ("aeg-metadata-version".to_owned(), text("1")),
            ("aeg-output-event-id".to_owned(), text("e1")),
            ("aeg-subscription-name".to_owned(), text("orders-sub")),
            ("site".to_owned(), text("p7")),
            ("vehicle".to_owned(), text("v7")),
        ];
        expected.sort();
        assert_eq!(found, expected);
    }

    #[test]
    fn estimates_cover_the_event_and_its_properties() {
        let settings = Settings { subscription_name: "orders-sub", properties: &[] };
        let event = event("e1");
        let size = estimated_size(&settings, &Delivery { event: &event, delivery_count: 1 });
        assert!(size > event.to_json_bytes().len() + 100, "{size}");
        assert!(size < event.to_json_bytes().len() + 500, "{size}");
    }
}
