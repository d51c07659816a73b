//! The subscriptions of one client: patterns, SUB prefixes (refcounted),
//! per-subscription start marks, bounded queues and the slow-consumer rule.
//!
//! Owned by the subscriber task; touches no socket. Prefix changes and
//! slow-consumer closures are collected as [`Effects`] for the task to carry
//! out. `mod.rs` is the table; `delivery` queues messages and gaps and
//! closes slow consumers; `catch_up` ends catch-up rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::stamp::lane_of;
use fanfare_protocol::RESERVED_PREFIX;
use tokio::sync::{mpsc, oneshot};

use super::queue::{self, Parts, Queue};
use crate::message::{CloseReason, Delivery, Mark, Marks, Watermark};
pub(crate) use pattern_set::PatternSet;

/// How long a catching-up subscription's application may leave queued items
/// untaken (while live messages overflow what is held) before it is closed
/// as a slow consumer. A live subscription has no such grace: its full
/// queue closes it.
const STALL: Duration = Duration::from_millis(500);

/// The delivery that did not fit: its origin and mark (none for a gap).
type Failed = Option<(Arc<str>, Mark)>;

struct Entry {
    /// The pattern it was made with (its catch-up's filter, its name).
    pattern: Pattern,
    /// Set by `Subscription::set_patterns`: matched instead of `pattern`.
    set: Option<Box<PatternSet>>,
    /// Lane of the literal first word; `None` for a wildcard first word.
    lane: Option<u16>,
    queue: Queue,
    reason: Option<oneshot::Sender<CloseReason>>,
    /// Only messages after these marks are delivered.
    start: Marks,
    /// Per message: a fast hasher (lib.rs).
    delivered: Marks,
    catch_up: Option<CatchUp>,
    /// Deliveries waiting for [`Registry::flush`].
    pending: Vec<Delivery>,
    /// Asked for watermarks: the last one queued, if any.
    watermark: Option<Option<Watermark>>,
}

/// A subscription's pending buffer keeps at most this capacity between
/// bursts (a burst is at most a batch of the SUB or one replay reply).
const MAX_KEPT_PENDING: usize = 1024;

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
    subs: foldhash::HashMap<u64, Entry>,
    prefixes: HashMap<String, usize>,
    capacity: usize,
    /// A catching-up subscription whose application has taken nothing for
    /// this long while items wait is closed as slow (see `catch_up`).
    stall: Duration,
    next_id: u64,
    effects: Effects,
    /// Subscriptions with pending deliveries.
    flush_list: Vec<u64>,
    /// Subscriptions that asked for watermarks.
    watermarked: Vec<u64>,
}

impl Registry {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            subs: Default::default(),
            prefixes: HashMap::new(),
            capacity,
            stall: STALL,
            next_id: 0,
            effects: Effects::default(),
            flush_list: Vec::new(),
            watermarked: Vec::new(),
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
        start: Marks,
        catch_up: Option<CatchUp>,
    ) -> (Parts, mpsc::Sender<Delivery>) {
        self.next_id += 1;
        let id = self.next_id;
        let (queue, reason_tx, parts) = queue::open(id, self.capacity);
        let tx = queue.tx.clone();
        self.hold_prefix(sub_prefix(&pattern));
        let first = pattern.as_str().split('.').next().unwrap_or_default();
        let lane = (first != "*" && first != "#").then(|| lane_of(first.as_bytes()));
        self.subs.insert(
            id,
            Entry {
                pattern,
                set: None,
                lane,
                queue,
                reason: Some(reason_tx),
                start,
                delivered: Default::default(),
                catch_up,
                pending: Vec::new(),
                watermark: None,
            },
        );
        (parts, tx)
    }

    /// Ends a subscription (with a reason, or silently when dropped).
    pub(crate) fn remove(&mut self, id: u64, reason: Option<CloseReason>) {
        let Some(mut e) = self.subs.remove(&id) else {
            return;
        };
        if e.watermark.is_some() {
            self.watermarked.retain(|&w| w != id);
        }
        if let Some(task) = e.catch_up.take().and_then(|c| c.task) {
            task.abort();
        }
        if let (Some(r), Some(tx)) = (reason, e.reason.take()) {
            let _ = tx.send(r);
        }
        for prefix in held_prefixes(&e) {
            self.release_prefix(&prefix);
        }
    }

    fn hold_prefix(&mut self, prefix: String) {
        let count = self.prefixes.entry(prefix).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.effects.dirty = true;
        }
    }

    fn release_prefix(&mut self, prefix: &str) {
        if let Some(n) = self.prefixes.get_mut(prefix) {
            *n -= 1;
            if *n == 0 {
                self.prefixes.remove(prefix);
                self.effects.dirty = true;
            }
        }
    }

    /// Subscription `id` matches `set` from now on (instead of what it
    /// matched), with its SUB prefixes. Returns whether the SUB prefixes
    /// changed (`None`: no such subscription). The set is built by the
    /// caller, outside the task; here only the prefixes that differ are
    /// touched (both lists sorted: one merge).
    pub(crate) fn set_patterns(&mut self, id: u64, set: Box<PatternSet>) -> Option<bool> {
        let e = self.subs.get_mut(&id)?;
        let mut old = held_prefixes(e);
        old.sort_unstable();
        e.set = Some(set);
        e.lane = None;
        let new = held_prefixes(e);
        let was_dirty = std::mem::take(&mut self.effects.dirty);
        let (mut a, mut b) = (old.into_iter().peekable(), new.into_iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x == y => {
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x < y => {
                    let x = x.clone();
                    a.next();
                    self.release_prefix(&x);
                }
                (_, Some(_)) => {
                    if let Some(y) = b.next() {
                        self.hold_prefix(y);
                    }
                }
                (Some(_), None) => {
                    if let Some(x) = a.next() {
                        self.release_prefix(&x);
                    }
                }
                (None, None) => break,
            }
        }
        let changed = self.effects.dirty;
        self.effects.dirty |= was_dirty;
        Some(changed)
    }

    /// Subscription `id` asks for watermarks from now on.
    pub(crate) fn want_watermarks(&mut self, id: u64) {
        if let Some(e) = self.subs.get_mut(&id) {
            if e.watermark.is_none() {
                e.watermark = Some(None);
                self.watermarked.push(id);
            }
        }
    }

    /// Does any subscription ask for watermarks?
    pub(crate) fn wants_watermarks(&self) -> bool {
        !self.watermarked.is_empty()
    }

    /// Queues a watermark (after what was flushed) to the subscriptions
    /// that asked and are live (one catching up holds its live messages:
    /// a watermark would overtake them), unless it does not move theirs.
    /// One that does not fit is skipped: the next call tells it again.
    pub(crate) fn watermark(&mut self, origin: &Arc<str>, epoch: u64, through: u64) {
        for id in &self.watermarked {
            let Some(e) = self.subs.get_mut(id) else {
                continue;
            };
            let Some(last) = &mut e.watermark else {
                continue;
            };
            let moved = last
                .as_ref()
                .is_none_or(|w| w.origin != *origin || (w.epoch, w.through) < (epoch, through));
            if !moved || e.catch_up.is_some() || !e.pending.is_empty() {
                continue;
            }
            let w = Watermark {
                origin: origin.clone(),
                epoch,
                through,
            };
            if e.queue.tx.try_send(Delivery::Watermark(w.clone())).is_ok() {
                *last = Some(w);
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

    /// Ends every subscription (client shutdown), after what waits.
    pub(crate) fn close_all(&mut self) {
        self.flush(&|_| None);
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
        let max = fanfare_protocol::replay::MAX_PATTERNS;
        let count: usize = self
            .subs
            .values()
            .map(|e| e.set.as_ref().map_or(1, |s| s.len()))
            .sum();
        if count > max {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(count);
        for e in self.subs.values() {
            match &e.set {
                Some(set) => out.extend(set.patterns()),
                None => out.push(e.pattern.clone()),
            }
        }
        out
    }

    /// Queues of the live subscriptions that may want messages of `lane`
    /// (`None`: of any lane), to wait for room before a repair round.
    pub(crate) fn queues_for_lane(&self, lane: Option<u16>) -> Vec<mpsc::Sender<Delivery>> {
        self.subs
            .values()
            .filter(|e| {
                e.catch_up.is_none() && lane.is_none_or(|lane| e.lane.is_none_or(|l| l == lane))
            })
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
}

/// The SUB prefixes entry `e` holds.
fn held_prefixes(e: &Entry) -> Vec<String> {
    match &e.set {
        Some(set) => set.prefixes.clone(),
        None => vec![sub_prefix(&e.pattern)],
    }
}

impl Entry {
    /// Does this subscription want `topic` (`reserved`: a `_fanfare.` one,
    /// wanted only by a pattern that names that prefix)?
    fn wants(&self, topic: &str, reserved: bool) -> bool {
        match &self.set {
            Some(set) => set.matches(topic),
            None => {
                (!reserved || self.pattern.as_str().starts_with(RESERVED_PREFIX))
                    && self.pattern.matches(topic)
            }
        }
    }
}

/// The SUB prefix that brings what `pattern` may match: its literal part,
/// as a word-boundary prefix (PROTOCOL.md) when that part ends at a word
/// (`room.5` is not wanted by `room.50`).
pub(crate) fn sub_prefix(pattern: &Pattern) -> String {
    let literal = pattern.literal_prefix();
    if literal.is_empty() || literal.ends_with('.') {
        literal.to_owned()
    } else {
        format!("{literal}\0")
    }
}

/// After which seq of `origin`'s `epoch` the live stream must be complete
/// for this subscription: none for one catching up (its catch-up fetches
/// whatever comes before a lane's first live message, see `catch_up`).
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

mod catch_up;
mod delivery;
mod pattern_set;

pub(crate) use catch_up::{CatchUp, NextRound};

#[cfg(test)]
mod tests;
