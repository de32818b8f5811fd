//! Listing, deleting and re-driving a subscription's dead letters (management API).
//!
//! In single-node mode they are the local [`super::DeadLetters`]. In cluster mode they are the
//! records in the cluster's dead-letter stream, so any node lists the same records under the
//! same ids, and a record deleted or re-driven on one node is gone on all of them. Re-driving
//! there puts the event back in that one subscription's feed (bounded like a publish, by the
//! log's last count), waits until the cluster has stored it, and only then deletes the record:
//! a failure in between leaves the record, never loses the event, and the event's copy is
//! identified by the record's id, so re-driving the record again does not store it twice.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::value::RawValue;
use sinks::DeadLetterRecord;

use super::{Router, SYSTEM_TOPIC, Subscriber, SubscriptionInfo};
use crate::routing::buffer::encode_event;
use crate::routing::dead_letter::DeadLetterError;
use crate::routing::shared::SharedLog;

impl Router {
    /// The dead letters of a subscription (`topic` is `systemTopic` for the system topic),
    /// oldest first, with their ids.
    pub async fn dead_letters(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<Vec<(u64, Box<RawValue>)>, DeadLetterError> {
        let subscriber = self.subscriber_of(topic, subscription)?;
        let Some(shared) = self.buffer.shared_log() else {
            return Ok(self.dead_letters.list(subscriber.key()));
        };
        let records = shared.dead_letters(subscriber.topic(), subscriber.name()).await?;
        Ok(records
            .into_iter()
            .filter_map(|(id, record)| match serde_json::from_slice::<Box<RawValue>>(&record) {
                Ok(record) => Some((id, record)),
                Err(error) => {
                    // Not written by gridmq; listing it would break the response's shape.
                    tracing::warn!(subscription = %subscriber.key(), id, %error, "Dead-letter record that is not JSON not listed.");
                    None
                }
            })
            .collect())
    }

    /// Deletes dead letters (`ids`, or all); how many were deleted.
    pub async fn delete_dead_letters(
        &self,
        topic: &str,
        subscription: &str,
        ids: Option<&[u64]>,
    ) -> Result<usize, DeadLetterError> {
        let subscriber = self.subscriber_of(topic, subscription)?;
        let Some(shared) = self.buffer.shared_log() else {
            return Ok(self.dead_letters.take(subscriber.key(), ids).len());
        };
        let ids = ids.map(<[u64]>::to_vec);
        Ok(shared.delete_dead_letters(subscriber.topic(), subscriber.name(), ids).await?)
    }

    /// Sends dead letters (`ids`, or all) to their subscription again, as new deliveries with
    /// a fresh attempt count and time to live; how many were re-driven. Stops early when the
    /// buffer is full, leaving the rest dead-lettered.
    pub async fn redrive(
        &self,
        topic: &str,
        subscription: &str,
        ids: Option<&[u64]>,
    ) -> Result<usize, DeadLetterError> {
        let subscriber = self.subscriber_of(topic, subscription)?;
        match self.buffer.shared_log() {
            Some(shared) => self.redrive_shared(shared.as_ref(), &subscriber, ids).await,
            None => Ok(self.redrive_local(&subscriber, ids)),
        }
    }

    /// [`Router::subscriptions`], with, in cluster mode, each subscription's dead letters
    /// counted in the cluster's dead-letter stream.
    pub async fn subscriptions_counted(&self) -> Result<Vec<SubscriptionInfo>, DeadLetterError> {
        let mut subscriptions = self.subscriptions();
        let Some(shared) = self.buffer.shared_log() else { return Ok(subscriptions) };
        let counts: HashMap<(String, String), usize> = shared
            .dead_letter_counts()
            .await?
            .into_iter()
            .map(|c| ((c.topic, c.subscription), c.count))
            .collect();
        for subscription in &mut subscriptions {
            let topic = match subscription.topic.as_str() {
                "systemTopic" => SYSTEM_TOPIC,
                topic => topic,
            };
            let key = (topic.to_string(), subscription.name.clone());
            subscription.dead_letters = counts.get(&key).copied().unwrap_or(0);
        }
        Ok(subscriptions)
    }

    fn subscriber_of(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<Subscriber, DeadLetterError> {
        self.dispatcher(topic, subscription).ok_or_else(|| DeadLetterError::NoSuchSubscription {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
        })
    }

    fn redrive_local(&self, dispatcher: &Subscriber, ids: Option<&[u64]>) -> usize {
        let key = dispatcher.key().clone();
        let mut redriven = 0;
        let records = self.dead_letters.take(&key, ids);
        let mut records = records.into_iter();
        for (seq, record) in records.by_ref() {
            let Ok(event) = DeadLetterRecord::event_of(record.get().as_bytes()) else {
                tracing::error!(subscription = %key, seq, "Dead-letter record without a readable event kept.");
                self.dead_letters.add(&key, record);
                continue;
            };
            let now = SystemTime::now();
            match self.buffer.admit(dispatcher.topic(), event, now, &[&key]) {
                Ok((buffered, _)) => {
                    dispatcher.enqueue(buffered, 0, now);
                    redriven += 1;
                }
                Err(_) => {
                    self.dead_letters.add(&key, record);
                    break;
                }
            }
        }
        for (_, record) in records {
            self.dead_letters.add(&key, record);
        }
        redriven
    }

    async fn redrive_shared(
        &self,
        shared: &dyn SharedLog,
        subscriber: &Subscriber,
        ids: Option<&[u64]>,
    ) -> Result<usize, DeadLetterError> {
        let (topic, name, key) = (subscriber.topic(), subscriber.name(), subscriber.key());
        let records = shared.dead_letters(topic, name).await?;
        let mut redriven = 0;
        for (id, record) in records {
            if ids.is_some_and(|ids| !ids.contains(&id)) {
                continue;
            }
            let Ok(event) = DeadLetterRecord::event_of(&record) else {
                tracing::error!(subscription = %key, id, "Dead-letter record without a readable event kept.");
                continue;
            };
            // The rest stay dead-lettered, as in single-node mode. The log's count is read
            // only twice a second, so what this re-drive put back is added to it.
            if shared.buffered() + redriven >= self.buffer.capacity() {
                break;
            }
            let body = encode_event(SystemTime::now(), &event);
            // Stored first, then the record deleted: a failure in between keeps the record,
            // and re-driving it again soon stores no second copy (see `SharedLog::requeue`).
            shared.requeue(topic, name, id, body.into()).await?;
            shared.delete_dead_letters(topic, name, Some(vec![id])).await?;
            redriven += 1;
        }
        Ok(redriven)
    }
}
