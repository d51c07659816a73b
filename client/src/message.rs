//! What a subscription delivers: messages, gaps and the reason it closed.

use std::sync::Arc;

use bytes::Bytes;
use fanfare_protocol::heartbeat::Heartbeat;
use fanfare_protocol::meta::{MetaRef, PublisherSeq};
use fanfare_protocol::position::Position;
use fanfare_protocol::stamp::StampRef;

use crate::subscriber::zmtp_sub::Broadcast;

/// Where a message comes from: the stamp its origin broadcaster gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Origin broadcaster id.
    pub origin: Arc<str>,
    /// Origin epoch (µs since the Unix epoch when it started).
    pub epoch: u64,
    /// Sequence number within origin and epoch.
    pub seq: u64,
    /// Lane (hash of the topic's first word).
    pub lane: u16,
    /// Sequence number within origin, epoch and lane.
    pub lane_seq: u64,
    /// When the origin stamped it, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Federation hops so far (0 at the origin).
    pub hops: u8,
    /// Publisher id from the message's metadata, if it had any.
    pub publisher: Option<Arc<str>>,
    /// The publisher's session and seq (version 2 metadata, what
    /// fanfare-client sends), by which re-sent copies are recognised.
    pub publisher_seq: Option<PublisherSeq>,
}

/// What [`Client::publish_confirmed`](crate::Client::publish_confirmed)
/// resolves to: a broadcaster has stamped the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The message's publisher seq (in this client's session).
    pub publisher_seq: u64,
    /// The broadcaster that acknowledged it (its origin id) …
    pub origin: Arc<str>,
    /// … and that broadcaster's epoch.
    pub epoch: u64,
    /// The stamp seq it got, when the ack named this very message (an ack
    /// covers every publisher seq up to the one it names).
    pub seq: Option<u64>,
}

/// A point in one origin's stream: `(epoch, seq)`. Ordered as a tuple, so
/// a later epoch is always further on.
pub(crate) type Mark = (u64, u64);

/// A mark per origin, looked up per message (hashed with foldhash: lib.rs).
pub(crate) type Marks = foldhash::HashMap<std::sync::Arc<str>, Mark>;

/// One broadcast message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its payload, as published.
    pub payload: Bytes,
    /// Its stamp.
    pub stamp: Stamp,
    /// True when it was fetched from history (gap repair or
    /// `subscribe_from`) rather than received live.
    pub replayed: bool,
    /// A re-sent copy (same publisher session and seq, new stamp) of a
    /// message already delivered. Applications never see these; the hub's
    /// feed does (see [`Subscription::keep_resent`](crate::Subscription)),
    /// so that its per-origin reorder knows the seq will not come.
    pub(crate) resent: bool,
}

/// Why a range of messages is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The broadcaster's history no longer holds them.
    Expired,
    /// The broadcaster does not hold that origin epoch any more (it or the
    /// origin restarted), or does not know the origin.
    EpochGone,
    /// The replay endpoint did not answer (timeouts, refusals) after every
    /// attempt.
    ReplayFailed,
}

/// An explicit statement that messages are missing and will not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Origin broadcaster.
    pub origin: Arc<str>,
    /// Origin epoch.
    pub epoch: u64,
    /// First missing seq.
    pub first: u64,
    /// Last missing seq (inclusive; `u64::MAX` = "everything after `first`").
    pub last: u64,
    /// Why.
    pub reason: GapReason,
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its queue was full: the application did not read fast enough.
    /// `position` is where it stands; pass it to
    /// [`Client::subscribe_from`](crate::Client::subscribe_from) to resume
    /// without loss (a few messages may come twice).
    SlowConsumer {
        /// Where the subscription stands.
        position: Position,
    },
    /// The client shut down.
    ClientClosed,
}

/// One item of a [`Subscription`](crate::Subscription) stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message matching the pattern.
    Message(Message),
    /// Messages that may have matched are lost for good.
    Gap(Gap),
    /// The subscription ended; this is its last item.
    Closed(CloseReason),
    /// Only after [`Subscription::keep_watermarks`](crate::Subscription::keep_watermarks):
    /// every message of the origin up to a seq that this subscription will
    /// get has been yielded before this item (or reported in a [`Gap`]).
    Watermark(Watermark),
}

/// Where a [`Subscription::set_patterns`](crate::Subscription::set_patterns)
/// took effect: every message of `origin`/`epoch` after `seq` that the new
/// patterns match is delivered (the broadcaster's own origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternsApplied {
    /// The broadcaster's origin.
    pub origin: Arc<str>,
    /// Its epoch.
    pub epoch: u64,
    /// The new patterns are complete after this seq.
    pub seq: u64,
}

/// A point up to which a subscription's stream of one origin is complete:
/// the seqs at or below `through` that never came were not for it
/// (filtered), so a consumer ordering by origin seq may step over them.
///
/// Told only for the broadcaster's own origin of a client with one
/// broadcaster, while its connection is in a session (PROTOCOL.md,
/// "Sessions"), after each burst and heartbeat that moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// Origin broadcaster.
    pub origin: Arc<str>,
    /// Origin epoch.
    pub epoch: u64,
    /// Every wanted message of `origin`/`epoch` with a seq up to this one
    /// came before this item.
    pub through: u64,
}

/// A frame-level problem with a broadcast message (logged and skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("topic is not UTF-8")]
    Topic,
    #[error(transparent)]
    Stamp(#[from] fanfare_protocol::stamp::StampError),
    #[error(transparent)]
    Heartbeat(#[from] fanfare_protocol::heartbeat::HeartbeatError),
    /// Seqs and lane seqs of messages start at 1 and a lane seq counts a
    /// subset of the origin's messages: anything else would make the gap
    /// tracker compute "the seq before" of nothing, or jump a lane past
    /// messages that exist.
    #[error("message stamped with seq {seq}, lane seq {lane_seq} (1 <= lane seq <= seq)")]
    BadSeq { seq: u64, lane_seq: u64 },
    #[error("session marker payload of {0} bytes (expected 16)")]
    Marker(usize),
}

/// A decoded egress message: a user message or a heartbeat.
#[derive(Debug)]
pub(crate) enum Incoming {
    Message(Message),
    Heartbeat {
        origin: Arc<str>,
        epoch: u64,
        seq: u64,
        beat: Heartbeat,
    },
    /// An acknowledgement for some publisher: not for subscriptions.
    Ack,
    /// A session marker for this connection (PROTOCOL.md, "Sessions"):
    /// from it on, the connection's stream of `origin`'s messages is
    /// complete for its prefixes after `seq`.
    Session {
        origin: Arc<str>,
        epoch: u64,
        seq: u64,
        marker: fanfare_protocol::session::Marker,
    },
}

/// Interns origin and publisher ids so that messages share one allocation
/// per name, and recent topics so that a message of a topic seen lately
/// allocates none.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    known: foldhash::HashMap<Box<str>, Arc<str>>,
    /// The origin interned last (one origin per broadcaster: the usual case).
    last: Option<Arc<str>>,
    /// The publisher interned last (kept apart, so that a message's
    /// publisher does not push its origin out, nor the other way round).
    last_publisher: Option<Arc<str>>,
    /// Direct-mapped by a hash of the topic: [`TOPIC_SLOTS`] recent topics.
    topics: Vec<Option<Arc<str>>>,
}

/// Topics remembered (direct-mapped: a slot holds the last topic that hashed to it).
const TOPIC_SLOTS: usize = 256;
/// Longer topics are not remembered (hashing them costs what allocating does).
const MAX_CACHED_TOPIC: usize = 128;

impl Origins {
    /// The shared `Arc<str>` for a name. At most 4096 distinct names are
    /// kept; beyond that each call allocates (hostile peers cannot grow it).
    pub(crate) fn intern(&mut self, id: &str) -> Arc<str> {
        intern_in(&mut self.known, &mut self.last, id)
    }

    /// Like [`Self::intern`], for a publisher id.
    pub(crate) fn intern_publisher(&mut self, id: &str) -> Arc<str> {
        intern_in(&mut self.known, &mut self.last_publisher, id)
    }

    /// A shared `Arc<str>` for a topic: the one of the last message of
    /// that topic if its slot still holds it, else a new one (kept).
    pub(crate) fn topic(&mut self, topic: &str) -> Arc<str> {
        if topic.len() > MAX_CACHED_TOPIC {
            return Arc::from(topic);
        }
        if self.topics.is_empty() {
            self.topics.resize(TOPIC_SLOTS, None);
        }
        // FNV-1a: short topics, no allocation, no per-process key needed
        // (a collision only costs an allocation).
        let hash = topic.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let slot = &mut self.topics[(hash as usize) % TOPIC_SLOTS];
        match slot {
            Some(a) if **a == *topic => a.clone(),
            _ => {
                let a: Arc<str> = Arc::from(topic);
                *slot = Some(a.clone());
                a
            }
        }
    }
}

/// The shared `Arc<str>` for `id`: `last` if it is that name, else the
/// known one (at most 4096 kept; beyond, each call allocates).
fn intern_in(
    known: &mut foldhash::HashMap<Box<str>, Arc<str>>,
    last: &mut Option<Arc<str>>,
    id: &str,
) -> Arc<str> {
    if let Some(a) = last.as_ref().filter(|a| ***a == *id) {
        return a.clone();
    }
    let a = match known.get(id) {
        Some(a) => a.clone(),
        None => {
            let a: Arc<str> = Arc::from(id);
            if known.len() < 4096 {
                known.insert(Box::from(id), a.clone());
            }
            a
        }
    };
    *last = Some(a.clone());
    a
}

/// Decodes `[topic, stamp, payload]` frames (egress or a replay reply).
pub(crate) fn decode(
    topic: &Bytes,
    stamp: &Bytes,
    payload: Bytes,
    origins: &mut Origins,
    replayed: bool,
) -> Result<Incoming, FrameError> {
    let mut incoming = decode_in_place(topic, stamp, &payload, origins, replayed)?;
    if let Incoming::Message(m) = &mut incoming {
        m.payload = payload;
    }
    Ok(incoming)
}

/// Decodes a broadcast cut out of the data SUB's read buffer: topic and
/// stamp read in place, the payload kept as the buffer's own slice.
pub(crate) fn decode_broadcast(
    b: Broadcast,
    origins: &mut Origins,
) -> Result<Incoming, FrameError> {
    let mut incoming = decode_in_place(b.topic(), b.stamp(), b.payload(), origins, false)?;
    if let Incoming::Message(m) = &mut incoming {
        m.payload = b.into_payload();
    }
    Ok(incoming)
}

/// Decodes the frames; a message comes out with an empty payload, which
/// the caller fills with the payload's own bytes (no copy).
fn decode_in_place(
    topic: &[u8],
    stamp: &[u8],
    payload: &[u8],
    origins: &mut Origins,
    replayed: bool,
) -> Result<Incoming, FrameError> {
    let s = StampRef::decode(stamp)?;
    let origin = origins.intern(s.origin);
    if s.is_ack() {
        return Ok(Incoming::Ack);
    }
    if s.is_session() {
        let marker = fanfare_protocol::session::Marker::decode(payload)
            .ok_or(FrameError::Marker(payload.len()))?;
        return Ok(Incoming::Session {
            origin,
            epoch: s.epoch,
            seq: s.seq,
            marker,
        });
    }
    if s.is_heartbeat() {
        let beat = Heartbeat::decode(payload)?;
        return Ok(Incoming::Heartbeat {
            origin,
            epoch: s.epoch,
            seq: s.seq,
            beat,
        });
    }
    if s.seq == 0 || s.lane_seq == 0 || s.lane_seq > s.seq {
        return Err(FrameError::BadSeq {
            seq: s.seq,
            lane_seq: s.lane_seq,
        });
    }
    let topic = std::str::from_utf8(topic).map_err(|_| FrameError::Topic)?;
    let meta = s.meta.and_then(|m| MetaRef::decode(m).ok());
    let publisher = meta.map(|m| origins.intern_publisher(m.publisher));
    let publisher_seq = meta.and_then(|m| m.publisher_seq);
    Ok(Incoming::Message(Message {
        topic: origins.topic(topic),
        payload: Bytes::new(),
        stamp: Stamp {
            origin,
            epoch: s.epoch,
            seq: s.seq,
            lane: s.lane,
            lane_seq: s.lane_seq,
            timestamp_us: s.timestamp_us,
            hops: s.hops,
            publisher,
            publisher_seq,
        },
        replayed,
        resent: false,
    }))
}

/// Decodes a whole egress message given as its three frames.
#[cfg(test)]
pub(crate) fn decode_frames(
    frames: [Bytes; 3],
    origins: &mut Origins,
) -> Result<Incoming, FrameError> {
    let [topic, stamp, payload] = frames;
    decode(&topic, &stamp, payload, origins, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanfare_protocol::stamp::{to_bytes, StampFields, FLAG_HEARTBEAT};

    #[test]
    fn decodes_messages_and_heartbeats() {
        let mut origins = Origins::default();
        let meta = fanfare_protocol::meta::encode("w1", b"", 5);
        let f = StampFields {
            seq: 3,
            lane_seq: 2,
            epoch: 9,
            ..Default::default()
        };
        let stamp = to_bytes(&f, b"b1", Some(&meta));
        let frames = [
            Bytes::from_static(b"chat.x"),
            stamp,
            Bytes::from_static(b"hi"),
        ];
        let Ok(Incoming::Message(m)) = decode_frames(frames, &mut origins) else {
            panic!("not a message")
        };
        assert_eq!((&*m.topic, m.stamp.seq, m.stamp.epoch), ("chat.x", 3, 9));
        assert_eq!(m.stamp.publisher.as_deref(), Some("w1"));

        let hb = Heartbeat::default();
        let mut payload = Vec::new();
        hb.encode(&mut payload);
        let f = StampFields {
            flags: FLAG_HEARTBEAT,
            seq: 7,
            ..Default::default()
        };
        let frames = [
            Bytes::from_static(b"_fanfare.hb.b1"),
            to_bytes(&f, b"b1", None),
            Bytes::from(payload),
        ];
        assert!(matches!(
            decode_frames(frames, &mut origins),
            Ok(Incoming::Heartbeat { seq: 7, .. })
        ));
    }

    #[test]
    fn topics_and_origins_are_shared() {
        let mut origins = Origins::default();
        let a = origins.topic("chat.x");
        let b = origins.topic("chat.x");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*origins.topic("chat.y"), "chat.y");
        let long = "x".repeat(MAX_CACHED_TOPIC + 1);
        assert_eq!(*origins.topic(&long), *long);
        let (o1, o2) = (origins.intern("b1"), origins.intern("b2"));
        assert!(Arc::ptr_eq(&o1, &origins.intern("b1")));
        assert!(Arc::ptr_eq(&o2, &origins.intern("b2")));
    }

    #[test]
    fn messages_with_impossible_seqs_are_refused() {
        // Parked behind a gap, a lane seq of 0 made the tracker compute
        // `lane_seq - 1` of 0: a panic in debug builds, a lane stuck at
        // u64::MAX (every later message dropped as a duplicate) in release;
        // a lane seq above the seq moved the lane past real messages.
        let mut origins = Origins::default();
        for (seq, lane_seq) in [(0, 1), (1, 0), (5, 6), (1, u64::MAX)] {
            let f = StampFields {
                seq,
                lane_seq,
                epoch: 9,
                ..Default::default()
            };
            let frames = [
                Bytes::from_static(b"chat.x"),
                to_bytes(&f, b"b1", None),
                Bytes::from_static(b"hi"),
            ];
            assert_eq!(
                decode_frames(frames, &mut origins).err(),
                Some(FrameError::BadSeq { seq, lane_seq })
            );
        }
    }
}
