//! The forwarder's view of the PUB subscribers: their prefixes and bounded
//! queues, and the fan-out of an encoded batch.
//!
//! Queue policy: each subscriber's queue is bounded in bytes
//! (`subscriber_queue_bytes`). When a batch does not fit, that subscriber
//! alone misses it; the miss is counted (`egress_dropped_total`) and the
//! subscriber sees a seq gap it repairs from history. Others are unaffected.
//!
//! Sessions: a subscriber that SUBSCRIBEs exactly
//! [`SESSION_TOPIC`](fanfare_protocol::SESSION_TOPIC) gets a session marker
//! at once and, after any message it could not take, a new one before the
//! next message it gets (until that marker is queued it gets nothing, and
//! what it misses meanwhile is counted in the marker). Between two markers
//! its stream is complete for its prefixes, so a seq jump is filtering.
//!
//! Matching goes through a prefix trie ([`PrefixIndex`]): per message
//! O(topic length + matching subscribers), per SUBSCRIBE / CANCEL
//! O(prefix length). Each subscriber holds at most [`MAX_PREFIXES`] distinct
//! prefixes of at most [`MAX_PREFIX_BYTES`] in total, and the trie at most
//! [`MAX_INDEX_NODES`] nodes; a SUBSCRIBE past a cap is ignored and counted
//! (`subscriptions_refused_total`), the connection stays.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::prefix_index::PrefixIndex;
use fanfare_protocol::session::Marker;
use fanfare_protocol::SESSION_TOPIC;

/// Most distinct prefixes one subscriber may hold.
pub(crate) const MAX_PREFIXES: usize = 8192;
/// Most bytes of distinct prefixes one subscriber may hold.
pub(crate) const MAX_PREFIX_BYTES: usize = 64 * 1024;
/// Most bytes of prefixes all subscribers together may hold.
pub(crate) const MAX_TOTAL_PREFIX_BYTES: usize = 64 * 1024 * 1024;
/// Most trie nodes (bytes of distinct prefixes, all subscribers together).
pub(crate) const MAX_INDEX_NODES: usize = 1 << 20;
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
    /// A federation interest announcement (a subscription under the
    /// reserved `_fanfare.int.` prefix): the subscriber is a peer's link.
    Interest {
        /// Connection id.
        id: u64,
        /// The announcement, after the marker prefix.
        body: Bytes,
    },
}

/// Most announcements waiting for the relay; more are dropped (the
/// announcer refreshes every 2 s).
const MAX_PENDING_ANNOUNCEMENTS: usize = 1024;

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
    /// Distinct prefixes with their SUBSCRIBE refcounts.
    prefixes: HashMap<Bytes, u32>,
    prefix_bytes: usize,
    /// The last message (fan-out mark) this subscriber took or skipped.
    mark: u64,
    round: Round,
    /// A peer broadcaster's federation link: its prefixes are not local
    /// interest, and once its queue overflows it gets nothing more (its
    /// link sees silence, reconnects and repairs: a link must never see a
    /// seq jump that is loss rather than filtering).
    link: bool,
    /// A link whose queue overflowed.
    broken: bool,
    /// Asked for sessions (SUBSCRIBEd [`SESSION_TOPIC`]).
    session: bool,
    /// A session marker must be queued before anything else.
    marker_due: bool,
    /// Messages missed since the last marker (the next one says how many).
    missed: u64,
    /// Subscription commands applied (each marker says how many).
    changes: u64,
}

/// One subscriber's share of the round being fanned out.
#[derive(Default)]
struct Round {
    queued: usize,
    room: usize,
    parts: Vec<Bytes>,
    run: Option<Range<usize>>,
    count: u64,
    bytes: usize,
    dropped: u64,
}

impl Round {
    /// Takes message `m` (or drops it once the queue is full: then every
    /// later message of the round is dropped too, so order holds).
    fn take(&mut self, buf: &Bytes, m: &Encoded) {
        let len = m.frames.len();
        let fits = self.bytes + len <= self.room || (self.queued == 0 && self.count == 0);
        if self.dropped > 0 || !fits {
            self.dropped += 1;
            return;
        }
        self.count += 1;
        self.bytes += len;
        self.run = Some(match self.run.take() {
            Some(r) if r.end == m.frames.start => r.start..m.frames.end,
            Some(r) => {
                self.parts.push(buf.slice(r));
                m.frames.clone()
            }
            None => m.frames.clone(),
        });
    }
}

/// All subscribers, owned by the forwarder task (no locks).
pub(crate) struct Subscribers {
    slots: Vec<Option<Subscriber>>,
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
    index: PrefixIndex,
    max_queue_bytes: usize,
    /// Fan-out mark: one per message fanned out.
    mark: u64,
    touched: Vec<u32>,
    /// Distinct prefixes of non-link subscribers, with how many hold each.
    local: HashMap<Bytes, u32>,
    /// `local` changed since [`Self::take_local_changed`].
    local_changed: bool,
    /// Interest announcements for the relay.
    announcements: Vec<Bytes>,
    /// Slots that may owe a session marker.
    due: Vec<u32>,
    /// Bytes of prefixes held by all subscribers.
    prefix_bytes: usize,
}

impl Subscribers {
    /// No subscribers yet.
    pub(crate) fn new(max_queue_bytes: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            index: PrefixIndex::new(MAX_INDEX_NODES),
            max_queue_bytes,
            mark: 0,
            touched: Vec::new(),
            local: HashMap::new(),
            local_changed: false,
            announcements: Vec::new(),
            due: Vec::new(),
            prefix_bytes: 0,
        }
    }

    /// The local interest (prefixes of subscribers that are not links).
    pub(crate) fn local_prefixes(&self) -> impl Iterator<Item = &Bytes> {
        self.local.keys()
    }

    /// True once after the local interest changed.
    pub(crate) fn take_local_changed(&mut self) -> bool {
        std::mem::take(&mut self.local_changed)
    }

    /// The interest announcements received since the last call.
    pub(crate) fn take_announcements(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.announcements)
    }

    fn local_add(&mut self, prefix: &Bytes) {
        if local_only(prefix) {
            return;
        }
        *self.local.entry(prefix.clone()).or_insert(0) += 1;
        self.local_changed = true;
    }

    fn local_remove(&mut self, prefix: &Bytes) {
        if local_only(prefix) {
            return;
        }
        if let Some(n) = self.local.get_mut(prefix) {
            *n -= 1;
            if *n == 0 {
                self.local.remove(prefix);
                self.local_changed = true;
            }
        }
    }

    fn get(&mut self, id: u64) -> Option<(u32, &mut Subscriber)> {
        let slot = *self.by_id.get(&id)?;
        Some((slot, self.slots[slot as usize].as_mut()?))
    }

    /// Applies a control message.
    pub(crate) fn apply(&mut self, c: Control, metrics: &Metrics) {
        match c {
            Control::Add { id, queue } => {
                let s = Subscriber {
                    id,
                    queue,
                    prefixes: HashMap::new(),
                    prefix_bytes: 0,
                    mark: 0,
                    round: Round::default(),
                    link: false,
                    broken: false,
                    session: false,
                    marker_due: false,
                    missed: 0,
                    changes: 0,
                };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = Some(s);
                        slot
                    }
                    None => {
                        self.slots.push(Some(s));
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_id.insert(id, slot);
                metrics.subscribers.set(self.by_id.len() as u64);
            }
            Control::Remove { id } => {
                self.remove(id);
                metrics.subscribers.set(self.by_id.len() as u64);
            }
            Control::Subscribe { id, prefix } => {
                // A refused SUBSCRIBE is not applied and not counted: the
                // subscriber's own count stays ahead, so no later marker
                // matches it and its connection never has a session (a
                // prefix it asked for is missing: jumps may be loss).
                if self.subscribe(id, prefix, metrics) {
                    self.count_change(id);
                }
            }
            Control::Unsubscribe { id, prefix } => {
                self.count_change(id);
                let Some((slot, s)) = self.get(id) else {
                    return;
                };
                if prefix.as_ref() == SESSION_TOPIC.as_bytes() {
                    s.session = false; // a marker still owed is still sent
                    return;
                }
                let Some(n) = s.prefixes.get_mut(&prefix) else {
                    return;
                };
                *n -= 1;
                if *n == 0 {
                    s.prefixes.remove(&prefix);
                    s.prefix_bytes -= prefix.len();
                    let link = s.link;
                    self.prefix_bytes -= prefix.len();
                    self.index.remove(&prefix, slot);
                    if !link {
                        self.local_remove(&prefix);
                    }
                }
            }
            Control::Interest { id, body } => {
                let Some((_, s)) = self.get(id) else {
                    return;
                };
                if !s.link {
                    s.link = true;
                    let held: Vec<Bytes> = s.prefixes.keys().cloned().collect();
                    for p in &held {
                        self.local_remove(p);
                    }
                }
                if self.announcements.len() < MAX_PENDING_ANNOUNCEMENTS {
                    self.announcements.push(body);
                }
            }
        }
    }

    /// One more subscription command of `id`: a session subscriber owes a
    /// marker once it is applied, so it learns from where its new prefixes
    /// hold.
    fn count_change(&mut self, id: u64) {
        let Some(&slot) = self.by_id.get(&id) else {
            return;
        };
        let Some(s) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        s.changes = s.changes.saturating_add(1);
        if s.session && !s.marker_due {
            s.marker_due = true;
            self.due.push(slot);
        }
    }

    /// Applies a SUBSCRIBE; false when it was refused (a cap) or the
    /// subscriber is gone.
    fn subscribe(&mut self, id: u64, prefix: Bytes, metrics: &Metrics) -> bool {
        let Some((slot, s)) = self.get(id) else {
            return false;
        };
        if prefix.as_ref() == SESSION_TOPIC.as_bytes() {
            // Not a prefix: nothing is published there. A new session
            // starts with a marker (again if it was asked again).
            s.session = true;
            if !s.marker_due {
                s.marker_due = true;
                self.due.push(slot);
            }
            return true;
        }
        if let Some(n) = s.prefixes.get_mut(&prefix) {
            *n = n.saturating_add(1);
            return true;
        }
        let fits =
            s.prefixes.len() < MAX_PREFIXES && s.prefix_bytes + prefix.len() <= MAX_PREFIX_BYTES;
        let fits = fits && self.prefix_bytes + prefix.len() <= MAX_TOTAL_PREFIX_BYTES;
        if fits && self.index.insert(&prefix, slot) {
            self.prefix_bytes += prefix.len();
            if let Some((_, s)) = self.get(id) {
                s.prefix_bytes += prefix.len();
                let link = s.link;
                s.prefixes.insert(prefix.clone(), 1);
                if !link {
                    self.local_add(&prefix);
                }
            }
            return true;
        }
        metrics.subscriptions_refused.inc();
        if metrics.log_allowed(crate::metrics::LogKind::Subscription) {
            tracing::warn!(
                subscriber = id,
                "subscription limit reached ({MAX_PREFIXES} prefixes / {MAX_PREFIX_BYTES} bytes per subscriber, {MAX_TOTAL_PREFIX_BYTES} bytes in all, {MAX_INDEX_NODES} trie nodes); prefix ignored"
            );
        }
        false
    }

    fn remove(&mut self, id: u64) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(s) = self.slots[slot as usize].take() {
            self.prefix_bytes -= s.prefix_bytes;
            for p in s.prefixes.keys() {
                self.index.remove(p, slot);
                if !s.link {
                    self.local_remove(p);
                }
            }
        }
        self.free.push(slot);
    }

    /// Queues each subscriber the runs of `msgs` it subscribes to, as slices
    /// of `buf` (no copy): as many as fit in its queue's byte bound, in order;
    /// the rest of the round is dropped for it alone (counted; repairable).
    /// An empty queue always takes at least one message, so a message bigger
    /// than the bound still reaches a subscriber that keeps up.
    /// Subscribers whose queue is gone are removed.
    pub(crate) fn fan_out(&mut self, buf: &Bytes, msgs: &[Encoded], metrics: &Metrics) {
        let max = self.max_queue_bytes;
        self.touched.clear();
        let round_start = self.mark;
        for m in msgs {
            self.mark += 1;
            let mark = self.mark;
            let (slots, touched) = (&mut self.slots, &mut self.touched);
            self.index.for_each_match(&buf[m.topic.clone()], |slot| {
                let Some(s) = slots[slot as usize].as_mut() else {
                    return;
                };
                if s.mark == mark || s.broken {
                    return; // another of its prefixes matched already, or a broken link
                }
                if s.marker_due {
                    // Nothing may pass its session marker: missed, counted.
                    s.mark = mark;
                    s.missed = s.missed.saturating_add(1);
                    metrics.egress_dropped.inc();
                    return;
                }
                if s.mark <= round_start {
                    let queued = s.queue.queued.load(Relaxed);
                    s.round = Round {
                        queued,
                        room: max.saturating_sub(queued),
                        ..Round::default()
                    };
                    touched.push(slot);
                }
                s.mark = mark;
                s.round.take(buf, m);
            });
        }
        let mut gone = Vec::new();
        let due = &mut self.due;
        for &slot in &self.touched {
            let Some(s) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            let mut r = std::mem::take(&mut s.round);
            if r.dropped > 0 {
                metrics.egress_dropped.inc_by(r.dropped);
                s.broken |= s.link;
                s.owe_marker(slot, r.dropped, due);
            }
            let Some(run) = r.run.take() else { continue };
            r.parts.push(buf.slice(run));
            let (count, bytes) = (r.count, r.bytes);
            s.queue.queued.fetch_add(bytes, Relaxed);
            match s.queue.tx.try_send(Chunk {
                parts: r.parts,
                bytes,
            }) {
                Ok(()) => {
                    metrics.egress_messages.inc_by(count);
                    metrics.egress_bytes.inc_by(bytes as u64);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.queue.queued.fetch_sub(bytes, Relaxed);
                    metrics.egress_dropped.inc_by(count);
                    s.broken |= s.link;
                    s.owe_marker(slot, count, due);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(s.id),
            }
        }
        if !gone.is_empty() {
            for id in gone {
                self.remove(id);
            }
            metrics.subscribers.set(self.by_id.len() as u64);
        }
    }
}

impl Subscriber {
    /// After `missed` messages this subscriber could not take: a session
    /// subscriber owes a marker before its next message.
    fn owe_marker(&mut self, slot: u32, missed: u64, due: &mut Vec<u32>) {
        if !self.session {
            return;
        }
        self.missed = self.missed.saturating_add(missed);
        if !self.marker_due {
            self.marker_due = true;
            due.push(slot);
        }
    }
}

impl Subscribers {
    /// True when some subscriber may owe a session marker.
    pub(crate) fn markers_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// Queues each owed session marker once its subscriber's queue is at
    /// most half full (`encode(marker)` gives its ZMTP bytes); one that does
    /// not fit stays owed, and its subscriber
    /// keeps missing messages (counted in the marker) until it is queued.
    pub(crate) fn send_markers(&mut self, encode: impl Fn(Marker) -> Bytes, metrics: &Metrics) {
        let max = self.max_queue_bytes;
        let mut owed = Vec::new();
        let mut gone = Vec::new();
        for slot in std::mem::take(&mut self.due) {
            let Some(s) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if !s.marker_due {
                continue;
            }
            let marker = encode(Marker {
                missed: s.missed,
                changes: s.changes,
            });
            let bytes = marker.len();
            // After a miss, only once the queue has drained to half: a
            // marker followed at once by another miss would be a session
            // with nothing in it. A marker owed only for a subscription
            // change goes at once (it may pass the byte bound by its own
            // size): waiting would drop messages for nothing.
            let queued = s.queue.queued.load(Relaxed);
            if s.missed > 0 && queued != 0 && queued.saturating_add(bytes) > max / 2 {
                owed.push(slot);
                continue;
            }
            s.queue.queued.fetch_add(bytes, Relaxed);
            match s.queue.tx.try_send(Chunk {
                parts: vec![marker],
                bytes,
            }) {
                Ok(()) => {
                    s.marker_due = false;
                    s.missed = 0;
                    metrics.session_markers.inc();
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.queue.queued.fetch_sub(bytes, Relaxed);
                    owed.push(slot);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(s.id),
            }
        }
        self.due = owed;
        for id in gone {
            self.remove(id);
        }
    }
}

/// A prefix only this broadcaster can serve (acks to its own publishers): it
/// is never part of the interest announced to peers.
fn local_only(prefix: &[u8]) -> bool {
    prefix.starts_with(fanfare_protocol::ack::ACK_PREFIX.as_bytes())
}

#[cfg(test)]
#[path = "subscribers_tests.rs"]
mod tests;
