//! Live deliveries held while a subscription catches up from history
//! (`subscribe_from`), and what happens when they do not fit.
//!
//! While the catch-up task delivers history, live deliveries for the
//! subscription are *held* (at most the subscription's capacity). Past that
//! bound the held deliveries are dropped and remembered as a per-origin
//! *tail*: the catch-up is then extended to fetch everything up to the tail
//! from history, the same way lane repairs re-fetch what they could not
//! park. Live traffic that outpaces a replay round trip therefore costs
//! history queries, never the subscription.
//!
//! Lane repairs of the subscriber task do not reach back for a catching-up
//! subscription (its floor is "none"): on a lane it first gets a live
//! message on, what came before that message is part of the tail as well.
//!
//! The subscription is closed as slow only when the *application* does not
//! read: at an overflow, items are waiting in its queue and it has taken
//! none for a while (`stall`, see `Registry`). Counting overflows alone
//! would not do: one burst read off the socket can overflow the held buffer
//! twice before the application's task gets to run.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanfare_protocol::position::Position;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::registry::Mark;
use crate::message::Delivery;

/// A subscription's queue and how many items its application has taken.
pub(crate) struct Queue {
    pub tx: mpsc::Sender<Delivery>,
    pub taken: Arc<AtomicU64>,
}

/// A subscription catching up from history.
pub(crate) struct CatchUp {
    /// Live deliveries held until history is delivered (at most the
    /// subscription capacity; see the module docs for overflow).
    held: Vec<Delivery>,
    /// Per origin, the highest mark of held deliveries dropped at an
    /// overflow: the next catch-up round fetches up to it.
    tail: HashMap<Arc<str>, Mark>,
    /// Lanes (per origin) this subscription has had a live delivery on.
    /// Lane repairs do not go back for a catching-up subscription, so the
    /// live stream of a lane is complete only from its first delivery on:
    /// what came before it on that lane is fetched from history (as tail).
    /// Bounded by origins × 65 536 lanes.
    lanes: HashSet<(Arc<str>, u16)>,
    /// What the catch-up tasks have delivered so far.
    pub progress: Arc<Mutex<Position>>,
    /// The running catch-up task (aborted if the subscription ends).
    pub task: Option<JoinHandle<()>>,
    /// How many items the application had taken when an overflow last saw
    /// that count change, and when.
    taken_seen: Option<(u64, Instant)>,
}

impl CatchUp {
    pub(crate) fn new(progress: Arc<Mutex<Position>>) -> Self {
        Self {
            held: Vec::new(),
            tail: HashMap::new(),
            lanes: HashSet::new(),
            progress,
            task: None,
            taken_seen: None,
        }
    }

    /// Holds a live delivery (`queue`: the subscription's queue and its
    /// count of items taken). False when the subscription must close: it
    /// is gone, or its application has taken nothing for `stall` while
    /// items were waiting (checked at an overflow).
    pub(crate) fn hold(
        &mut self,
        d: Delivery,
        capacity: usize,
        queue: &Queue,
        stall: Duration,
    ) -> bool {
        if queue.tx.is_closed() {
            return false;
        }
        if let Delivery::Message(m) = &d {
            let s = &m.stamp;
            if self.lanes.insert((s.origin.clone(), s.lane)) && s.seq > 1 {
                self.extend_tail(s.origin.clone(), (s.epoch, s.seq - 1));
            }
        }
        if self.held.len() < capacity {
            self.held.push(d);
            return true;
        }
        let now = Instant::now();
        let taken = queue.taken.load(Ordering::Relaxed);
        match self.taken_seen {
            Some((t, since)) if t == taken => {
                let waiting = queue.tx.capacity() < queue.tx.max_capacity();
                if waiting && now.duration_since(since) >= stall {
                    return false;
                }
            }
            _ => self.taken_seen = Some((taken, now)),
        }
        let held = std::mem::take(&mut self.held);
        for d in held.into_iter().chain([d]) {
            self.drop_to_tail(d);
        }
        true
    }

    /// A catch-up round delivered history up to `start` (per origin):
    /// forgets held deliveries it covered. Returns the ranges still to
    /// fetch — `(origin, after, up to)`, `after` being `start`'s mark —
    /// when some were dropped; then everything held is dropped too (it is
    /// after those, and fetching it in the same round leaves the held
    /// buffer empty for the next one).
    pub(crate) fn after_round(
        &mut self,
        start: &HashMap<Arc<str>, Mark>,
    ) -> Vec<(Arc<str>, Option<Mark>, Mark)> {
        self.task = None;
        self.held.retain(|d| !covered(start, d));
        self.tail
            .retain(|o, to| start.get(o).is_none_or(|s| *s < *to));
        if self.tail.is_empty() {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.held);
        for d in held {
            self.drop_to_tail(d);
        }
        self.tail
            .drain()
            .map(|(o, to)| {
                let after = start.get(&o).copied();
                (o, after, to)
            })
            .collect()
    }

    /// The held deliveries in release order (gaps first, then messages by
    /// epoch and seq: per lane that is arrival order).
    pub(crate) fn take_held(&mut self) -> Vec<Delivery> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by_key(|d| match d {
            Delivery::Gap(g) => (0, g.epoch, g.first),
            Delivery::Message(m) => (1, m.stamp.epoch, m.stamp.seq),
            Delivery::Closed(_) => (2, 0, 0),
        });
        held
    }

    /// Number of held deliveries.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Remembers a dropped delivery as part of the tail.
    pub(crate) fn drop_to_tail(&mut self, d: Delivery) {
        let (origin, mark) = match d {
            Delivery::Message(m) => (m.stamp.origin, (m.stamp.epoch, m.stamp.seq)),
            Delivery::Gap(g) => (g.origin, (g.epoch, g.last)),
            Delivery::Closed(_) => return,
        };
        self.extend_tail(origin, mark);
    }

    fn extend_tail(&mut self, origin: Arc<str>, mark: Mark) {
        let t = self.tail.entry(origin).or_insert(mark);
        *t = (*t).max(mark);
    }
}

/// Was this delivery already covered by history up to `start`?
fn covered(start: &HashMap<Arc<str>, Mark>, d: &Delivery) -> bool {
    let (origin, mark) = match d {
        Delivery::Message(m) => (&m.stamp.origin, (m.stamp.epoch, m.stamp.seq)),
        Delivery::Gap(g) => (&g.origin, (g.epoch, g.last)),
        Delivery::Closed(_) => return false,
    };
    start.get(origin).is_some_and(|s| mark <= *s)
}
