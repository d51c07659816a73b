//! The forwarder's side of federation: what it does with messages links
//! bring. Owned by the forwarder task (no lock of its own).
//!
//! Per message: our own origin → dropped (`self_drops`); `hops` ≥ the hop
//! limit → dropped (`hop_limit_drops`); otherwise offered to the origin's
//! [`Window`]: duplicates are cut, the next seq is published with every held
//! successor, later seqs are held and their gap repaired through the link
//! that brought them. A newer epoch of an origin starts a new window at seq
//! 1 (a restarted origin); messages of an older epoch are dropped as
//! duplicates. Heartbeats of other origins are forwarded once each (newer
//! stamp time), only when caught up, with `oldest` rewritten to this
//! broadcaster's history; they open tail gaps.
//!
//! Publishing copies the three frames into one round buffer, with the stamp
//! byte for byte except `hops` + 1, appends data messages to history under
//! their own origin and fans out like the forwarder's own messages
//! (`relay/publish.rs`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fanfare_protocol::heartbeat::Heartbeat;
use fanfare_protocol::stamp::StampRef;
use tokio::sync::mpsc;

mod publish;

use super::interest::Interest;
use super::window::{Offer, Window};
use super::{FromLink, Linked, RepairRequest};
use crate::history::History;
use crate::metrics::{LinkMetrics, LogKind, Metrics};
use crate::subscribers::Subscribers;

/// Most origins tracked; past it the least recently heard one is forgotten
/// (its window and its history).
pub(crate) const MAX_ORIGINS: usize = 1024;
/// How long a gap waits for the missing seqs to arrive by another path
/// before a repair is asked for.
const REPAIR_GRACE: Duration = Duration::from_millis(30);
/// A repair that has not reported back in this long is taken as failed.
const REPAIR_STUCK: Duration = Duration::from_secs(15);
/// How often the origin table in `/stats` is refreshed.
const VIEW_EVERY: Duration = Duration::from_secs(1);
/// Offset of the hops byte in a stamp.
const HOPS_AT: usize = 2;

/// A message waiting in a window.
#[derive(Debug)]
struct Pending {
    link: usize,
    msg: Linked,
    repaired: bool,
}

/// One origin heard over links.
#[derive(Debug)]
struct OriginState {
    window: Window<Pending>,
    /// The link that brought the highest seq (repairs go through it).
    via: usize,
    hops: u8,
    lag_us: u64,
    /// Stamp time of the last heartbeat forwarded.
    heartbeat_us: u64,
    /// LRU clock.
    used: u64,
    /// Per link: (session, highest seq of this origin seen in it).
    on_link: Vec<(u64, u64)>,
    /// The origin's own replay endpoint (from its heartbeats' trailer).
    replay: Option<String>,
    /// A direct repair from the origin is in flight; if it fails, seqs up
    /// to this one are given up.
    pending_lost: Option<u64>,
}

/// What one flush publishes.
enum Out {
    Data(Pending),
    Heartbeat { msg: Linked, beat: Heartbeat },
}

/// What a flush needs of the forwarder.
pub(crate) struct Sinks<'a> {
    /// History.
    pub(crate) history: &'a Arc<RwLock<History>>,
    /// Subscriber slots.
    pub(crate) subscribers: &'a mut Subscribers,
    /// Metrics.
    pub(crate) metrics: &'a Metrics,
}

/// Federation state of one broadcaster.
pub(crate) struct Relay {
    own: String,
    hop_limit: u8,
    links: Vec<Arc<LinkMetrics>>,
    repair: Vec<mpsc::Sender<RepairRequest>>,
    origins: HashMap<String, OriginState>,
    clock: u64,
    out: Vec<Out>,
    /// Origins forgotten (LRU), to drop from history at the next flush.
    forgotten: Vec<String>,
    /// `(origin, epoch, to)`: history of these must not answer for `..=to`.
    lost: Vec<(String, u64, u64)>,
    view_at: Instant,
    interest: Interest,
}

impl Relay {
    /// A relay for origin `own`; `links[i]` and `repair[i]` are link `i`'s.
    pub(crate) fn new(
        own: &str,
        hop_limit: u8,
        links: Vec<Arc<LinkMetrics>>,
        repair: Vec<mpsc::Sender<RepairRequest>>,
        interest: Interest,
    ) -> Self {
        Self {
            own: own.to_owned(),
            hop_limit,
            links,
            repair,
            origins: HashMap::new(),
            clock: 0,
            out: Vec::new(),
            forgotten: Vec::new(),
            lost: Vec::new(),
            view_at: Instant::now(),
            interest,
        }
    }

    /// Takes one item from the federation channel and publishes what it
    /// made publishable.
    pub(crate) fn accept(&mut self, item: FromLink, sinks: &mut Sinks<'_>) {
        let now = Instant::now();
        match item {
            FromLink::Messages {
                link,
                session,
                msgs,
                repaired,
            } => {
                for msg in msgs {
                    self.offer(link, session, msg, repaired, now, sinks.metrics);
                }
            }
            FromLink::Unrecoverable {
                link,
                origin,
                epoch,
                to,
                direct,
            } => {
                if direct || !self.ask_origin(link, &origin, epoch, to) {
                    if let Some(st) = self.origins.get_mut(&origin) {
                        st.pending_lost = None;
                    }
                    self.give_up(link, &origin, epoch, Some(to), sinks.metrics);
                }
            }
            FromLink::RepairDone {
                link,
                origin,
                epoch,
                direct: true,
            } => {
                let lost = self
                    .origins
                    .get_mut(&origin)
                    .filter(|st| st.window.epoch == epoch)
                    .and_then(|st| st.pending_lost.take());
                if let Some(to) = lost {
                    self.give_up(link, &origin, epoch, Some(to), sinks.metrics);
                }
            }
            FromLink::RepairDone {
                link,
                origin,
                epoch,
                direct: false,
            } => {
                let fruitless = match self.origins.get_mut(&origin) {
                    Some(st) if st.window.epoch == epoch => st.window.repair_done(now),
                    _ => false,
                };
                if fruitless {
                    self.give_up(link, &origin, epoch, None, sinks.metrics);
                }
            }
        }
        self.flush(sinks);
    }

    /// Asks for due repairs, ends stuck ones, refreshes the `/stats` view.
    pub(crate) fn tick(&mut self, sinks: &mut Sinks<'_>) {
        let now = Instant::now();
        let heard = sinks.subscribers.take_announcements();
        let changed = sinks.subscribers.take_local_changed();
        let local = changed.then(|| sinks.subscribers.local_prefixes());
        self.interest.tick(now, heard, local);
        for (origin, st) in &mut self.origins {
            if st.window.repair_stuck(now, REPAIR_STUCK) {
                st.window.repair_done(now);
            }
            if !st.window.repair_due(now, REPAIR_GRACE) {
                continue;
            }
            let Some((from, to)) = st.window.gap() else {
                continue;
            };
            let req = RepairRequest {
                origin: origin.clone(),
                epoch: st.window.epoch,
                from,
                to,
                direct: None,
            };
            // Full: asked again next tick.
            if let Some(tx) = self.repair.get(st.via) {
                if tx.try_send(req).is_ok() {
                    st.window.repair_started(now);
                }
            }
        }
        if now.saturating_duration_since(self.view_at) >= VIEW_EVERY {
            self.view_at = now;
            self.refresh_view(sinks.metrics);
        }
        self.flush(sinks);
    }

    fn offer(
        &mut self,
        link: usize,
        session: u64,
        msg: Linked,
        repaired: bool,
        now: Instant,
        metrics: &Metrics,
    ) {
        let Some(lm) = self.links.get(link).cloned() else {
            return;
        };
        // A refcount clone: `s` borrows it, not `msg` (moved below).
        let stamp = msg.stamp.clone();
        let Ok(s) = StampRef::decode(&stamp) else {
            lm.invalid.inc();
            return;
        };
        if s.origin == self.own {
            lm.self_drops.inc();
            return;
        }
        if s.hops >= self.hop_limit {
            let n = lm.hop_limit_drops.inc() + 1;
            if metrics.log_allowed(LogKind::Federation) {
                tracing::warn!(
                    link = %lm.name, origin = s.origin, hops = s.hops, limit = self.hop_limit,
                    total = n, "federation message dropped at the hop limit"
                );
            }
            return;
        }
        let heartbeat = s.is_heartbeat();
        let start = if heartbeat {
            s.seq.saturating_add(1)
        } else {
            s.seq
        };
        let (epoch, seq, hops, ts) = (s.epoch, s.seq, s.hops, s.timestamp_us);
        let origin = s.origin;
        let Some(st) = state(
            &mut self.origins,
            &mut self.clock,
            &mut self.forgotten,
            origin,
            epoch,
            start,
            self.links.len(),
        ) else {
            lm.duplicates.inc();
            return;
        };
        // Within one session the peer sent every message of this origin
        // that matches our subscription, in seq order: the seqs between the
        // last one seen in it and this one were filtered out (interest-only
        // forwarding), not lost — provided everything up to that last one
        // is published here.
        if let Some(slot) = st.on_link.get_mut(link).filter(|_| session != 0) {
            let (s0, last) = *slot;
            let upto = if heartbeat {
                seq
            } else {
                seq.saturating_sub(1)
            };
            if s0 == session && last < upto && st.window.next() > last {
                let n = skip_filtered(&mut st.window, upto, &mut self.out);
                lm.filtered.inc_by(n);
            }
            *slot = (session, if s0 == session { last.max(seq) } else { seq });
        }
        if heartbeat {
            let beat = Heartbeat::decode(&msg.payload).ok();
            if let Some(r) = beat.as_ref().and_then(|b| b.replay.as_ref()) {
                if st.replay.as_ref() != Some(r) {
                    st.replay = Some(r.clone());
                }
            }
            st.window.tell(seq, now);
            if !st.window.caught_up(seq) {
                st.via = link;
                return;
            }
            if ts <= st.heartbeat_us {
                return;
            }
            st.heartbeat_us = ts;
            if let Some(beat) = beat {
                self.out.push(Out::Heartbeat { msg, beat });
            }
            return;
        }
        let size = msg.topic.len() + msg.stamp.len() + msg.payload.len();
        let pending = Pending {
            link,
            msg,
            repaired,
        };
        match st.window.offer(seq, pending, size, now) {
            Offer::Publish(p) => {
                st.via = link;
                st.hops = hops;
                st.lag_us = fanfare_protocol::stamp::now_us().saturating_sub(ts);
                self.out.push(Out::Data(p));
                while let Some(p) = st.window.drain() {
                    self.out.push(Out::Data(p));
                }
            }
            Offer::Duplicate => {
                lm.duplicates.inc();
            }
            Offer::Held => {
                st.via = link;
                lm.held.inc();
            }
            Offer::Overflow => {
                st.via = link;
                if metrics.log_allowed(LogKind::Federation) {
                    tracing::warn!(link = %lm.name, origin = %origin, seq,
                        "federation reorder buffer full; message dropped, repaired later");
                }
            }
        }
    }

    /// The link's peer no longer holds seqs up to `to`: asks the origin's
    /// own replay endpoint once (if known, and not the peer's). Returns
    /// false when there is nobody else to ask (or a direct repair is
    /// already in flight and will decide).
    fn ask_origin(&mut self, link: usize, origin: &str, epoch: u64, to: u64) -> bool {
        let Some(st) = self.origins.get_mut(origin) else {
            return false;
        };
        if st.window.epoch != epoch {
            return false;
        }
        if st.pending_lost.is_some() {
            st.pending_lost = Some(st.pending_lost.unwrap_or(to).max(to));
            return true;
        }
        let peer_replay = self
            .links
            .get(link)
            .and_then(|l| l.replay.lock().ok().and_then(|r| r.clone()));
        let Some(endpoint) = st
            .replay
            .clone()
            .filter(|r| Some(r) != peer_replay.as_ref())
        else {
            return false;
        };
        let Some((from, _)) = st.window.gap() else {
            return false;
        };
        tracing::debug!(origin, %endpoint, ?peer_replay, "federation: asking the origin itself");
        let req = RepairRequest {
            origin: origin.to_owned(),
            epoch,
            from,
            to,
            direct: Some(endpoint),
        };
        let sent = self
            .repair
            .get(link)
            .is_some_and(|tx| tx.try_send(req).is_ok());
        if sent {
            st.pending_lost = Some(to);
        }
        sent
    }

    /// Gives up the origin's gap (up to `to`, or all of it) as
    /// unrecoverable, counted on `link`, and publishes what follows it.
    fn give_up(
        &mut self,
        link: usize,
        origin: &str,
        epoch: u64,
        to: Option<u64>,
        metrics: &Metrics,
    ) {
        let Some(st) = self.origins.get_mut(origin) else {
            return;
        };
        if st.window.epoch != epoch {
            return;
        }
        let Some((from, gap_to)) = st.window.gap() else {
            return;
        };
        let to = to.unwrap_or(gap_to);
        let skipped = st.window.skip_through(to);
        if skipped == 0 {
            return;
        }
        if let Some(lm) = self.links.get(link) {
            lm.unrecoverable.inc_by(skipped);
        }
        if metrics.log_allowed(LogKind::Federation) {
            tracing::warn!(
                origin,
                epoch,
                from,
                to = from + (skipped - 1),
                "federation: seqs unrecoverable from every peer tried; skipped"
            );
        }
        self.lost
            .push((origin.to_owned(), epoch, from + (skipped - 1)));
        while let Some(p) = st.window.drain() {
            self.out.push(Out::Data(p));
        }
    }
}

/// The origin's state in `epoch`, made (starting at `start`) or
/// restarted (a newer epoch starts at 1); `None` for an older epoch.
fn state<'a>(
    origins: &'a mut HashMap<String, OriginState>,
    clock: &mut u64,
    forgotten: &mut Vec<String>,
    origin: &str,
    epoch: u64,
    start: u64,
    links: usize,
) -> Option<&'a mut OriginState> {
    *clock += 1;
    let clock = *clock;
    if !origins.contains_key(origin) && origins.len() >= MAX_ORIGINS {
        let oldest = origins
            .iter()
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            origins.remove(&k);
            forgotten.push(k);
        }
    }
    // Allocates the key only for a new origin (not per message).
    if !origins.contains_key(origin) {
        let fresh = OriginState {
            window: Window::new(epoch, start),
            via: 0,
            hops: 0,
            lag_us: 0,
            heartbeat_us: 0,
            used: clock,
            on_link: vec![(0, 0); links],
            replay: None,
            pending_lost: None,
        };
        origins.insert(origin.to_owned(), fresh);
    }
    let st = origins.get_mut(origin)?;
    st.used = clock;
    if epoch > st.window.epoch {
        tracing::info!(origin, epoch, "federation: origin restarted (new epoch)");
        st.window = Window::new(epoch, 1);
        st.heartbeat_us = 0;
        st.on_link.iter_mut().for_each(|l| *l = (0, 0));
        st.pending_lost = None;
    }
    (epoch == st.window.epoch).then_some(st)
}

/// Skips every seq up to `to` that is not held, publishing held ones as
/// they come due; returns how many were skipped.
fn skip_filtered(w: &mut Window<Pending>, to: u64, out: &mut Vec<Out>) -> u64 {
    let mut skipped = 0;
    loop {
        let n = w.skip_through(to);
        skipped += n;
        let mut drained = false;
        while let Some(p) = w.drain() {
            out.push(Out::Data(p));
            drained = true;
        }
        if n == 0 && !drained {
            return skipped;
        }
    }
}

#[cfg(test)]
mod tests;
