//! The forwarder: the one task that stamps. It takes ingress batches, stamps
//! each message (origin, epoch, seq, lane seq), encodes the whole round of
//! messages once into one buffer, appends zero-copy slices of it to history
//! and queues slices of it to every subscriber. It also sends heartbeats.
//!
//! Per round: one buffer allocation and one history lock, whatever the
//! number of messages; per message: no allocation.

use std::ops::Range;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use fanfare_protocol::heartbeat::{Heartbeat, MAX_HEARTBEAT_LANES};
use fanfare_protocol::stamp::{self, StampFields, FLAG_HEARTBEAT};
use tokio::sync::mpsc;

use crate::federation::{FromLink, Relay, Sinks};
use crate::history::{Entry, History};
use crate::ingress::Incoming;
use crate::lanes::Lanes;
use crate::metrics::Metrics;
use crate::publishers::{Publishers, MAX_PUBLISHERS};
use crate::subscribers::{Control, Encoded, Subscribers};
use crate::zmtp::{put_frame, MAX_FRAME_HEADER};

/// Most ingress batches taken per round.
const BATCHES_PER_ROUND: usize = 64;
/// Most subscription changes applied in one go (before a round, or when
/// control wakes the loop): a SUBSCRIBE flood cannot hold ingress back.
const CONTROL_PER_ROUND: usize = 256;

/// The stamping and fan-out state.
pub(crate) struct Forwarder {
    id: String,
    epoch: u64,
    seq: u64,
    lanes: Lanes,
    /// Publisher-seq dedup and the acks owed (confirmed publish).
    publishers: Publishers,
    history: Arc<RwLock<History>>,
    subscribers: Subscribers,
    metrics: Arc<Metrics>,
    encoded: Vec<Encoded>,
    stamped: Vec<Stamped>,
    heartbeat_topic: Bytes,
    /// Federation: the relay and the channel links feed (see `federation/`).
    federation: Option<(Relay, mpsc::Receiver<FromLink>)>,
    /// Our replay endpoint, announced in heartbeats (peers' links learn it).
    replay_endpoint: Option<String>,
}

/// How often the forwarder lets the relay ask for due repairs.
const RELAY_TICK: Duration = Duration::from_millis(10);
/// How often owed session markers are tried again while some are owed
/// (each try walks the owing subscribers only).
const MARKER_RETRY: Duration = Duration::from_millis(20);

/// What history needs of one message of the round, beside its [`Encoded`]
/// ranges (kept in a reused vector: no allocation per round).
struct Stamped {
    seq: u64,
    lane: u16,
    stamp: Range<usize>,
    payload: Range<usize>,
}

impl Forwarder {
    /// A forwarder for origin `id` at `epoch`.
    pub(crate) fn new(
        id: &str,
        epoch: u64,
        history: Arc<RwLock<History>>,
        subscribers: Subscribers,
        metrics: Arc<Metrics>,
    ) -> Self {
        let publishers = Publishers::new(MAX_PUBLISHERS, metrics.publishers.clone());
        Self {
            id: id.to_owned(),
            epoch,
            seq: 0,
            lanes: Lanes::new(),
            publishers,
            history,
            subscribers,
            metrics,
            encoded: Vec::new(),
            stamped: Vec::new(),
            heartbeat_topic: Bytes::from(format!("{}{id}", fanfare_protocol::HEARTBEAT_PREFIX)),
            federation: None,
            replay_endpoint: None,
        }
    }

    /// Adds federation: the relay, the channel links feed, and the replay
    /// endpoint our heartbeats announce.
    pub(crate) fn federate(
        mut self,
        relay: Option<(Relay, mpsc::Receiver<FromLink>)>,
        replay_endpoint: String,
    ) -> Self {
        self.federation = relay;
        self.replay_endpoint = Some(replay_endpoint);
        self
    }

    /// Runs until every ingress sender is gone (shutdown drained ingress),
    /// then sends a last heartbeat and returns, closing subscriber queues.
    pub(crate) async fn run(
        mut self,
        mut ingress: mpsc::Receiver<Vec<Incoming>>,
        mut control: mpsc::Receiver<Control>,
        heartbeat: Duration,
    ) {
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut batches = Vec::with_capacity(BATCHES_PER_ROUND);
        let (mut relay, mut fed) = self.federation.take().unzip();
        let mut relay_tick = tokio::time::interval(RELAY_TICK);
        relay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut marker_tick = tokio::time::interval(MARKER_RETRY);
        marker_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // No priority between control and ingress (select picks at random
        // among ready branches), and control is applied in bounded bursts.
        loop {
            tokio::select! {
                Some(c) = control.recv() => {
                    self.subscribers.apply(c, &self.metrics);
                    self.apply_control(&mut control);
                }
                n = ingress.recv_many(&mut batches, BATCHES_PER_ROUND) => {
                    if n == 0 {
                        break;
                    }
                    // Apply pending subscription changes first (bounded), so a
                    // subscriber that subscribed before this round gets it.
                    self.apply_control(&mut control);
                    self.forward(&mut batches);
                }
                _ = tick.tick() => self.heartbeat(),
                // An owed marker waits for its queue to drain to half; with
                // nothing else coming it would wait for the next heartbeat,
                // and the subscriber would learn of its miss that late.
                _ = marker_tick.tick(), if self.subscribers.markers_due() => self.send_markers(),
                f = crate::federation::recv(&mut fed) => match (f, relay.as_mut()) {
                    (Some(f), Some(r)) => {
                        self.apply_control(&mut control);
                        r.accept(f, &mut self.sinks());
                    }
                    _ => fed = None,
                },
                _ = relay_tick.tick(), if relay.is_some() => {
                    if let Some(r) = relay.as_mut() {
                        r.tick(&mut self.sinks());
                    }
                }
            }
        }
        while let Ok(c) = control.try_recv() {
            self.subscribers.apply(c, &self.metrics);
        }
        self.heartbeat();
    }

    /// What the relay publishes into.
    fn sinks(&mut self) -> Sinks<'_> {
        Sinks {
            history: &self.history,
            subscribers: &mut self.subscribers,
            metrics: &self.metrics,
        }
    }

    /// Applies up to [`CONTROL_PER_ROUND`] queued subscription changes.
    /// Then queues the session markers owed (before anything else goes out).
    fn apply_control(&mut self, control: &mut mpsc::Receiver<Control>) {
        for _ in 0..CONTROL_PER_ROUND {
            let Ok(c) = control.try_recv() else { break };
            self.subscribers.apply(c, &self.metrics);
        }
        self.send_markers();
    }

    /// Queues the session markers owed: `[_fanfare.sess, stamp (session
    /// flag, our origin and epoch, seq = last stamped), marker (missed,
    /// subscription changes applied)]`.
    fn send_markers(&mut self) {
        if !self.subscribers.markers_due() {
            return;
        }
        let fields = StampFields {
            flags: stamp::FLAG_SESSION,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_us: stamp::now_us(),
            ..StampFields::default()
        };
        let origin = self.id.as_bytes();
        let encode = |marker: fanfare_protocol::session::Marker| {
            let mut out = BytesMut::new();
            encode_message(
                &mut out,
                fanfare_protocol::SESSION_TOPIC.as_bytes(),
                |o| stamp::encode(o, &fields, origin, None),
                stamp::encoded_len(origin, None),
                &marker.encode(),
            );
            out.freeze()
        };
        self.subscribers.send_markers(encode, &self.metrics);
    }

    /// Stamps, stores and fans out one round of batches.
    fn forward(&mut self, batches: &mut Vec<Vec<Incoming>>) {
        let origin = self.id.as_bytes();
        let size: usize = batches
            .iter()
            .flatten()
            .map(|m| {
                3 * MAX_FRAME_HEADER
                    + m.topic.len()
                    + m.payload.len()
                    + stamp::encoded_len(origin, m.meta.as_deref())
            })
            .sum();
        let mut out = BytesMut::with_capacity(size);
        let now_us = stamp::now_us();
        self.encoded.clear();
        self.stamped.clear();
        for m in batches.iter().flatten() {
            // A re-sent message (publisher seq already stamped) is dropped.
            if !self.publishers.admit(m.meta.as_deref(), self.seq + 1) {
                continue;
            }
            self.seq += 1;
            let lane_id = stamp::lane_of(&m.topic);
            let lane_seq = self.lanes.stamp(lane_id, self.seq);
            let fields = StampFields {
                flags: 0,
                hops: 0,
                lane: lane_id,
                epoch: self.epoch,
                seq: self.seq,
                lane_seq,
                timestamp_us: now_us,
            };
            let meta = m.meta.as_deref();
            let (encoded, stamp_r, payload_r) = encode_message(
                &mut out,
                &m.topic,
                |o| stamp::encode(o, &fields, origin, meta),
                stamp::encoded_len(origin, meta),
                &m.payload,
            );
            self.encoded.push(encoded);
            self.stamped.push(Stamped {
                seq: self.seq,
                lane: lane_id,
                stamp: stamp_r,
                payload: payload_r,
            });
        }
        batches.clear();
        let buf = out.freeze();
        self.store(&buf);
        self.metrics.last_seq.set(self.seq);
        self.metrics
            .round_messages
            .observe(self.encoded.len() as f64);
        self.subscribers.fan_out(&buf, &self.encoded, &self.metrics);
        self.send_acks();
    }

    /// Publishes the acks owed to confirmed publishers, after the messages
    /// they cover.
    fn send_acks(&mut self) {
        let p = &mut self.publishers;
        if let Some(buf) = p.encode_acks(self.id.as_bytes(), self.epoch, self.seq) {
            self.subscribers.fan_out(&buf, p.encoded(), &self.metrics);
        }
    }

    /// Appends the round to history and applies its bounds.
    fn store(&self, buf: &Bytes) {
        let Ok(mut h) = self.history.write() else {
            return;
        };
        let at = Instant::now();
        for (e, m) in self.encoded.iter().zip(&self.stamped) {
            let entry = Entry::new(
                m.seq,
                m.lane,
                buf,
                e,
                m.stamp.clone(),
                m.payload.clone(),
                at,
            );
            match entry {
                Some(entry) => {
                    h.push(&self.id, entry);
                }
                None => tracing::error!(seq = m.seq, "encoded frames out of place; not stored"),
            }
        }
        self.evict(&mut h, at);
    }

    fn evict(&self, h: &mut History, now: Instant) {
        let evicted = h.evict(now);
        let (n, bytes, oldest) = h.usage(&self.id);
        let m = &self.metrics;
        m.history_evicted.inc_by(evicted as u64);
        m.history_messages.set(n as u64);
        m.history_bytes.set(bytes as u64);
        m.history_oldest.set(oldest);
    }

    /// Publishes a heartbeat (and acks still owed) and applies the history
    /// age bound.
    fn heartbeat(&mut self) {
        self.send_markers();
        self.send_acks();
        let oldest = match self.history.write() {
            Ok(mut h) => {
                self.evict(&mut h, Instant::now());
                h.usage(&self.id).2
            }
            Err(_) => 0,
        };
        let hb = Heartbeat {
            oldest,
            // The most recently active lanes, most recent first.
            lanes: self.lanes.recent(MAX_HEARTBEAT_LANES),
            replay: self.replay_endpoint.clone(),
        };
        let mut payload = Vec::with_capacity(10 + hb.lanes.len() * 18);
        hb.encode(&mut payload);
        let fields = StampFields {
            flags: FLAG_HEARTBEAT,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_us: stamp::now_us(),
            ..StampFields::default()
        };
        let mut out = BytesMut::new();
        let (e, _, _) = encode_message(
            &mut out,
            &self.heartbeat_topic,
            |o| stamp::encode(o, &fields, self.id.as_bytes(), None),
            stamp::encoded_len(self.id.as_bytes(), None),
            &payload,
        );
        self.metrics.heartbeats.inc();
        self.subscribers.fan_out(&out.freeze(), &[e], &self.metrics);
    }
}

/// Appends `[topic, stamp, payload]` as ZMTP frames; returns the message's
/// ranges and the stamp and payload body ranges.
pub(crate) fn encode_message(
    out: &mut BytesMut,
    topic: &[u8],
    write_stamp: impl FnOnce(&mut BytesMut),
    stamp_len: usize,
    payload: &[u8],
) -> (Encoded, Range<usize>, Range<usize>) {
    let start = out.len();
    let topic = put_frame(out, topic.len(), true, |o| o.put_slice(topic));
    let stamp = put_frame(out, stamp_len, true, write_stamp);
    let payload = put_frame(out, payload.len(), false, |o| o.put_slice(payload));
    let frames = start..out.len();
    (Encoded { frames, topic }, stamp, payload)
}
