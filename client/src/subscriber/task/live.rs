//! What the SUB socket brings: frames decoded into messages and
//! heartbeats, fed to the gap tracker ([`crate::gaps`]), and the tracker's
//! actions carried out (deliver, repair, report).

use std::sync::Arc;

use fanfare_protocol::heartbeat::LaneMark;
use tokio::time::Instant;

use super::sub_socket::Session;
use super::State;
use crate::events::ClientEvent;
use crate::gaps::{Action, Head};
use crate::message::{decode_broadcast, GapReason, Incoming, Message};
use crate::subscriber::zmtp_sub::{Broadcast, SubConn, SubError};
use fanfare_protocol::session::Marker;

/// Most messages taken from one SUB per wake-up: the one that woke the
/// task and those already buffered behind it (no read, no wait).
const MAX_BATCH: usize = 256;

impl State {
    /// What broadcaster `i`'s SUB brought: `first`, then the messages
    /// already buffered behind it, at most [`MAX_BATCH`] in all. Returns
    /// how many were taken (the loop spends that much cooperative budget).
    pub(super) fn on_frames(&mut self, i: usize, first: Result<Broadcast, SubError>) -> usize {
        let frames = match first {
            Ok(frames) => frames,
            Err(e) => {
                self.retry_later(i, &e.to_string());
                return 1;
            }
        };
        self.heard_from(i);
        self.on_broadcast(i, frames);
        for taken in 1..MAX_BATCH {
            // The pause's rule per message, not per wake-up: once the
            // parking bound fills during a repair, the rest of the batch
            // stays buffered instead of being read, dropped and fetched
            // again (up to a batch each time the bound fills).
            if self.reads_paused() {
                return taken;
            }
            let Some(sub) = self.sockets[i].as_mut() else {
                return taken;
            };
            match sub.buffered() {
                Ok(Some(frames)) => self.on_broadcast(i, frames),
                Ok(None) => return taken,
                Err(e) => {
                    self.retry_later(i, &e.to_string());
                    return taken;
                }
            }
        }
        MAX_BATCH
    }

    /// Broadcaster `i` is heard (once per batch).
    fn heard_from(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.last_traffic = Instant::now();
        if !slot.heard {
            slot.heard = true;
            slot.backoff.reset();
            self.task.replay.set_alive(i, true);
        }
        if !self.heard {
            self.heard = true;
            self.connected.send_replace(true);
            let _ = self.task.events.send(ClientEvent::Connected);
        }
    }

    /// One broadcast of broadcaster `i`.
    fn on_broadcast(&mut self, i: usize, frames: Broadcast) {
        match decode_broadcast(frames, &mut self.origins) {
            Ok(Incoming::Message(m)) => {
                self.note_source(&m.stamp.origin, i);
                self.note_relayed(i, &m.stamp.origin);
                let slot = &mut self.slots[i];
                let session = slot
                    .session
                    .as_ref()
                    .and_then(|s| s.floor(&m.stamp.origin, m.stamp.epoch));
                if session.is_some() {
                    slot.complete_to = slot.complete_to.max(m.stamp.seq);
                }
                self.track(m, Via::Live(session));
            }
            Ok(Incoming::Heartbeat {
                origin,
                epoch,
                seq,
                beat,
            }) => {
                self.note_source(&origin, i);
                self.note_relayed(i, &origin);
                let slot = &mut self.slots[i];
                let session = slot.session.as_ref().and_then(|s| s.floor(&origin, epoch));
                if session.is_some() {
                    slot.complete_to = slot.complete_to.max(seq);
                }
                self.on_heartbeat(origin, epoch, seq, &beat.lanes, session);
            }
            Ok(Incoming::Ack) => {}
            Ok(Incoming::Session {
                origin,
                epoch,
                seq,
                marker,
            }) => self.on_marker(i, origin, epoch, seq, marker),
            Err(e) => {
                // It may have been a marker this client cannot read (after a
                // miss): the connection is no longer known complete.
                self.slots[i].session = None;
                tracing::debug!(error = %e, "skipping malformed broadcast");
            }
        }
    }

    /// Notes (once) that broadcaster `i` relays an origin not its own. Per
    /// message: once noted, one load; before, the origin names are the
    /// same interned `Arc` (`Origins`), so a pointer compare.
    fn note_relayed(&self, i: usize, origin: &Arc<str>) {
        if self.relayed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(own) = self.slots[i].last_session.as_ref() else {
            return;
        };
        if !Arc::ptr_eq(&own.origin, origin) && *own.origin != **origin {
            tracing::debug!(origin = %origin, own = %own.origin, "the broadcaster relays another origin");
            self.relayed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Tells the replay sources which broadcaster delivered an origin first
    /// (once per origin, at most `MAX_ORIGINS`; no lock per message).
    fn note_source(&mut self, origin: &Arc<str>, i: usize) {
        if self.slots.len() < 2 || self.sources_noted.contains(origin) {
            return;
        }
        if self.sources_noted.len() < crate::replay_sources::MAX_ORIGINS {
            self.sources_noted.insert(origin.clone());
            self.task.replay.saw(origin, i);
        }
    }

    /// A session marker of broadcaster `i`: the connection is complete from
    /// `seq` on if the marker follows every subscription change written on
    /// it (else a later marker will). After a miss (a count, or the first
    /// marker of a new connection) with a session before it, what lies
    /// between the last seq heard in that session and `seq` is swept
    /// (`gaps::sweep`), and the session keeps its old start (only with one
    /// broadcaster: see below).
    fn on_marker(&mut self, i: usize, origin: Arc<str>, epoch: u64, seq: u64, marker: Marker) {
        let sent = self.sockets[i].as_ref().map(SubConn::sent);
        let one_path = self.slots.len() == 1;
        let slot = &mut self.slots[i];
        let fresh = std::mem::take(&mut slot.fresh);
        if marker.missed > 0 {
            tracing::debug!(missed = marker.missed, seq, "session marker after a miss");
        }
        if sent != Some(marker.changes) {
            slot.session = None;
            return;
        }
        let mut start = seq;
        // The start of the latest session of this origin and epoch, if any.
        let previous = slot
            .last_session
            .as_ref()
            .filter(|s| *s.origin == *origin && s.epoch == epoch)
            .map(|s| s.seq);
        // With several broadcasters, the origin may have come through
        // another one meanwhile (federation): a sweep would fetch it again
        // and, were that range gone from history, report as lost what was
        // delivered. There the lanes find what is missing, as before.
        let missed = marker.missed > 0 || fresh;
        if let Some(old_start) = previous.filter(|_| one_path && missed) {
            let from = slot.complete_to.saturating_add(1);
            let mut actions = Vec::new();
            let swept = from > seq
                || self
                    .tracker
                    .sweep(&origin, epoch, (from, seq), Some(old_start), &mut actions);
            if swept {
                tracing::debug!(from, to = seq, "sweeping what the connection missed");
                start = old_start;
            }
            self.apply(actions);
        }
        let slot = &mut self.slots[i];
        slot.complete_to = match previous {
            Some(_) => slot.complete_to.max(seq),
            None => seq,
        };
        for reply in self.applying.drain(..) {
            let _ = reply.send(crate::PatternsApplied {
                origin: origin.clone(),
                epoch,
                seq,
            });
        }
        let session = Session {
            origin,
            epoch,
            seq: start,
        };
        slot.session = Some(session.clone());
        slot.last_session = Some(session);
    }

    fn on_heartbeat(
        &mut self,
        origin: Arc<str>,
        epoch: u64,
        seq: u64,
        lanes: &[LaneMark],
        session: Option<u64>,
    ) {
        let mut actions = Vec::new();
        let registry = &self.registry;
        let floor = |lane| registry.floor_for_lane(&origin, epoch, lane);
        self.tracker
            .on_heartbeat(&origin, epoch, seq, lanes, floor, session, &mut actions);
        self.apply(actions);
    }

    /// Carries out tracker actions in order.
    pub(super) fn apply(&mut self, mut actions: Vec<Action<Message>>) {
        self.apply_all(&mut actions);
    }

    /// Carries out tracker actions in order, leaving `actions` empty.
    fn apply_all(&mut self, actions: &mut Vec<Action<Message>>) {
        for a in actions.drain(..) {
            match a {
                Action::Deliver(m) => self.deliver(m),
                Action::Repair(t) => {
                    tracing::debug!(origin = %t.origin, lane = ?t.lane, from = t.from, to = t.to, "repairing gap");
                    self.next_round(t, None, 0, false);
                }
                Action::Restarted {
                    origin,
                    old_epoch,
                    new_epoch,
                } => {
                    tracing::info!(%origin, old_epoch, new_epoch, "broadcaster restarted");
                    let _ = self.task.events.send(ClientEvent::BroadcasterRestarted {
                        origin,
                        old_epoch,
                        new_epoch,
                    });
                }
                Action::Abandoned(t) => {
                    self.lost(&t, t.from, t.to, GapReason::EpochGone);
                }
                Action::Duplicate(m) => {
                    tracing::trace!(seq = m.stamp.seq, "duplicate dropped");
                }
                Action::Stale(m) => {
                    tracing::debug!(
                        epoch = m.stamp.epoch,
                        seq = m.stamp.seq,
                        "stale epoch dropped"
                    );
                }
            }
        }
    }

    /// One message of a sweep's reply: through its lane, like a live one.
    pub(super) fn sweep_reply(&mut self, m: Message) {
        self.track(m, Via::Sweep);
    }

    /// Hands `m` to the tracker and carries out what it says (the action
    /// vector is reused: no allocation per message).
    fn track(&mut self, m: Message, via: Via) {
        let head = head_of(&m);
        let origin = m.stamp.origin.clone();
        let topic = m.topic.clone();
        let registry = &self.registry;
        let floor = || registry.floor_for_topic(&origin, head.epoch, &topic);
        let mut actions = std::mem::take(&mut self.actions);
        match via {
            Via::Live(session) => {
                self.tracker
                    .on_message(&origin, head, m, floor, session, &mut actions);
            }
            Via::Sweep => {
                self.tracker
                    .on_sweep_reply(&origin, head, m, floor, &mut actions);
            }
        }
        self.apply_all(&mut actions);
        self.actions = actions;
    }

    pub(super) fn deliver(&mut self, mut m: Message) {
        let tracker = &self.tracker;
        let low = |o: &str| tracker.lowest_pending(o);
        if !self.publisher_seqs.fresh(m.stamp.publisher_seq) {
            // Still queued, marked: a subscription drops it when it is taken
            // unless it keeps them (the hub's feed, whose reorder must know
            // this seq will not come as a message).
            tracing::trace!(seq = m.stamp.seq, "re-sent copy marked");
            m.resent = true;
        }
        self.registry.deliver(m, &low);
    }
}

impl State {
    /// How far the stream of the broadcaster's own origin is complete (see
    /// [`crate::Watermark`]): with one broadcaster and in a session, up to
    /// the highest seq heard in it, and below any repair or sweep of that
    /// origin still pending. With several broadcasters the origin may also
    /// come by another path, where the lanes rule (no watermark).
    pub(super) fn watermark(&self) -> Option<(Arc<str>, u64, u64)> {
        let [slot] = self.slots.as_slice() else {
            return None;
        };
        let s = slot.session.as_ref()?;
        let mut through = slot.complete_to;
        if let Some((epoch, low)) = self.tracker.lowest_pending(&s.origin) {
            if epoch == s.epoch {
                through = through.min(low.saturating_sub(1));
            }
        }
        (through > 0).then(|| (s.origin.clone(), s.epoch, through))
    }
}

/// How a message reached the tracker.
enum Via {
    /// Live, on a connection complete for its origin after this seq (if in
    /// a session).
    Live(Option<u64>),
    /// In a sweep's reply.
    Sweep,
}

/// The stamp fields the gap tracker needs.
fn head_of(m: &Message) -> Head {
    Head {
        epoch: m.stamp.epoch,
        seq: m.stamp.seq,
        lane: m.stamp.lane,
        lane_seq: m.stamp.lane_seq,
    }
}
