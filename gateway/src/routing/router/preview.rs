//! Where a message would be routed now, for the console's live trace: the same route table,
//! CloudEvent mapping, enrichments and subscription filters as [`RoutingTap::accept`], but
//! nothing is buffered. Called off the publish path, on sampled messages only.
//!
//! [`RoutingTap::accept`]: crate::hooks::RoutingTap::accept

use std::time::SystemTime;

use sinks::CloudEvent;

use super::Router;
use crate::hooks::RoutedMessage;

/// One namespace topic a message is routed to.
#[derive(Debug, Clone)]
pub struct Preview {
    pub topic: String,
    /// The event subscriptions whose filters take the event.
    pub subscriptions: Vec<String>,
    pub event: CloudEvent,
}

impl Router {
    /// Where `message` would be routed now; empty when no route matches its topic.
    pub fn preview(&self, message: &RoutedMessage, received: SystemTime) -> Vec<Preview> {
        if !self.routes_messages() {
            return Vec::new();
        }
        let topology = self.topology();
        let mut topics = Vec::new();
        for (filter, topic) in &topology.routes.routes {
            if !topics.contains(&topic) && crate::mqtt::topic::matches(filter, &message.topic) {
                topics.push(topic);
            }
        }
        if topics.is_empty() {
            return Vec::new();
        }
        let mut event = crate::routing::event::to_cloud_event(&self.namespace, message, received);
        topology.routes.enrichments.apply(message, &mut event);
        topics
            .into_iter()
            .map(|topic| {
                let subscriptions = topology
                    .topics
                    .get(topic)
                    .map(|takers| {
                        takers
                            .iter()
                            .filter(|s| s.filter().matches(&event))
                            .map(|s| s.name().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                Preview { topic: topic.to_string(), subscriptions, event: event.clone() }
            })
            .collect()
    }
}
