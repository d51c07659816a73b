//! A catching-up subscription in the registry (`subscribe_from`): its
//! [`CatchUp`] state — live deliveries held while the catch-up task
//! delivers history, what happens when they do not fit — and the end of a
//! catch-up round: going live, or asking for another round ([`NextRound`]).
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
//!
//! Going live ([`CatchUp::end_round`]) leaves the held deliveries queued: the
//! application needs room left for the live traffic that comes while it
//! reads them, or the live rule (a full queue closes) would strike at once.
//! So a subscription goes live only when what is held fills at most half of
//! its queue (and fits in what is free); otherwise one more round fetches
//! the held range from history, with backpressure. Rounds shrink as the
//! catch-up nears the live stream.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::delivery::push;
use super::Registry;
use crate::message::{Delivery, Mark, Marks};
use crate::subscriber::queue::Queue;

/// History still to fetch for a catching-up subscription: what its next
/// catch-up task needs.
pub(crate) struct NextRound {
    pub tx: mpsc::Sender<Delivery>,
    pub pattern: Pattern,
    pub progress: Arc<Mutex<Position>>,
    /// `(origin, after, up to)`: `after` is the subscription's start mark
    /// (none if it has none for that origin).
    pub ranges: Ranges,
}

impl Registry {
    /// Remembers the catch-up task of a subscription (aborted if it closes).
    pub(crate) fn set_catch_up_task(&mut self, id: u64, task: JoinHandle<()>) {
        match self.subs.get_mut(&id).and_then(|e| e.catch_up.as_mut()) {
            Some(c) => c.task = Some(task),
            None => task.abort(),
        }
    }

    /// A catch-up round finished: `marks` are what history covered per
    /// origin. Returns what is still to fetch when live deliveries had to
    /// be dropped meanwhile, or when going live now would leave too little
    /// room (see the module docs); otherwise the held deliveries after
    /// those marks follow, in seq order, and the subscription goes live.
    pub(crate) fn finish_catch_up(
        &mut self,
        id: u64,
        marks: Vec<(Arc<str>, Mark)>,
        low: &dyn Fn(&str) -> Option<Mark>,
    ) -> Option<NextRound> {
        let e = self.subs.get_mut(&id)?;
        let c = e.catch_up.as_mut()?;
        for (origin, mark) in marks {
            let s = e.start.entry(origin).or_insert(mark);
            *s = (*s).max(mark);
        }
        let held = match c.end_round(&e.start, self.capacity, e.queue.tx.capacity()) {
            RoundEnd::More(ranges) => {
                return Some(NextRound {
                    tx: e.queue.tx.clone(),
                    pattern: e.pattern.clone(),
                    progress: c.progress.clone(),
                    ranges,
                })
            }
            RoundEnd::Live(held) => held,
        };
        // `start` now covers what the catch-up delivered: go live.
        e.catch_up = None;
        let mut slow = None;
        for d in held {
            if let Err(failed) = push(e, self.capacity, self.stall, d) {
                slow = Some((id, failed));
                break;
            }
        }
        self.close_slow(slow.into_iter().collect(), low);
        None
    }
}

/// Ranges still to fetch: `(origin, after, up to)`.
pub(crate) type Ranges = Vec<(Arc<str>, Option<Mark>, Mark)>;

/// What the end of a catch-up round leads to.
pub(crate) enum RoundEnd {
    /// Another round, for these ranges.
    More(Ranges),
    /// Live: these held deliveries are queued first, in this order.
    Live(Vec<Delivery>),
}

/// A subscription catching up from history.
pub(crate) struct CatchUp {
    /// Live deliveries held until history is delivered (at most the
    /// subscription capacity; see the module docs for overflow).
    held: Vec<Delivery>,
    /// Per origin, the highest mark of held deliveries dropped at an
    /// overflow: the next catch-up round fetches up to it.
    tail: Marks,
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
            tail: Marks::default(),
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
    fn after_round(&mut self, start: &Marks) -> Ranges {
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

    /// A catch-up round delivered history up to `start` (per origin): the
    /// subscription goes live, or another round follows — for what was
    /// dropped, or for everything held when it fills more than half of the
    /// queue (`capacity`; `free`: room left in it now). See the module docs.
    pub(crate) fn end_round(&mut self, start: &Marks, capacity: usize, free: usize) -> RoundEnd {
        let mut ranges = self.after_round(start);
        let room = (capacity / 2).max(1).min(free);
        if ranges.is_empty() && self.held() > room {
            for d in self.take_held() {
                self.drop_to_tail(d);
            }
            ranges = self.after_round(start);
        }
        if ranges.is_empty() {
            RoundEnd::Live(self.take_held())
        } else {
            RoundEnd::More(ranges)
        }
    }

    /// The held deliveries in release order (gaps first, then messages by
    /// epoch and seq: per lane that is arrival order).
    fn take_held(&mut self) -> Vec<Delivery> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by_key(|d| match d {
            Delivery::Gap(g) => (0, g.epoch, g.first),
            Delivery::Message(m) => (1, m.stamp.epoch, m.stamp.seq),
            Delivery::Closed(_) | Delivery::Watermark(_) => (2, 0, 0),
        });
        held
    }

    /// Number of held deliveries.
    fn held(&self) -> usize {
        self.held.len()
    }

    /// Remembers a dropped delivery as part of the tail.
    fn drop_to_tail(&mut self, d: Delivery) {
        let (origin, mark) = match d {
            Delivery::Message(m) => (m.stamp.origin, (m.stamp.epoch, m.stamp.seq)),
            Delivery::Gap(g) => (g.origin, (g.epoch, g.last)),
            Delivery::Closed(_) | Delivery::Watermark(_) => return,
        };
        self.extend_tail(origin, mark);
    }

    fn extend_tail(&mut self, origin: Arc<str>, mark: Mark) {
        let t = self.tail.entry(origin).or_insert(mark);
        *t = (*t).max(mark);
    }
}

/// Was this delivery already covered by history up to `start`?
fn covered(start: &Marks, d: &Delivery) -> bool {
    let (origin, mark) = match d {
        Delivery::Message(m) => (&m.stamp.origin, (m.stamp.epoch, m.stamp.seq)),
        Delivery::Gap(g) => (&g.origin, (g.epoch, g.last)),
        Delivery::Closed(_) | Delivery::Watermark(_) => return false,
    };
    start.get(origin).is_some_and(|s| mark <= *s)
}
