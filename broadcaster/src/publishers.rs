//! Confirmed publish at the stamping point: the publisher table, owned by
//! the forwarder.
//!
//! Messages whose metadata is version 2 carry `(publisher session,
//! publisher seq)`. Per session the table keeps the highest publisher seq stamped
//! and the stamp seq it got. A message at or below it is a re-send (after a
//! reconnect or a timeout): it is dropped, counted in
//! `fanfare_ingress_duplicates_total`, and acknowledged again. After each
//! forwarder round (and at each heartbeat) every session that had messages
//! in it gets one ack on `_fanfare.ack.<session>` (see
//! `fanfare_protocol::ack`), at most [`MAX_ACKS_PER_ROUND`] per round; the
//! rest stay pending for the next round or heartbeat.
//!
//! Bounds: at most [`MAX_PUBLISHERS`] publishers. At the cap the least
//! recently seen one is evicted (CLOCK: a publisher seen since it was last
//! passed gets a second chance, at most [`EVICT_SCAN`] looks per insert),
//! counted in `fanfare_publishers_evicted_total`. An evicted publisher's
//! next message is taken as new: a re-send of it that arrives later would
//! be stamped twice here, which subscribers still drop by publisher seq.
//! Per message: one hash lookup, no allocation.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use fanfare_protocol::ack::{Ack, ACK_LEN};
use fanfare_protocol::meta::MetaRef;
use fanfare_protocol::stamp::{self, StampFields, FLAG_ACK};

use crate::forwarder::encode_message;
use crate::metrics::PublisherMetrics;
use crate::subscribers::Encoded;

/// Most publishers remembered.
pub(crate) const MAX_PUBLISHERS: usize = 65_536;
/// Most acks published per round; the rest wait for the next one.
pub(crate) const MAX_ACKS_PER_ROUND: usize = 1024;
/// Most table entries looked at to find one to evict.
const EVICT_SCAN: usize = 16;

#[derive(Debug)]
struct Slot {
    /// Highest publisher seq stamped.
    publisher_seq: u64,
    /// The stamp seq that message got.
    seq: u64,
    /// Seen since the eviction hand last passed it.
    referenced: bool,
    /// Queued in `pending` for an ack.
    pending: bool,
}

/// The publisher table and the acks it owes.
#[derive(Debug)]
pub(crate) struct Publishers {
    table: HashMap<u64, Slot>,
    /// Every key of `table`, in the order the eviction hand visits them.
    hand: VecDeque<u64>,
    /// Sessions owed an ack (each once: `Slot::pending`).
    pending: VecDeque<u64>,
    cap: usize,
    metrics: PublisherMetrics,
    /// Reused per round: the acks' ranges in the round's ack buffer.
    encoded: Vec<Encoded>,
}

impl Publishers {
    /// An empty table holding at most `cap` publishers.
    pub(crate) fn new(cap: usize, metrics: PublisherMetrics) -> Self {
        Self {
            table: HashMap::new(),
            hand: VecDeque::new(),
            pending: VecDeque::new(),
            cap: cap.max(1),
            metrics,
            encoded: Vec::new(),
        }
    }

    /// Decides whether a message is stamped: true for everything without a
    /// publisher seq, and for a publisher seq above the highest stamped (then
    /// recorded with `next_seq`, the stamp seq it is about to get). False for
    /// a re-send, which is counted. Either way its publisher is owed an ack.
    pub(crate) fn admit(&mut self, meta: Option<&[u8]>, next_seq: u64) -> bool {
        let Some(m) = meta.and_then(|m| MetaRef::decode(m).ok()) else {
            return true;
        };
        let Some(pseq) = m.publisher_seq else {
            return true;
        };
        let key = pseq.session;
        let pseq = pseq.seq;
        if let Some(slot) = self.table.get_mut(&key) {
            slot.referenced = true;
            if !slot.pending {
                slot.pending = true;
                self.pending.push_back(key);
            }
            if pseq <= slot.publisher_seq {
                self.metrics.duplicates.inc();
                return false;
            }
            slot.publisher_seq = pseq;
            slot.seq = next_seq;
            return true;
        }
        if self.table.len() >= self.cap {
            self.evict_one();
        }
        self.table.insert(
            key,
            Slot {
                publisher_seq: pseq,
                seq: next_seq,
                referenced: false,
                pending: true,
            },
        );
        self.hand.push_back(key);
        self.pending.push_back(key);
        self.metrics.publishers.set(self.table.len() as u64);
        true
    }

    fn evict_one(&mut self) {
        for look in 0..EVICT_SCAN {
            let Some(key) = self.hand.pop_front() else {
                return;
            };
            match self.table.get_mut(&key) {
                Some(slot) if slot.referenced && look + 1 < EVICT_SCAN => {
                    slot.referenced = false;
                    self.hand.push_back(key);
                }
                Some(_) => {
                    self.table.remove(&key);
                    self.metrics.evicted.inc();
                    return;
                }
                None => {}
            }
        }
    }

    /// Encodes the acks owed (at most [`MAX_ACKS_PER_ROUND`]) for origin
    /// `origin` at `epoch`, whose last stamped seq is `last_seq`. `None` when
    /// none is owed; else the buffer, whose messages are [`Self::encoded`].
    pub(crate) fn encode_acks(
        &mut self,
        origin: &[u8],
        epoch: u64,
        last_seq: u64,
    ) -> Option<Bytes> {
        self.encoded.clear();
        if self.pending.is_empty() {
            return None;
        }
        let fields = StampFields {
            flags: FLAG_ACK,
            epoch,
            seq: last_seq,
            timestamp_us: stamp::now_us(),
            ..StampFields::default()
        };
        let stamp_len = stamp::encoded_len(origin, None);
        let mut out = BytesMut::new();
        let mut payload = [0u8; ACK_LEN];
        while self.encoded.len() < MAX_ACKS_PER_ROUND {
            let Some(key) = self.pending.pop_front() else {
                break;
            };
            let Some(slot) = self.table.get_mut(&key) else {
                continue; // evicted meanwhile
            };
            slot.pending = false;
            let topic = fanfare_protocol::ack::topic(key);
            let ack = Ack {
                publisher_seq: slot.publisher_seq,
                seq: slot.seq,
            };
            ack.encode(&mut &mut payload[..]);
            let (e, _, _) = encode_message(
                &mut out,
                topic.as_bytes(),
                |o| stamp::encode(o, &fields, origin, None),
                stamp_len,
                &payload,
            );
            self.encoded.push(e);
        }
        self.metrics.acks.inc_by(self.encoded.len() as u64);
        (!self.encoded.is_empty()).then(|| out.freeze())
    }

    /// The acks encoded by the last [`Self::encode_acks`].
    pub(crate) fn encoded(&self) -> &[Encoded] {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanfare_protocol::meta::{encode, encode_seq, PublisherSeq};

    fn table(cap: usize) -> Publishers {
        Publishers::new(cap, PublisherMetrics::default())
    }

    fn m(session: u64, seq: u64) -> Vec<u8> {
        encode_seq("w1", b"", 0, PublisherSeq { session, seq })
    }

    #[test]
    fn re_sends_are_dropped_and_still_acked() {
        let mut p = table(8);
        assert!(p.admit(Some(&m(3, 1)), 10));
        assert!(p.admit(Some(&m(3, 2)), 11));
        assert!(!p.admit(Some(&m(3, 2)), 12));
        assert!(!p.admit(Some(&m(3, 1)), 12));
        assert!(p.admit(Some(&m(3, 5)), 12));
        // Another session of the same publisher id is its own stream.
        assert!(p.admit(Some(&m(4, 1)), 13));
        // Without a publisher seq nothing is remembered or dropped.
        assert!(p.admit(None, 14));
        assert!(p.admit(Some(&encode("w1", b"", 0)), 14));
        assert_eq!(p.metrics.duplicates.get(), 2);
        let buf = p.encode_acks(b"b1", 7, 13).unwrap();
        assert_eq!(p.encoded().len(), 2, "one ack per session per round");
        let e = &p.encoded()[0];
        assert_eq!(&buf[e.topic.clone()], b"_fanfare.ack.0000000000000003");
        assert!(p.encode_acks(b"b1", 7, 13).is_none(), "nothing owed");
        // A duplicate alone is acked again, with the highest stamped.
        assert!(!p.admit(Some(&m(3, 3)), 14));
        let buf = p.encode_acks(b"b1", 7, 13).unwrap();
        let end = p.encoded()[0].frames.end;
        let ack = Ack::decode(&buf[end - ACK_LEN..end]).unwrap();
        assert_eq!((ack.publisher_seq, ack.seq), (5, 12));
    }

    #[test]
    fn the_table_is_bounded_and_keeps_recent_publishers() {
        let mut p = table(4);
        for s in 1..=4 {
            assert!(p.admit(Some(&m(s, 1)), 1));
        }
        // Session 1 is seen again: the hand passes it and evicts session 2.
        assert!(!p.admit(Some(&m(1, 1)), 1));
        assert!(p.admit(Some(&m(9, 1)), 1));
        assert_eq!(p.table.len(), 4);
        assert_eq!(p.metrics.evicted.get(), 1);
        assert!(!p.admit(Some(&m(1, 1)), 1), "session 1 kept");
        assert!(p.admit(Some(&m(2, 1)), 1), "session 2 forgotten");
        for _ in 0..100 {
            let _ = p.encode_acks(b"b", 1, 1);
        }
        assert!(p.pending.len() <= 4 && p.hand.len() <= 4);
    }

    #[test]
    fn acks_per_round_are_bounded() {
        let mut p = table(MAX_PUBLISHERS);
        for s in 1..=(MAX_ACKS_PER_ROUND as u64 + 10) {
            p.admit(Some(&m(s, 1)), 1);
        }
        assert!(p.encode_acks(b"b", 1, 1).is_some());
        assert_eq!(p.encoded().len(), MAX_ACKS_PER_ROUND);
        assert!(p.encode_acks(b"b", 1, 1).is_some());
        assert_eq!(p.encoded().len(), 10);
    }
}
