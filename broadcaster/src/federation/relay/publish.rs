//! Publishing what the relay made publishable: one round buffer (stamps
//! byte for byte, `hops` + 1), one history lock, one fan-out; and the
//! `/stats` origin table.

use std::ops::Range;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use fanfare_protocol::stamp::StampRef;

use super::{Out, Relay, Sinks, HOPS_AT};
use crate::federation::Linked;
use crate::history::Entry;
use crate::metrics::{Metrics, OriginView};
use crate::subscribers::Encoded;
use crate::zmtp::{put_frame, MAX_FRAME_HEADER};

impl Relay {
    /// Publishes what the last calls made publishable: one buffer, one
    /// history lock, one fan-out.
    pub(super) fn flush(&mut self, sinks: &mut Sinks<'_>) {
        if self.out.is_empty() && self.forgotten.is_empty() && self.lost.is_empty() {
            return;
        }
        let Ok(mut h) = sinks.history.write() else {
            return;
        };
        for o in self.forgotten.drain(..) {
            h.forget(&o);
        }
        for (o, epoch, to) in self.lost.drain(..) {
            h.forget_through(&o, epoch, to);
        }
        let size: usize = self
            .out
            .iter()
            .map(|o| match o {
                Out::Data(p) => 3 * MAX_FRAME_HEADER + frames_len(&p.msg),
                Out::Heartbeat { msg, beat } => {
                    3 * MAX_FRAME_HEADER + frames_len(msg) + 10 + 18 * beat.lanes.len()
                }
            })
            .sum();
        let mut buf = BytesMut::with_capacity(size);
        let mut encoded = Vec::with_capacity(self.out.len());
        let mut stored: Vec<(usize, Range<usize>, Range<usize>)> = Vec::new();
        for (i, o) in self.out.iter_mut().enumerate() {
            match o {
                Out::Data(p) => {
                    let (e, s, pl) = encode(&mut buf, &p.msg, &p.msg.payload);
                    encoded.push(e);
                    stored.push((i, s, pl));
                }
                Out::Heartbeat { msg, beat } => {
                    // `oldest` as this broadcaster's history holds it.
                    let origin = StampRef::decode(&msg.stamp).map(|s| s.origin.to_owned());
                    if let Ok(o) = origin {
                        beat.oldest = h.usage(&o).2.max(1);
                    }
                    let mut payload = Vec::with_capacity(10 + 18 * beat.lanes.len());
                    beat.encode(&mut payload);
                    let (e, _, _) = encode(&mut buf, msg, &payload);
                    encoded.push(e);
                }
            }
        }
        let buf = buf.freeze();
        let at = Instant::now();
        for (i, s, pl) in stored {
            let Out::Data(p) = &self.out[i] else { continue };
            let Ok(st) = StampRef::decode(&p.msg.stamp) else {
                continue;
            };
            if h.epoch_of(st.origin) != Some(st.epoch) {
                h.start_epoch(st.origin, st.epoch);
            }
            match Entry::new(st.seq, st.lane, &buf, &encoded[i], s, pl, at) {
                Some(entry) => {
                    h.push(st.origin, entry);
                }
                None => tracing::error!(seq = st.seq, "encoded frames out of place; not stored"),
            }
            if let Some(lm) = self.links.get(p.link) {
                lm.republished.inc();
                if p.repaired {
                    lm.repaired.inc();
                }
            }
        }
        let evicted = h.evict(at);
        drop(h);
        sinks.metrics.history_evicted.inc_by(evicted as u64);
        self.out.clear();
        sinks.subscribers.fan_out(&buf, &encoded, sinks.metrics);
    }

    pub(super) fn refresh_view(&self, metrics: &Metrics) {
        let mut v: Vec<OriginView> = self
            .origins
            .iter()
            .map(|(o, s)| OriginView {
                origin: o.clone(),
                epoch: s.window.epoch,
                seq: s.window.next().saturating_sub(1),
                via: self
                    .links
                    .get(s.via)
                    .map_or_else(String::new, |l| l.name.clone()),
                hops: s.hops,
                lag_us: s.lag_us,
                held: s.window.held(),
            })
            .collect();
        v.sort_by(|a, b| a.origin.cmp(&b.origin));
        if let Ok(mut o) = metrics.origins.lock() {
            *o = v;
        }
    }
}

fn frames_len(m: &Linked) -> usize {
    m.topic.len() + m.stamp.len() + m.payload.len()
}

/// Appends `[topic, stamp with hops + 1, payload]`; returns the message's
/// ranges and the stamp and payload body ranges.
fn encode(out: &mut BytesMut, m: &Linked, payload: &[u8]) -> (Encoded, Range<usize>, Range<usize>) {
    let start = out.len();
    let topic = put_frame(out, m.topic.len(), true, |o| o.put_slice(&m.topic));
    let stamp = put_frame(out, m.stamp.len(), true, |o| o.put_slice(&m.stamp));
    if let Some(h) = out.get_mut(stamp.start + HOPS_AT) {
        *h = h.saturating_add(1);
    }
    let payload = put_frame(out, payload.len(), false, |o| o.put_slice(payload));
    let frames = start..out.len();
    (Encoded { frames, topic }, stamp, payload)
}
