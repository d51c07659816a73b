//! `subscribe_from`: catching a new subscription up from a position, then
//! going live without duplicates or holes.
//!
//! The subscriber task registers the subscription first (so live messages
//! are held, not lost), plans the history ranges ([`plan`](mod@plan): up to
//! the newest the broadcaster holds, in every epoch of the origin it knows
//! of), then a catch-up task ([`task`]) delivers them with backpressure, waits until the
//! application has taken them all and reports the marks it reached. The
//! subscriber task then releases the held live messages after those marks —
//! or, when live messages outran the catch-up and had to be dropped, or
//! going live would leave too little room, starts another round for them.
//!
//! * `mod.rs` (here) — `State`'s catch-up steps: start, next round.
//! * [`plan`](mod@plan) — the ranges to fetch.
//! * [`task`] — the catch-up task.
//! * `registry/catch_up.rs` — what the registry keeps per catching-up
//!   subscription (live deliveries held meanwhile, bounded by the
//!   subscription capacity; what overflowed them, the *tail*), and the rule
//!   for going live (held deliveries fill at most half the queue).

mod plan;
mod task;

use std::sync::{Arc, Mutex};

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;

use super::queue::Parts;
use super::registry::{CatchUp, NextRound};
use super::task::State;
use crate::message::{Mark, Marks};
use plan::{plan, Segment};
use task::CatchUpTask;

impl State {
    /// Registers a subscription that first catches up from `since`. `live`
    /// holds, per known origin, the mark a plain subscription starts after.
    pub(super) fn subscribe_from(
        &mut self,
        pattern: Pattern,
        since: Position,
        live: Marks,
    ) -> Parts {
        let mut start = live;
        let mut segments = Vec::new();
        for (o, e, s) in since.iter() {
            let origin = self.origins.intern(o);
            // Up to the newest the broadcaster holds, not only what was
            // seen here: what this client saw may lag behind (heartbeats
            // are periodic, and its SUB may not carry these topics yet).
            let newest = plan(&origin, e, s, self.tracker.max_seq(o))
                .into_iter()
                .map(|seg| Segment {
                    to: u64::MAX,
                    ..seg
                });
            segments.extend(newest);
            start.insert(origin, (e, s));
        }
        let progress = Arc::new(Mutex::new(since));
        let catch_up = CatchUp::new(progress.clone());
        let (parts, tx) = self.registry.add(pattern.clone(), start, Some(catch_up));
        let job = NextRound {
            tx,
            pattern,
            progress,
            ranges: Vec::new(),
        };
        self.spawn_catch_up(parts.id, job, segments);
        parts
    }

    /// A catch-up round is done: the subscription goes live, or the
    /// catch-up goes on with what live traffic dropped meanwhile.
    pub(super) fn on_catch_up_done(&mut self, id: u64, marks: Vec<(Arc<str>, Mark)>) {
        let tracker = &self.tracker;
        let low = |o: &str| tracker.lowest_pending(o);
        let Some(job) = self.registry.finish_catch_up(id, marks, &low) else {
            return;
        };
        let mut segments = Vec::new();
        for (origin, after, to) in &job.ranges {
            // An origin first heard after the subscription was made: from
            // where the client started listening to it.
            let after = after
                .or_else(|| self.tracker.base(origin).filter(|b| b.0 == to.0))
                .unwrap_or((to.0, 0));
            // A gap's end came from the network: no further than seen.
            let to = match self.tracker.max_seq(origin) {
                Some((e, s)) if e == to.0 => (e, to.1.min(s)),
                _ => *to,
            };
            if after < to {
                segments.extend(plan(origin, after.0, after.1, Some(to)));
            }
        }
        tracing::debug!(
            id,
            segments = segments.len(),
            "live traffic outran a catch-up: fetching it from history"
        );
        self.spawn_catch_up(id, job, segments);
    }

    fn spawn_catch_up(&mut self, id: u64, job: NextRound, plan: Vec<Segment>) {
        let task = CatchUpTask {
            id,
            replay: self.task.replay.clone(),
            tx: job.tx,
            pattern: job.pattern,
            plan,
            progress: job.progress,
            done: self.commands.clone(),
        };
        self.registry
            .set_catch_up_task(id, tokio::spawn(task.run()));
    }
}
