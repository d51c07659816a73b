//! The registry's side of `subscribe_from`: catch-up tasks and rounds.

use std::sync::{Arc, Mutex};

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{mark_of, push, Mark, Registry};
use crate::message::Delivery;

/// History still to fetch for a catching-up subscription: what a new
/// catch-up task needs.
pub(crate) struct Extension {
    pub tx: mpsc::Sender<Delivery>,
    pub pattern: Pattern,
    pub progress: Arc<Mutex<Position>>,
    /// `(origin, after, up to)`: `after` is the subscription's start mark
    /// (none if it has none for that origin).
    pub ranges: Vec<(Arc<str>, Option<Mark>, Mark)>,
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
    /// be dropped meanwhile (see [`super::held`]); otherwise the held
    /// deliveries after those marks follow, in seq order, and the
    /// subscription goes live.
    pub(crate) fn finish_catch_up(
        &mut self,
        id: u64,
        marks: Vec<(Arc<str>, Mark)>,
        low: &dyn Fn(&str) -> Option<Mark>,
    ) -> Option<Extension> {
        let e = self.subs.get_mut(&id)?;
        let c = e.catch_up.as_mut()?;
        for (origin, mark) in marks {
            let s = e.start.entry(origin).or_insert(mark);
            *s = (*s).max(mark);
        }
        let mut ranges = c.after_round(&e.start);
        // Going live leaves the held deliveries queued: the application
        // needs room left for the live traffic that comes while it reads
        // them, or the live rule (a full queue closes) would strike at
        // once. More than half a queue held: one more round fetches them
        // (with backpressure) instead; rounds shrink as the catch-up nears
        // the live stream.
        let room = (self.capacity / 2).max(1).min(e.queue.tx.capacity());
        if ranges.is_empty() && c.held() > room {
            for d in c.take_held() {
                c.drop_to_tail(d);
            }
            ranges = c.after_round(&e.start);
        }
        if !ranges.is_empty() {
            return Some(Extension {
                tx: e.queue.tx.clone(),
                pattern: e.pattern.clone(),
                progress: c.progress.clone(),
                ranges,
            });
        }
        // `start` now covers what the catch-up delivered: go live.
        let held = c.take_held();
        e.catch_up = None;
        let mut slow = None;
        for d in held {
            let failed = mark_of(&d);
            if !push(e, self.capacity, self.stall, d) {
                slow = Some((id, failed));
                break;
            }
        }
        self.close_slow(slow.into_iter().collect(), low);
        None
    }
}
