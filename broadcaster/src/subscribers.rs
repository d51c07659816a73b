//! The forwarder's view of the PUB subscribers: their prefixes and bounded
//! queues, and the fan-out of an encoded batch.
//!
//! Queue policy: each subscriber's queue is bounded in bytes
//! (`subscriber_queue_bytes`). When a batch does not fit, that subscriber
//! alone misses it; the miss is counted (`egress_dropped_total`) and the
//! subscriber sees a seq gap it repairs from history. Others are unaffected.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Most distinct prefixes one subscriber may hold.
const MAX_PREFIXES: usize = 10_000;
/// Most chunks queued to one subscriber (the byte bound usually binds first).
pub(crate) const QUEUE_CHUNKS: usize = 4096;

/// A run of encoded ZMTP bytes for one subscriber.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Slices of shared batch buffers, written in order.
    pub(crate) parts: Vec<Bytes>,
    /// Their total length.
    pub(crate) bytes: usize,
}

/// The sending side of one subscriber's queue.
#[derive(Debug, Clone)]
pub(crate) struct SubscriberQueue {
    /// Chunks to write.
    pub(crate) tx: mpsc::Sender<Chunk>,
    /// Bytes queued and not yet written (the writer subtracts).
    pub(crate) queued: Arc<AtomicUsize>,
}

/// Messages from a subscriber's connection to the forwarder.
#[derive(Debug)]
pub(crate) enum Control {
    /// A subscriber completed its handshake.
    Add {
        /// Connection id.
        id: u64,
        /// Its queue.
        queue: SubscriberQueue,
    },
    /// `\x01prefix` or SUBSCRIBE.
    Subscribe {
        /// Connection id.
        id: u64,
        /// Prefix.
        prefix: Bytes,
    },
    /// `\x00prefix` or CANCEL.
    Unsubscribe {
        /// Connection id.
        id: u64,
        /// Prefix.
        prefix: Bytes,
    },
    /// The connection ended.
    Remove {
        /// Connection id.
        id: u64,
    },
}

/// Where one encoded message sits in a batch buffer.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    /// All three frames, headers included.
    pub(crate) frames: Range<usize>,
    /// The topic frame's body.
    pub(crate) topic: Range<usize>,
}

struct Subscriber {
    id: u64,
    queue: SubscriberQueue,
    prefixes: Vec<(Bytes, u32)>,
    everything: u32,
}

impl Subscriber {
    fn wants(&self, topic: &[u8]) -> bool {
        self.everything > 0 || self.prefixes.iter().any(|(p, _)| topic.starts_with(p))
    }
}

/// All subscribers, owned by the forwarder task (no locks).
pub(crate) struct Subscribers {
    list: Vec<Subscriber>,
    max_queue_bytes: usize,
}

impl Subscribers {
    /// No subscribers yet.
    pub(crate) fn new(max_queue_bytes: usize) -> Self {
        Self {
            list: Vec::new(),
            max_queue_bytes,
        }
    }

    /// Applies a control message.
    pub(crate) fn apply(&mut self, c: Control, metrics: &Metrics) {
        match c {
            Control::Add { id, queue } => {
                self.list.push(Subscriber {
                    id,
                    queue,
                    prefixes: Vec::new(),
                    everything: 0,
                });
                metrics.subscribers.set(self.list.len() as u64);
            }
            Control::Remove { id } => {
                self.list.retain(|s| s.id != id);
                metrics.subscribers.set(self.list.len() as u64);
            }
            Control::Subscribe { id, prefix } => {
                let Some(s) = self.list.iter_mut().find(|s| s.id == id) else {
                    return;
                };
                if prefix.is_empty() {
                    s.everything += 1;
                } else if let Some(p) = s.prefixes.iter_mut().find(|(p, _)| *p == prefix) {
                    p.1 += 1;
                } else if s.prefixes.len() < MAX_PREFIXES {
                    s.prefixes.push((prefix, 1));
                } else if metrics.log_allowed(crate::metrics::LogKind::Subscription) {
                    tracing::warn!(
                        subscriber = id,
                        "subscription limit reached; prefix ignored"
                    );
                }
            }
            Control::Unsubscribe { id, prefix } => {
                let Some(s) = self.list.iter_mut().find(|s| s.id == id) else {
                    return;
                };
                if prefix.is_empty() {
                    s.everything = s.everything.saturating_sub(1);
                } else if let Some(i) = s.prefixes.iter().position(|(p, _)| *p == prefix) {
                    s.prefixes[i].1 -= 1;
                    if s.prefixes[i].1 == 0 {
                        s.prefixes.swap_remove(i);
                    }
                }
            }
        }
    }

    /// Queues each subscriber the runs of `msgs` it subscribes to, as slices
    /// of `buf` (no copy): as many as fit in its queue's byte bound, in order;
    /// the rest of the round is dropped for it alone (counted; repairable).
    /// An empty queue always takes at least one message, so a message bigger
    /// than the bound still reaches a subscriber that keeps up.
    /// Subscribers whose queue is gone are removed.
    pub(crate) fn fan_out(&mut self, buf: &Bytes, msgs: &[Encoded], metrics: &Metrics) {
        let max = self.max_queue_bytes;
        let mut gone = Vec::new();
        for s in &mut self.list {
            let queued = s.queue.queued.load(Relaxed);
            let room = max.saturating_sub(queued);
            let mut parts = Vec::new();
            let (mut run, mut count, mut bytes, mut dropped) =
                (None::<Range<usize>>, 0u64, 0usize, 0u64);
            for m in msgs {
                if !s.wants(&buf[m.topic.clone()]) {
                    continue;
                }
                let fits = bytes + m.frames.len() <= room || (queued == 0 && count == 0);
                if dropped > 0 || !fits {
                    dropped += 1;
                    continue;
                }
                count += 1;
                bytes += m.frames.len();
                run = Some(match run {
                    Some(r) if r.end == m.frames.start => r.start..m.frames.end,
                    Some(r) => {
                        parts.push(buf.slice(r));
                        m.frames.clone()
                    }
                    None => m.frames.clone(),
                });
            }
            if dropped > 0 {
                metrics.egress_dropped.inc_by(dropped);
            }
            let Some(r) = run else { continue };
            parts.push(buf.slice(r));
            s.queue.queued.fetch_add(bytes, Relaxed);
            match s.queue.tx.try_send(Chunk { parts, bytes }) {
                Ok(()) => {
                    metrics.egress_messages.inc_by(count);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.queue.queued.fetch_sub(bytes, Relaxed);
                    metrics.egress_dropped.inc_by(count);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(s.id),
            }
        }
        if !gone.is_empty() {
            self.list.retain(|s| !gone.contains(&s.id));
            metrics.subscribers.set(self.list.len() as u64);
        }
    }
}
