//! Why a delivery failed, named as Event Grid names delivery outcomes, and what that means for
//! retrying.
//!
//! Sorting failures is a sink's whole part in retrying: the sink never sleeps or loops, it
//! answers with a [`DeliveryError`], and [`crate::RetryPolicy`] turns that into a verdict.

use std::time::Duration;

use crate::retry::Schedule;

/// The outcome of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// 400: the destination refused the request's content.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 413.
    PayloadTooLarge,
    /// 414.
    UriTooLong,
    /// 429 or 503: the destination asks us to come back later.
    Busy,
    /// 408, or no answer within the configured timeout.
    TimedOut,
    /// No HTTP exchange: the connection was refused or reset, or TLS failed.
    SocketError,
    /// The destination's host name did not resolve.
    ResolutionError,
    /// A 5xx other than 503.
    ServiceError,
    /// The endpoint answered the abuse-protection handshake without allowing our origin.
    ValidationFailed,
    /// The request could not be formed from the event (for example a dynamic delivery property
    /// whose value cannot be an HTTP header). Sending it again cannot help.
    BadArgument,
    /// Any other HTTP status (redirects, which we do not follow, and other 4xx).
    Other(u16),
}

/// A failed delivery attempt: its outcome, the HTTP status if there was one, and a description
/// for logs and dead-letter records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {detail}", kind.outcome_name(), status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct DeliveryError {
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub detail: String,
}

// === impl FailureKind ===

impl FailureKind {
    /// The outcome for an HTTP status that is not a success.
    pub fn from_status(status: u16) -> FailureKind {
        match status {
            400 => FailureKind::BadRequest,
            401 => FailureKind::Unauthorized,
            403 => FailureKind::Forbidden,
            404 => FailureKind::NotFound,
            408 => FailureKind::TimedOut,
            413 => FailureKind::PayloadTooLarge,
            414 => FailureKind::UriTooLong,
            429 | 503 => FailureKind::Busy,
            500..=599 => FailureKind::ServiceError,
            other => FailureKind::Other(other),
        }
    }

    /// The outcome's name as dead-letter records carry it (`deliveryresult`). The names are
    /// Event Grid's where it has one (`Busy`, `NotFound`, `TimedOut`, `Forbidden`, ...);
    /// `ArgumentException` is the condition Event Grid names for a request it could not form,
    /// and `GenericError` covers statuses with no name of their own.
    pub fn outcome_name(&self) -> &'static str {
        match self {
            FailureKind::BadRequest => "BadRequest",
            FailureKind::Unauthorized => "Unauthorized",
            FailureKind::Forbidden => "Forbidden",
            FailureKind::NotFound => "NotFound",
            FailureKind::PayloadTooLarge => "PayloadTooLarge",
            FailureKind::UriTooLong => "UriTooLong",
            FailureKind::Busy => "Busy",
            FailureKind::TimedOut => "TimedOut",
            FailureKind::SocketError => "SocketError",
            FailureKind::ResolutionError => "ResolutionError",
            FailureKind::ServiceError => "ServiceError",
            FailureKind::ValidationFailed => "ValidationFailed",
            FailureKind::BadArgument => "ArgumentException",
            FailureKind::Other(_) => "GenericError",
        }
    }
}

// === impl DeliveryError ===

impl DeliveryError {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> DeliveryError {
        DeliveryError { kind, status: None, detail: detail.into() }
    }

    /// A failure answered with HTTP `status`.
    pub fn from_status(status: u16, detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            kind: FailureKind::from_status(status),
            status: Some(status),
            detail: detail.into(),
        }
    }

    /// A request that got no HTTP answer (or whose answer could not be read).
    pub fn from_reqwest(error: &reqwest::Error) -> DeliveryError {
        let kind = if error.is_timeout() {
            FailureKind::TimedOut
        } else if error.is_dns() {
            FailureKind::ResolutionError
        } else if error.is_builder() {
            FailureKind::BadArgument
        } else {
            // Refused, reset or closed connections and TLS failures: the network, not the
            // destination's answer, failed.
            FailureKind::SocketError
        };
        DeliveryError::new(kind, error_chain(error))
    }

    /// Whether another attempt may succeed, under `schedule`'s rules. Webhooks (namespace
    /// subscriptions) never retry 400, 401, 403, 404, 413 and 414; custom topics never retry
    /// 400, 401, 403 and 413 (a 404 there may be a topic still being created). A request we
    /// could not form is never retried.
    pub fn is_retriable(&self, schedule: Schedule) -> bool {
        match self.kind {
            FailureKind::BadRequest
            | FailureKind::Unauthorized
            | FailureKind::Forbidden
            | FailureKind::PayloadTooLarge
            | FailureKind::BadArgument => false,
            FailureKind::NotFound | FailureKind::UriTooLong => schedule == Schedule::CustomTopic,
            _ => true,
        }
    }

    /// The least time to wait before the next attempt, from Event Grid's table for endpoint
    /// error codes: 408 at least 2 minutes, 503 at least 30 seconds, any other status at least
    /// 10 seconds. Failures without an HTTP answer (refused connections, timeouts) have no
    /// floor: the retry schedule alone decides, so a briefly unreachable endpoint gets the
    /// schedule's immediate retry.
    pub fn min_delay(&self) -> Duration {
        match self.status {
            Some(408) => Duration::from_secs(120),
            Some(503) => Duration::from_secs(30),
            Some(_) => Duration::from_secs(10),
            None => Duration::ZERO,
        }
    }
}

/// An error and its sources in one line: reqwest's own message rarely names the cause
/// ("error sending request"), its sources do ("Connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_event_grid_outcomes() {
        let cases = [
            (400, "BadRequest"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (408, "TimedOut"),
            (413, "PayloadTooLarge"),
            (414, "UriTooLong"),
            (429, "Busy"),
            (503, "Busy"),
            (500, "ServiceError"),
            (502, "ServiceError"),
            (302, "GenericError"),
            (409, "GenericError"),
        ];
        for (status, name) in cases {
            assert_eq!(FailureKind::from_status(status).outcome_name(), name, "HTTP {status}");
        }
    }

    #[test]
    fn retriable_depends_on_the_schedule() {
        let never = [400, 401, 403, 413];
        for status in never {
            let error = DeliveryError::from_status(status, "");
            assert!(!error.is_retriable(Schedule::Namespace), "{status}");
            assert!(!error.is_retriable(Schedule::CustomTopic), "{status}");
        }
        for status in [404, 414] {
            let error = DeliveryError::from_status(status, "");
            assert!(!error.is_retriable(Schedule::Namespace), "{status}");
            assert!(error.is_retriable(Schedule::CustomTopic), "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 302, 409] {
            let error = DeliveryError::from_status(status, "");
            assert!(error.is_retriable(Schedule::Namespace), "{status}");
            assert!(error.is_retriable(Schedule::CustomTopic), "{status}");
        }
        for kind in [FailureKind::SocketError, FailureKind::TimedOut, FailureKind::ValidationFailed]
        {
            assert!(DeliveryError::new(kind, "").is_retriable(Schedule::Namespace));
        }
        assert!(
            !DeliveryError::new(FailureKind::BadArgument, "").is_retriable(Schedule::Namespace)
        );
    }

    #[test]
    fn min_delays_follow_the_status_table() {
        let secs = |error: DeliveryError| error.min_delay().as_secs();
        assert_eq!(secs(DeliveryError::from_status(408, "")), 120);
        assert_eq!(secs(DeliveryError::from_status(503, "")), 30);
        assert_eq!(secs(DeliveryError::from_status(500, "")), 10);
        assert_eq!(secs(DeliveryError::from_status(429, "")), 10);
        assert_eq!(secs(DeliveryError::new(FailureKind::SocketError, "")), 0);
        assert_eq!(secs(DeliveryError::new(FailureKind::TimedOut, "")), 0);
    }

    #[test]
    fn display_names_outcome_status_and_detail() {
        let error = DeliveryError::from_status(503, "try later");
        assert_eq!(error.to_string(), "Busy (HTTP 503): try later");
        let error = DeliveryError::new(FailureKind::SocketError, "refused");
        assert_eq!(error.to_string(), "SocketError: refused");
    }
}
