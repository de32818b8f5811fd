//! How many events go into one request: Event Grid's output batching rules.
//!
//! A batch holds at most `max_events` events and, best effort, at most `preferred_bytes` of
//! body. It never waits to fill: it takes what is queued now. An event larger than the
//! preferred size on its own still goes, alone.

use crate::sink::Delivery;

/// The limits one destination puts on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many events per request (at least 1).
    pub max_events: usize,
    /// The body should stay within this many bytes.
    pub preferred_bytes: usize,
}

impl BatchLimits {
    /// From Event Grid's settings: `maxEventsPerBatch` and `preferredBatchSizeInKilobytes`.
    pub fn new(max_events_per_batch: u32, preferred_batch_size_in_kilobytes: u32) -> BatchLimits {
        BatchLimits {
            max_events: usize::try_from(max_events_per_batch).unwrap_or(usize::MAX).max(1),
            preferred_bytes: usize::try_from(preferred_batch_size_in_kilobytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(1024),
        }
    }

    /// How many events from the front of `events` go into the next request, sizing each event
    /// by its JSON form (as a batch body carries it). At least 1 when `events` is not empty.
    pub fn batch_len(&self, events: &[Delivery<'_>]) -> usize {
        // A batch body is `[` + events joined by `,` + `]`.
        let mut bytes = 1;
        let mut count = 0;
        for delivery in events.iter().take(self.max_events) {
            let size = delivery.event.to_json_bytes().len() + 1;
            if count > 0 && bytes + size > self.preferred_bytes {
                break;
            }
            bytes += size;
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CloudEvent, Data, JsonText};

    fn event_of_size(size: usize) -> CloudEvent {
        let mut event = CloudEvent {
            id: "e".into(),
            source: "s".into(),
            ty: "t".into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Default::default(),
            data: Data::Json(JsonText::string("")),
        };
        let overhead = event.to_json_bytes().len();
        event.data = Data::Json(JsonText::string(&"x".repeat(size - overhead)));
        assert_eq!(event.to_json_bytes().len(), size);
        event
    }

    fn deliveries(events: &[CloudEvent]) -> Vec<Delivery<'_>> {
        events.iter().map(|event| Delivery { event, delivery_count: 1 }).collect()
    }

    #[test]
    fn honours_the_event_count() {
        let events: Vec<CloudEvent> = (0..10).map(|_| event_of_size(100)).collect();
        let limits = BatchLimits::new(3, 64);
        assert_eq!(limits.batch_len(&deliveries(&events)), 3);
        assert_eq!(limits.batch_len(&deliveries(&events[..2])), 2);
        assert_eq!(BatchLimits::new(1, 64).batch_len(&deliveries(&events)), 1);
        assert_eq!(limits.batch_len(&[]), 0);
    }

    #[test]
    fn honours_the_preferred_size() {
        // 1 KiB preferred: `[` + 3 × (300 + 1) = 904 bytes fit, a fourth would make 1205.
        let events: Vec<CloudEvent> = (0..10).map(|_| event_of_size(300)).collect();
        let limits = BatchLimits::new(100, 1);
        assert_eq!(limits.batch_len(&deliveries(&events)), 3);
    }

    #[test]
    fn an_oversize_event_goes_alone() {
        let events = vec![event_of_size(5000), event_of_size(100)];
        let limits = BatchLimits::new(100, 1);
        assert_eq!(limits.batch_len(&deliveries(&events)), 1);
        // And a large event behind small ones waits for the next request.
        let events = vec![event_of_size(100), event_of_size(5000)];
        assert_eq!(limits.batch_len(&deliveries(&events)), 1);
    }
}
