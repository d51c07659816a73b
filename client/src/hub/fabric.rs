//! What the hub needs from the fabric, as a small object-safe trait.
//!
//! [`crate::Client`] implements it (see `client_fabric.rs`); unit tests use an
//! in-memory fabric. Keeping this seam narrow is what lets the per-connection
//! logic be tested with channels.
//!
//! Failures cross the seam as typed kinds ([`PublishFailure`],
//! [`ReplayFailure`], [`FeedFailure`], [`GapCause`]); the hub decides on
//! the kind, never on an error's text.

use std::sync::Arc;

use bytes::Bytes;
use fanfare_protocol::pattern::{Pattern, PatternError};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::protocol::GapCause;

/// A stamped message as the hub receives it.
#[derive(Debug, Clone)]
pub struct FabricMessage {
    /// Topic.
    pub topic: Arc<str>,
    /// Payload as published.
    pub payload: Bytes,
    /// Origin broadcaster id.
    pub origin: Arc<str>,
    /// Origin epoch.
    pub epoch: u64,
    /// Origin seq.
    pub seq: u64,
    /// Stamp time (µs since the Unix epoch).
    pub timestamp_us: u64,
    /// Publisher id, when the publisher sent one.
    pub publisher: Option<Arc<str>>,
}

impl FabricMessage {
    /// This message as a browser `event` frame: serialized once, then shared
    /// by every connection it goes to. Its publisher id is sent as `from`
    /// when it is one of `trusted` (ids the hub vouches for), else as
    /// `from_unverified`.
    pub fn event_frame(&self, trusted: &[String]) -> axum::extract::ws::Utf8Bytes {
        let verified = self
            .publisher
            .as_deref()
            .is_some_and(|p| trusted.iter().any(|t| t == p));
        super::protocol::event(&super::protocol::EventFields {
            topic: &self.topic,
            payload: &self.payload,
            origin: &self.origin,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_us: self.timestamp_us,
            publisher: self.publisher.as_deref(),
            verified,
        })
    }
}

/// One item of the hub's feed.
#[derive(Debug, Clone)]
pub enum FabricItem {
    /// A message, in origin order.
    Message(FabricMessage),
    /// Seqs `[first, last]` of `origin`/`epoch` are lost for good at this worker.
    Gap {
        /// Origin broadcaster.
        origin: Arc<str>,
        /// Its epoch.
        epoch: u64,
        /// First lost seq.
        first: u64,
        /// Last lost seq.
        last: u64,
        /// Why.
        reason: GapCause,
    },
    /// Seq `seq` of `origin`/`epoch` will not come as a message, and is no
    /// loss: it was a re-sent copy (a publisher's failover) of a message
    /// already delivered under another stamp.
    Resent {
        /// Origin broadcaster.
        origin: Arc<str>,
        /// Its epoch.
        epoch: u64,
        /// The copy's seq.
        seq: u64,
    },

    /// Every message of `origin`/`epoch` up to `through` that the feed
    /// wants came before this item: missing seqs up to it were filtered
    /// (the feed's patterns did not match), so the reorder steps over them.
    Watermark {
        /// Origin broadcaster.
        origin: Arc<str>,
        /// Its epoch.
        epoch: u64,
        /// The seq the feed is complete through.
        through: u64,
    },
}

/// A history request for one origin.
#[derive(Debug, Clone)]
pub struct ReplayRange {
    /// Origin broadcaster id.
    pub origin: String,
    /// Epoch wanted.
    pub epoch: u64,
    /// First seq wanted.
    pub from: u64,
    /// Last seq wanted (inclusive; `u64::MAX` = newest).
    pub to: u64,
    /// Only topics matching one of these.
    pub patterns: Vec<Pattern>,
}

/// One answer to a [`ReplayRange`] (possibly cut: see `next`).
#[derive(Debug, Clone, Default)]
pub struct ReplayChunk {
    /// Oldest seq the history still holds.
    pub oldest: u64,
    /// Newest seq the history holds.
    pub newest: u64,
    /// First seq this answer does not cover.
    pub next: u64,
    /// The messages of `[max(from, oldest), next - 1]` that pass the filter.
    pub messages: Vec<FabricMessage>,
}

/// An error from a fabric's own machinery, kept as the source of the
/// failure kinds below (its text is for logs and browser messages only).
pub type FabricError = Box<dyn std::error::Error + Send + Sync>;

/// Why a history request gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    /// The origin is held in another epoch (it restarted).
    #[error("epoch not held (origin restarted)")]
    UnknownEpoch,
    /// Nothing is held from that origin.
    #[error("origin not held")]
    UnknownOrigin,
    /// The history refused the request for load; it may answer later.
    #[error("history unavailable: busy")]
    Busy,
    /// The history could not read the request.
    #[error("history unavailable: bad request")]
    BadRequest,
    /// The history could not be asked (timeouts, disconnected, closed).
    #[error("history unavailable: {0}")]
    Unavailable(#[source] FabricError),
}

impl ReplayFailure {
    /// The `gap` reason a browser is told when this request fails.
    pub fn gap_cause(&self) -> GapCause {
        match self {
            ReplayFailure::UnknownEpoch => GapCause::EpochChanged,
            ReplayFailure::UnknownOrigin => GapCause::UnknownOrigin,
            ReplayFailure::Busy | ReplayFailure::BadRequest | ReplayFailure::Unavailable(_) => {
                GapCause::HistoryUnavailable
            }
        }
    }
}

/// Why a publish was not taken. The hub answers every kind with the
/// browser error `unavailable` and this error's text as the message.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// The fabric refused the message as given (e.g. its topic); sending it
    /// again will not help.
    #[error("publish failed: {0}")]
    Refused(#[source] FabricError),
    /// The payload is over the fabric's limit.
    #[error("publish failed: payload of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The fabric cannot take it now (outbox full while the broadcaster is
    /// away, client closed); it may later.
    #[error("publish failed: {0}")]
    Unavailable(#[source] FabricError),
}

/// Why the feed could not be opened. The hub retries with backoff either way.
#[derive(Debug, thiserror::Error)]
pub enum FeedFailure {
    /// The fabric refused the feed pattern.
    #[error("cannot subscribe the hub feed: invalid pattern: {0}")]
    InvalidPattern(#[from] PatternError),
    /// The fabric is closed, or its feed is already taken.
    #[error("cannot subscribe the hub feed: the fabric is closed")]
    Closed,
}

/// Where a change of the feed's patterns took effect: every message of
/// `origin`/`epoch` after `seq` that the new patterns match is in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedApplied {
    /// The origin the feed is complete for (the broadcaster's own).
    pub origin: Arc<str>,
    /// Its epoch.
    pub epoch: u64,
    /// The new patterns are complete after this seq.
    pub seq: u64,
}

/// The fabric as the hub sees it.
pub trait Fabric: Send + Sync + 'static {
    /// Publishes a browser's payload.
    fn publish(&self, topic: String, payload: Bytes) -> BoxFuture<'_, Result<(), PublishFailure>>;
    /// Asks the history for a range.
    fn replay(&self, range: ReplayRange) -> BoxFuture<'_, Result<ReplayChunk, ReplayFailure>>;
    /// Opens the hub's feed: every message matching `pattern`, in order,
    /// with explicit gaps.
    fn feed(
        &self,
        pattern: Pattern,
    ) -> BoxFuture<'_, Result<BoxStream<'static, FabricItem>, FeedFailure>>;
    /// Can the feed follow the browsers' interest: narrow to a pattern set
    /// ([`Self::set_feed_patterns`]), with [`FabricItem::Watermark`]s that
    /// tell filtered seqs from holes? (Default: no; the feed carries its
    /// pattern.)
    fn follows_interest(&self) -> bool {
        false
    }
    /// The open feed matches `patterns` from now on; resolves once that
    /// holds (see [`FeedApplied`]). Only called when
    /// [`Self::follows_interest`].
    fn set_feed_patterns(
        &self,
        patterns: Vec<Pattern>,
    ) -> BoxFuture<'static, Result<FeedApplied, FeedFailure>> {
        let _ = patterns;
        Box::pin(async { Err(FeedFailure::Closed) })
    }
}
