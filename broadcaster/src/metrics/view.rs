//! The metrics' public face: a read-only handle for code that embeds the
//! broadcaster (the demo draws these numbers), and a snapshot of plain values.

use std::sync::Arc;

use super::Metrics;

/// A cheap, cloneable, read-only view of a running broadcaster's metrics
/// (from [`RunningBroadcaster::metrics`](crate::RunningBroadcaster::metrics)).
/// It stays valid after the broadcaster stopped, frozen at the last values.
#[derive(Debug, Clone)]
pub struct MetricsView(pub(crate) Arc<Metrics>);

impl MetricsView {
    /// The origin id this broadcaster stamps.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The epoch this broadcaster stamps (µs since the Unix epoch at start).
    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }

    /// The current values. Each is read on its own (no lock), so two values
    /// may be a few messages apart.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.0.snapshot()
    }
}

/// A broadcaster's numbers at one moment: what `/stats` shows, without the
/// per-reason and per-socket detail. Counters only grow; the others are gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Whole seconds since start.
    pub uptime_secs: u64,
    /// Last sequence number stamped.
    pub last_seq: u64,
    /// Messages accepted on ingress (counter).
    pub ingress_messages: u64,
    /// Payload bytes accepted on ingress (counter).
    pub ingress_bytes: u64,
    /// Ingress messages dropped as invalid, all reasons (counter).
    pub ingress_rejected: u64,
    /// Messages queued to subscribers, one per subscriber per message (counter).
    pub egress_messages: u64,
    /// Messages a full subscriber queue could not take; they are repairable
    /// from history (counter).
    pub egress_dropped: u64,
    /// Subscribers connected.
    pub subscribers: u64,
    /// Heartbeats published (counter).
    pub heartbeats: u64,
    /// Messages held in history.
    pub history_messages: u64,
    /// Bytes held in history.
    pub history_bytes: u64,
    /// Oldest seq held in history.
    pub history_oldest: u64,
    /// Messages evicted from history (counter).
    pub history_evicted: u64,
    /// Replay requests served (counter).
    pub replay_requests: u64,
    /// Replay requests refused as malformed (counter).
    pub replay_bad_requests: u64,
    /// Messages sent in replay replies (counter).
    pub replay_messages: u64,
}

impl Metrics {
    /// The current values.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            uptime_secs: self.started.elapsed().as_secs(),
            last_seq: self.last_seq.get(),
            ingress_messages: self.ingress_messages.get(),
            ingress_bytes: self.ingress_bytes.get(),
            ingress_rejected: self.rejected.iter().map(|c| c.get()).sum(),
            egress_messages: self.egress_messages.get(),
            egress_dropped: self.egress_dropped.get(),
            subscribers: self.subscribers.get(),
            heartbeats: self.heartbeats.get(),
            history_messages: self.history_messages.get(),
            history_bytes: self.history_bytes.get(),
            history_oldest: self.history_oldest.get(),
            history_evicted: self.history_evicted.get(),
            replay_requests: self.replay_requests.get(),
            replay_bad_requests: self.replay_bad_requests.get(),
            replay_messages: self.replay_messages.get(),
        }
    }
}
