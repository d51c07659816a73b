//! Errors, one enum per operation.

use std::time::Duration;

use fanfare_protocol::pattern::PatternError;
use fanfare_protocol::topic::TopicError;

/// Why [`Client::connect`](crate::Client::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// An endpoint could not be parsed.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No heartbeat came from the broadcaster within the connect timeout.
    /// (Set [`ClientOptions::connect_timeout`](crate::ClientOptions::connect_timeout)
    /// to zero to connect in the background instead.)
    #[error("no heartbeat from the broadcaster at {endpoint} within {waited:?}")]
    Timeout {
        /// The egress endpoint.
        endpoint: String,
        /// How long we waited.
        waited: Duration,
    },
}

/// Why a message was not accepted for publishing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The topic is not a valid (non-reserved) topic.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// The payload is larger than
    /// [`ClientOptions::max_payload`](crate::ClientOptions::max_payload).
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The broadcaster is unreachable and the outbox holds `capacity`
    /// messages already. Nothing was queued; retry later or drop.
    #[error("outbox full ({capacity} messages) while the broadcaster is unreachable")]
    OutboxFull {
        /// The outbox capacity.
        capacity: usize,
    },
    /// The value could not be serialized to JSON.
    #[error("cannot encode JSON payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
}

/// Why a subscription could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The pattern does not parse.
    #[error("invalid pattern: {0}")]
    InvalidPattern(#[from] PatternError),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
}

/// Why a history query failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No valid answer after every attempt (timeouts, `busy`, unreachable
    /// endpoint).
    #[error("replay endpoint gave no answer after {attempts} attempts")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
    },
    /// The query is invalid (e.g. more than 64 patterns).
    #[error("invalid replay query: {0}")]
    InvalidQuery(&'static str),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
}
