//! The subscriptions of one client: patterns, SUB prefixes (refcounted),
//! per-subscription start marks, bounded queues and the slow-consumer rule.
//!
//! Owned by the subscriber task; touches no socket. Prefix changes and
//! slow-consumer closures are collected as [`Effects`] for the task to carry
//! out.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::stamp::lane_of;
use fanfare_protocol::RESERVED_PREFIX;
use tokio::sync::{mpsc, oneshot};

use super::held::{CatchUp, Queue};
use crate::message::{CloseReason, Delivery, Gap, Message};
use crate::subscription::Parts;

/// (epoch, seq).
pub(crate) type Mark = (u64, u64);

/// How long a catching-up subscription's application may leave queued items
/// untaken (while live messages overflow what is held) before it is closed
/// as a slow consumer. A live subscription has no such grace: its full
/// queue closes it.
const STALL: Duration = Duration::from_millis(500);

/// The delivery that did not fit: its origin and mark (none for a gap).
type Failed = Option<(Arc<str>, Mark)>;

struct Entry {
    pattern: Pattern,
    /// Lane of the literal first word; `None` for a wildcard first word.
    lane: Option<u16>,
    queue: Queue,
    reason: Option<oneshot::Sender<CloseReason>>,
    /// Only messages after these marks are delivered.
    start: HashMap<Arc<str>, Mark>,
    delivered: HashMap<Arc<str>, Mark>,
    catch_up: Option<CatchUp>,
}

/// Socket-level work for the subscriber task.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// The set of SUB prefixes changed.
    pub dirty: bool,
    /// Subscriptions closed as slow: (pattern, position).
    pub slow: Vec<(String, Position)>,
}

/// All subscriptions.
pub(crate) struct Registry {
    subs: HashMap<u64, Entry>,
    prefixes: HashMap<String, usize>,
    capacity: usize,
    /// A catching-up subscription whose application has taken nothing for
    /// this long while items wait is closed as slow (see [`super::held`]).
    stall: Duration,
    next_id: u64,
    effects: Effects,
}

impl Registry {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            subs: HashMap::new(),
            prefixes: HashMap::new(),
            capacity,
            stall: STALL,
            next_id: 0,
            effects: Effects::default(),
        }
    }

    /// Sets the grace of catching-up subscriptions (tests).
    #[cfg(test)]
    pub(crate) fn stall_after(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// Registers a subscription delivering messages after `start`; with
    /// `catch_up`, its live deliveries are held until history is delivered.
    /// Returns its parts and a sender for a catch-up task.
    pub(crate) fn add(
        &mut self,
        pattern: Pattern,
        start: HashMap<Arc<str>, Mark>,
        catch_up: Option<CatchUp>,
    ) -> (Parts, mpsc::Sender<Delivery>) {
        self.next_id += 1;
        let id = self.next_id;
        let (tx, rx) = mpsc::channel(self.capacity);
        let (reason_tx, reason) = oneshot::channel();
        let taken = Arc::new(AtomicU64::new(0));
        let prefix = pattern.literal_prefix().to_owned();
        let count = self.prefixes.entry(prefix.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.effects.dirty = true;
        }
        let first = pattern.as_str().split('.').next().unwrap_or_default();
        let lane = (first != "*" && first != "#").then(|| lane_of(first.as_bytes()));
        self.subs.insert(
            id,
            Entry {
                pattern,
                lane,
                queue: Queue {
                    tx: tx.clone(),
                    taken: taken.clone(),
                },
                reason: Some(reason_tx),
                start,
                delivered: HashMap::new(),
                catch_up,
            },
        );
        (
            Parts {
                id,
                rx,
                reason,
                taken,
            },
            tx,
        )
    }

    /// Ends a subscription (with a reason, or silently when dropped).
    pub(crate) fn remove(&mut self, id: u64, reason: Option<CloseReason>) {
        let Some(mut e) = self.subs.remove(&id) else {
            return;
        };
        if let Some(task) = e.catch_up.take().and_then(|c| c.task) {
            task.abort();
        }
        if let (Some(r), Some(tx)) = (reason, e.reason.take()) {
            let _ = tx.send(r);
        }
        let prefix = e.pattern.literal_prefix();
        if let Some(n) = self.prefixes.get_mut(prefix) {
            *n -= 1;
            if *n == 0 {
                self.prefixes.remove(prefix);
                self.effects.dirty = true;
            }
        }
    }

    /// Drops subscriptions whose `Subscription` is gone.
    pub(crate) fn sweep(&mut self) {
        let gone: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, e)| e.queue.tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(id, None);
        }
    }

    /// Ends every subscription (client shutdown).
    pub(crate) fn close_all(&mut self) {
        let ids: Vec<u64> = self.subs.keys().copied().collect();
        for id in ids {
            self.remove(id, Some(CloseReason::ClientClosed));
        }
    }

    /// Socket work collected so far.
    pub(crate) fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    /// Asks the task to re-sync SUB prefixes (e.g. on a new socket).
    pub(crate) fn mark_dirty(&mut self) {
        self.effects.dirty = true;
    }

    /// Every SUB prefix in use.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.prefixes.keys().map(String::as_str)
    }

    /// Patterns to send as a replay filter: all of them, or none (no
    /// filter) when there are more than the protocol allows.
    pub(crate) fn replay_patterns(&self) -> Vec<Pattern> {
        if self.subs.len() > fanfare_protocol::replay::MAX_PATTERNS {
            return Vec::new();
        }
        self.subs.values().map(|e| e.pattern.clone()).collect()
    }

    /// Queues of the live subscriptions that may want messages of `lane`
    /// (to wait for room before a repair round).
    pub(crate) fn queues_for_lane(&self, lane: u16) -> Vec<mpsc::Sender<Delivery>> {
        self.subs
            .values()
            .filter(|e| e.catch_up.is_none() && e.lane.is_none_or(|l| l == lane))
            .map(|e| e.queue.tx.clone())
            .collect()
    }

    /// The per-subscription queue bound.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Can any subscription want messages of `lane`? (`None` lanes, from a
    /// wildcard first word, cover every lane.)
    pub(crate) fn covers_lane(&self, lane: u16) -> bool {
        self.subs.values().any(|e| e.lane.is_none_or(|l| l == lane))
    }

    /// For a lane first seen with `topic`: after which seq of `origin`'s
    /// `epoch` do subscriptions that may cover it want messages? `None`:
    /// no subscription covers it.
    pub(crate) fn floor_for_topic(&self, origin: &str, epoch: u64, topic: &str) -> Option<u64> {
        let lane = lane_of(topic.as_bytes());
        self.subs
            .values()
            .filter(|e| e.lane.is_none_or(|l| l == lane))
            .map(|e| floor_of(e, origin, epoch))
            .min()
    }

    /// For a lane a heartbeat reports that we never saw: the floor of the
    /// subscriptions whose literal first word is on it (`None`: none are).
    pub(crate) fn floor_for_lane(&self, origin: &str, epoch: u64, lane: u16) -> Option<u64> {
        self.subs
            .values()
            .filter(|e| e.lane == Some(lane))
            .map(|e| floor_of(e, origin, epoch))
            .min()
    }

    /// Delivers a message to every matching subscription. `low` tells the
    /// lowest seq of an origin still under repair (for slow positions).
    pub(crate) fn deliver(&mut self, m: &Message, low: &dyn Fn(&str) -> Option<Mark>) {
        let reserved = m.topic.starts_with(RESERVED_PREFIX);
        let mark = (m.stamp.epoch, m.stamp.seq);
        let mut slow = Vec::new();
        for (id, e) in &mut self.subs {
            if reserved && !e.pattern.as_str().starts_with(RESERVED_PREFIX) {
                continue;
            }
            if !e.pattern.matches(&m.topic) {
                continue;
            }
            if e.start.get(&m.stamp.origin).is_some_and(|s| mark <= *s) {
                continue;
            }
            if !push(e, self.capacity, self.stall, Delivery::Message(m.clone())) {
                slow.push((*id, Some((m.stamp.origin.clone(), mark))));
            }
        }
        self.close_slow(slow, low);
    }

    /// Tells a gap to every subscription that may have wanted the range
    /// (`lane`: the lane it is on, if known).
    pub(crate) fn gap(&mut self, gap: &Gap, lane: Option<u16>, low: &dyn Fn(&str) -> Option<Mark>) {
        let mut slow = Vec::new();
        for (id, e) in &mut self.subs {
            if let (Some(l), Some(el)) = (lane, e.lane) {
                if l != el {
                    continue;
                }
            }
            if e.start
                .get(&gap.origin)
                .is_some_and(|s| (gap.epoch, gap.last) <= *s)
            {
                continue;
            }
            if !push(e, self.capacity, self.stall, Delivery::Gap(gap.clone())) {
                slow.push((*id, None));
            }
        }
        self.close_slow(slow, low);
    }

    fn close_slow(&mut self, slow: Vec<(u64, Failed)>, low: &dyn Fn(&str) -> Option<Mark>) {
        for (id, failed) in slow {
            let Some(e) = self.subs.get(&id) else {
                continue;
            };
            if e.queue.tx.is_closed() {
                self.remove(id, None);
                continue;
            }
            let position = position_of(e, failed, low);
            let pattern = e.pattern.as_str().to_owned();
            tracing::warn!(%pattern, %position, "slow subscription closed");
            self.remove(
                id,
                Some(CloseReason::SlowConsumer {
                    position: position.clone(),
                }),
            );
            self.effects.slow.push((pattern, position));
        }
    }
}

/// Queues a delivery (or holds it while catching up). False when the
/// subscription must close: queue full (or, catching up, an application
/// that stopped reading), or receiver gone.
fn push(e: &mut Entry, capacity: usize, stall: Duration, d: Delivery) -> bool {
    if let Some(c) = &mut e.catch_up {
        return c.hold(d, capacity, &e.queue, stall);
    }
    let mark = mark_of(&d);
    if e.queue.tx.try_send(d).is_err() {
        return false;
    }
    if let Some((origin, mark)) = mark {
        let d = e.delivered.entry(origin).or_insert(mark);
        *d = (*d).max(mark);
    }
    true
}

/// The origin and mark of a message delivery.
fn mark_of(d: &Delivery) -> Failed {
    match d {
        Delivery::Message(m) => Some((m.stamp.origin.clone(), (m.stamp.epoch, m.stamp.seq))),
        _ => None,
    }
}

/// After which seq of `origin`'s `epoch` the live stream must be complete
/// for this subscription: none for one catching up (its catch-up fetches
/// whatever comes before a lane's first live message, see [`super::held`]).
fn floor_of(e: &Entry, origin: &str, epoch: u64) -> u64 {
    if e.catch_up.is_some() {
        return u64::MAX;
    }
    match e.start.get(origin) {
        Some(&(se, s)) if se == epoch => s,
        Some(&(se, _)) if se > epoch => u64::MAX,
        _ => 0,
    }
}

/// Where a closing subscription stands: per origin, the last seq below
/// which nothing it wants is missing.
fn position_of(e: &Entry, failed: Failed, low: &dyn Fn(&str) -> Option<Mark>) -> Position {
    let mut marks: HashMap<Arc<str>, Mark> = e.start.clone();
    if let Some(c) = &e.catch_up {
        if let Ok(p) = c.progress.lock() {
            for (o, ep, s) in p.iter() {
                let m = marks.entry(Arc::from(o)).or_insert((ep, s));
                *m = (*m).max((ep, s));
            }
        }
    }
    for (o, d) in &e.delivered {
        let m = marks.entry(o.clone()).or_insert(*d);
        *m = (*m).max(*d);
    }
    if let Some((o, (ep, s))) = failed {
        let m = marks.entry(o).or_insert((ep, s.saturating_sub(1)));
        *m = (*m).min((ep, s.saturating_sub(1)));
    }
    let mut pos = Position::new();
    for (o, (ep, mut s)) in marks {
        if let Some((le, lf)) = low(&o) {
            if le == ep {
                s = s.min(lf.saturating_sub(1));
            }
        }
        pos.advance(&o, ep, s);
    }
    pos
}

#[path = "registry_catch_up.rs"]
mod catch_up;
pub(crate) use catch_up::Extension;

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
