//! Event Hubs SDK errors → Event Grid delivery outcomes. Classification only: the gateway
//! retries by the verdicts of [`crate::RetryPolicy`].
//!
//! The SDK reports AMQP error conditions (`amqp:unauthorized-access`,
//! `com.microsoft:server-busy`, ...), management status codes (a `$cbs` token the service
//! refuses answers 401) and transport errors, nested in its error chain. We walk the chain and
//! take the first thing that names an outcome:
//!
//! | what the service or the network said | outcome |
//! |---|---|
//! | `amqp:unauthorized-access`, status 401 | `Unauthorized` |
//! | `amqp:not-allowed`, status 403 | `Forbidden` |
//! | `amqp:not-found`, `amqp:resource-deleted`, status 404 | `NotFound` |
//! | `com.microsoft:server-busy`, `amqp:resource-limit-exceeded`, status 429/503 | `Busy` |
//! | `com.microsoft:timeout`, an idle timeout, a socket timeout, our own timeout | `TimedOut` |
//! | `amqp:link:message-size-exceeded`, an event larger than a batch | `PayloadTooLarge` |
//! | `com.microsoft:argument-error`, `amqp:decode-error`, `amqp:invalid-field` | `BadRequest` |
//! | refused, reset or dropped connections, a connection or link closed by the peer | `SocketError` |
//! | anything else | `ServiceError` (retried) |

use std::error::Error as StdError;

use azure_core_amqp::{AmqpDescribedError, AmqpError, AmqpErrorCondition, AmqpErrorKind};
use azure_messaging_eventhubs::EventHubsError;
use azure_messaging_eventhubs::error::ErrorKind;

use crate::error::{DeliveryError, FailureKind};

/// The outcome of a failed SDK call, with the error chain as detail.
pub(super) fn classify(error: &EventHubsError) -> DeliveryError {
    let kind = kind_of(error);
    DeliveryError { kind, status: None, detail: crate::error::error_chain(error) }
}

/// Whether the connection should be dropped and opened afresh before the next attempt: after
/// anything but a refusal of the content, whose cause a new connection does not change.
pub(super) fn needs_new_connection(error: &DeliveryError) -> bool {
    !matches!(
        error.kind,
        FailureKind::PayloadTooLarge | FailureKind::BadRequest | FailureKind::BadArgument
    )
}

fn kind_of(error: &EventHubsError) -> FailureKind {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(kind) = named_outcome(error) {
            return kind;
        }
        current = error.source();
    }
    // The chain named nothing we know: look for a condition in its text (the transport's own
    // errors carry the peer's condition in messages only).
    let text = crate::error::error_chain(error);
    for (symbol, kind) in TEXT_CONDITIONS {
        if text.contains(symbol) {
            return kind;
        }
    }
    FailureKind::ServiceError
}

/// The outcome one error of the chain names, if any.
fn named_outcome(error: &(dyn StdError + 'static)) -> Option<FailureKind> {
    if let Some(error) = error.downcast_ref::<EventHubsError>() {
        return match &error.kind {
            ErrorKind::SendRejected(Some(described)) => Some(from_condition(described)),
            ErrorKind::SendRejected(None) => Some(FailureKind::BadRequest),
            ErrorKind::InvalidBatchSize { .. } => Some(FailureKind::BadArgument),
            ErrorKind::SendNotAccepted(_) | ErrorKind::InvalidManagementResponse => {
                Some(FailureKind::ServiceError)
            }
            _ => None,
        };
    }
    if let Some(error) = error.downcast_ref::<AmqpError>() {
        return match error.kind() {
            AmqpErrorKind::AmqpDescribedError(described) => Some(from_condition(described)),
            AmqpErrorKind::ManagementStatusCode(status, _) => {
                Some(FailureKind::from_status(u16::from(*status)))
            }
            AmqpErrorKind::IdleTimeoutElapsed(_) => Some(FailureKind::TimedOut),
            AmqpErrorKind::TransferLimitExceeded(_) => Some(FailureKind::Busy),
            // The peer's reason, if it gave one, is further down the chain.
            AmqpErrorKind::ConnectionDropped(source)
            | AmqpErrorKind::ConnectionClosedByRemote(source)
            | AmqpErrorKind::ConnectionDetachedByRemote(source)
            | AmqpErrorKind::SessionClosedByRemote(source)
            | AmqpErrorKind::SessionDetachedByRemote(source)
            | AmqpErrorKind::LinkClosedByRemote(source)
            | AmqpErrorKind::LinkDetachedByRemote(source)
            | AmqpErrorKind::TransportImplementationError(source) => {
                Some(outcome_below(source.as_ref()).unwrap_or(FailureKind::SocketError))
            }
            _ => None,
        };
    }
    if let Some(error) = error.downcast_ref::<std::io::Error>() {
        return Some(match error.kind() {
            std::io::ErrorKind::TimedOut => FailureKind::TimedOut,
            _ => FailureKind::SocketError,
        });
    }
    None
}

/// The outcome named below a transport error: a peer's condition in its text, or an I/O error.
fn outcome_below(error: &(dyn StdError + Send + Sync + 'static)) -> Option<FailureKind> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(error) = error.downcast_ref::<std::io::Error>() {
            return Some(match error.kind() {
                std::io::ErrorKind::TimedOut => FailureKind::TimedOut,
                _ => FailureKind::SocketError,
            });
        }
        let text = error.to_string();
        let debug = format!("{error:?}");
        for (symbol, kind) in TEXT_CONDITIONS {
            if text.contains(symbol) || debug.contains(symbol) {
                return Some(kind);
            }
        }
        current = error.source();
    }
    None
}

fn from_condition(described: &AmqpDescribedError) -> FailureKind {
    match &described.condition {
        AmqpErrorCondition::UnauthorizedAccess => FailureKind::Unauthorized,
        AmqpErrorCondition::NotAllowed => FailureKind::Forbidden,
        AmqpErrorCondition::NotFound | AmqpErrorCondition::ResourceDeleted => FailureKind::NotFound,
        AmqpErrorCondition::ServerBusyError | AmqpErrorCondition::ResourceLimitExceeded => {
            FailureKind::Busy
        }
        AmqpErrorCondition::TimeoutError | AmqpErrorCondition::OperationCancelled => {
            FailureKind::TimedOut
        }
        AmqpErrorCondition::LinkPayloadSizeExceeded => FailureKind::PayloadTooLarge,
        AmqpErrorCondition::ArgumentError
        | AmqpErrorCondition::ArgumentOutOfRangeError
        | AmqpErrorCondition::DecodeError
        | AmqpErrorCondition::InvalidField => FailureKind::BadRequest,
        AmqpErrorCondition::ConnectionForced
        | AmqpErrorCondition::LinkDetachForced
        | AmqpErrorCondition::ConnectionFramingError
        | AmqpErrorCondition::ProtonIo => FailureKind::SocketError,
        _ => FailureKind::ServiceError,
    }
}

/// AMQP condition symbols (and fe2o3's names for them) as they appear in error text.
const TEXT_CONDITIONS: [(&str, FailureKind); 16] = [
    ("amqp:unauthorized-access", FailureKind::Unauthorized),
    ("UnauthorizedAccess", FailureKind::Unauthorized),
    ("amqp:not-allowed", FailureKind::Forbidden),
    ("amqp:not-found", FailureKind::NotFound),
    ("NotFound", FailureKind::NotFound),
    ("amqp:resource-deleted", FailureKind::NotFound),
    ("com.microsoft:server-busy", FailureKind::Busy),
    ("amqp:resource-limit-exceeded", FailureKind::Busy),
    ("ResourceLimitExceeded", FailureKind::Busy),
    ("com.microsoft:timeout", FailureKind::TimedOut),
    ("amqp:link:message-size-exceeded", FailureKind::PayloadTooLarge),
    ("MessageSizeExceeded", FailureKind::PayloadTooLarge),
    ("com.microsoft:argument-error", FailureKind::BadRequest),
    ("Connection refused", FailureKind::SocketError),
    ("Connection reset", FailureKind::SocketError),
    ("Broken pipe", FailureKind::SocketError),
];
