//! Reading and deleting a subscription's records in the cluster's `DLQ` stream, from any node.
//!
//! A record's id is its sequence in the stream: the same on every node, and never reused, so
//! an id listed on one node names the same record when another node deletes or re-drives it.
//! Every id is checked against the subscription's subject before it is deleted, so an id of
//! another subscription's record is skipped, as an unknown id is.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DeleteMessageErrorKind, LastRawMessageErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::cluster::link::Link;
use crate::cluster::store::key_name;
use crate::routing::shared::{DeadLetterCount, SharedError};

/// How often, and after what pause, a re-drive's publish is repeated while the same record's
/// copy from another node is being stored.
const IN_PROCESS_RETRIES: u32 = 20;
const IN_PROCESS_PAUSE: Duration = Duration::from_millis(50);

fn unavailable(error: &dyn std::fmt::Display) -> SharedError {
    SharedError::Unavailable(error.to_string())
}

/// The records on `subject`, oldest first, with their ids.
///
/// Read one by one from the stream's leader (each read asks for the first record on the
/// subject from a sequence on), not through a consumer: a consumer made for one listing may
/// not answer its first pull yet, and a leader's read sees every record already stored.
pub(super) async fn list(
    link: Arc<Link>,
    subject: String,
) -> Result<Vec<(u64, Bytes)>, SharedError> {
    let mut records = Vec::new();
    let mut from = 1;
    loop {
        match link.dead_letters.get_first_raw_message_by_subject(&subject, from).await {
            Ok(message) => {
                from = message.sequence + 1;
                records.push((message.sequence, message.payload));
            }
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Ok(records);
            }
            Err(error) => return Err(unavailable(&error)),
        }
    }
}

/// Deletes the records `ids` on `subject` (all of them when `None`); how many were deleted.
pub(super) async fn delete(
    link: Arc<Link>,
    subject: String,
    ids: Option<Vec<u64>>,
) -> Result<usize, SharedError> {
    let Some(ids) = ids else {
        let purged =
            link.dead_letters.purge().filter(subject).await.map_err(|e| unavailable(&e))?.purged;
        return Ok(usize::try_from(purged).unwrap_or(usize::MAX));
    };
    let mut deleted = 0;
    for id in ids {
        // Read from the stream's leader, not a replica, so a record just stored is found.
        match link.dead_letters.get_raw_message(id).await {
            Ok(message) if message.subject.as_str() == subject => {}
            Ok(_) => continue,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
            Err(error) => return Err(unavailable(&error)),
        }
        match link.dead_letters.delete_message(id).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            // Another node deleted it between the read and now.
            Err(error) if gone(error.kind()) => {}
            Err(error) => return Err(unavailable(&error)),
        }
    }
    Ok(deleted)
}

/// Publishes a re-driven event to its subscription's `subject` of the routing log, with a
/// message id made of the dead-letter record's id: the stream drops a second copy that comes
/// within its duplicate window.
pub(super) async fn requeue(
    link: Arc<Link>,
    subject: String,
    record: u64,
    body: Bytes,
) -> Result<(), SharedError> {
    let id = format!("dlq.{record}");
    let mut attempt = 0;
    loop {
        let message = PublishMessage::build().payload(body.clone()).message_id(id.clone());
        let ack =
            link.js.send_publish(subject.clone(), message).await.map_err(|e| unavailable(&e))?;
        match ack.await {
            Ok(_) => return Ok(()),
            // The same record is being re-driven on another node right now: once its copy is
            // stored, this one is a duplicate and answered as stored.
            Err(error) if in_process(&error) && attempt < IN_PROCESS_RETRIES => {
                attempt += 1;
                tokio::time::sleep(IN_PROCESS_PAUSE).await;
            }
            Err(error) => return Err(unavailable(&error)),
        }
    }
}

/// Whether a publish was refused because a copy with the same message id is being stored.
fn in_process(error: &PublishError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|error| error.error_code() == ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT)
}

/// The number of records on each subscription's subject.
pub(super) async fn counts(link: Arc<Link>) -> Result<Vec<DeadLetterCount>, SharedError> {
    let prefix = format!("{}.dlq.", link.names.prefix);
    let mut subjects = link
        .dead_letters
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(|e| unavailable(&e))?;
    let mut counts = Vec::new();
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry.map_err(|e| unavailable(&e))?;
        let names = subject.strip_prefix(&prefix).and_then(|rest| rest.split_once('.'));
        let Some((topic, subscription)) = names
            .and_then(|(topic, subscription)| Some((key_name(topic)?, key_name(subscription)?)))
        else {
            // Not a subject gridmq writes; no subscription has it.
            continue;
        };
        counts.push(DeadLetterCount { topic, subscription, count });
    }
    Ok(counts)
}

/// Whether a delete failed only because the record was not there any more.
fn gone(kind: DeleteMessageErrorKind) -> bool {
    match kind {
        DeleteMessageErrorKind::JetStream(error) => matches!(
            error.error_code(),
            ErrorCode::NO_MESSAGE_FOUND
                | ErrorCode::SEQUENCE_NOT_FOUND
                | ErrorCode::STREAM_MESSAGE_DELETE_FAILED
        ),
        _ => false,
    }
}
