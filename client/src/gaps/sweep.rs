//! A sweep: one repair of an origin's seq range across all its lanes.
//!
//! After a connection misses messages (a session marker with a count, or a
//! new connection after an earlier one), which lanes lost something in the
//! range between the last seq heard and the marker's is unknown: a lane
//! whose next message is far off would show its loss late. A sweep fetches
//! that range once (filtered by the subscriptions' patterns, not by lane),
//! steps every reply through its lane, and holds the origin's live messages
//! behind it, in arrival order, until it is finished. A later miss during
//! a sweep adds its range to the queue; draining the queue after the sweep
//! starts the next sweep at that range, so the origin's messages still come
//! out in seq order. Held messages share the tracker's parking bound; one
//! read past it is dropped and its seq queued as a range to fetch.

use std::collections::VecDeque;
use std::sync::Arc;

use super::lane::{Budget, Ctx};
use super::{step_message, Action, Head, Origin, Ticket, Tracker};

/// What waits behind a sweep.
#[derive(Debug)]
pub(super) enum Held<M> {
    /// A live message, with what `on_message` was told when it came.
    Msg {
        head: Head,
        msg: M,
        session: Option<u64>,
        floor: Option<u64>,
    },
    /// A range of seqs to fetch once what is before it is out, with the
    /// session its replies are stepped with.
    Range {
        from: u64,
        to: u64,
        session: Option<u64>,
    },
}

/// The sweep of one origin.
#[derive(Debug)]
pub(super) struct Sweep<M> {
    pub(super) id: u64,
    pub(super) from: u64,
    pub(super) to: u64,
    /// The session start its replies are stepped with: the sweep makes the
    /// stream complete from there again (or reports what it lost).
    pub(super) session: Option<u64>,
    pub(super) held: VecDeque<Held<M>>,
}

/// Queues `[from, to]` behind what is held. Nothing is held after a range
/// at the back, so one with the same session simply grows to cover this one
/// too (the seqs between were not for this connection: the sweep's replies
/// say what of them is wanted); the queue holds at most one range more than
/// it holds messages, plus one per session change.
pub(super) fn push_range<M>(
    held: &mut VecDeque<Held<M>>,
    from: u64,
    to: u64,
    session: Option<u64>,
) {
    if let Some(Held::Range {
        from: f,
        to: t,
        session: s,
    }) = held.back_mut()
    {
        if *s == session {
            *f = (*f).min(from);
            *t = (*t).max(to);
            return;
        }
    }
    held.push_back(Held::Range { from, to, session });
}

impl<M> Tracker<M> {
    /// Starts a sweep of `[from, to]` of `origin`'s `epoch`: its
    /// replies go to [`Self::on_sweep_reply`], stepped with `session`, and
    /// the origin's live messages wait behind it. During a sweep the range
    /// is queued behind what waits, to be swept next. Returns false when
    /// it cannot be swept (an origin or epoch the tracker does not know):
    /// then the caller must not count on it.
    pub(crate) fn sweep(
        &mut self,
        origin: &Arc<str>,
        epoch: u64,
        (from, to): (u64, u64),
        session: Option<u64>,
        out: &mut Vec<Action<M>>,
    ) -> bool {
        let Some(o) = self.origins.get_mut(origin) else {
            return false;
        };
        if o.epoch != epoch || from > to {
            return false;
        }
        // The origin has stamped up to `to` (the marker says so): a
        // subscription made from now on starts after it, not inside the
        // range being swept with the patterns of before.
        o.max_seq = o.max_seq.max(to);
        if let Some(sw) = o.sweep.as_mut() {
            push_range(&mut sw.held, from, to, session);
            return true;
        }
        let held = VecDeque::new();
        begin_sweep(o, origin, &mut self.budget, (from, to, session), held, out);
        true
    }

    /// One message of a sweep's reply: stepped through its lane (with the
    /// sweep's session), not held behind the sweep.
    pub(crate) fn on_sweep_reply(
        &mut self,
        origin: &Arc<str>,
        head: Head,
        msg: M,
        floor: impl FnOnce() -> Option<u64>,
        out: &mut Vec<Action<M>>,
    ) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        let Some(session) = o.sweep.as_ref().map(|s| s.session) else {
            return; // finished or abandoned: the live stream has it
        };
        if o.epoch != head.epoch {
            return;
        }
        let mut ctx = Ctx::new(origin, (o.epoch, head.lane), &mut self.budget, session, out);
        step_message(o, &mut ctx, head, msg, floor);
    }

    /// The sweep `ticket` is done: what waited behind it goes through the
    /// lanes in order, up to the next queued range (which is swept next).
    pub(super) fn finish_sweep(&mut self, ticket: &Ticket, out: &mut Vec<Action<M>>) {
        let Some(o) = self.origins.get_mut(&ticket.origin) else {
            return;
        };
        let Some(sw) = o.sweep.take_if(|s| s.id == ticket.id) else {
            return;
        };
        let mut held = sw.held;
        while let Some(h) = held.pop_front() {
            match h {
                Held::Msg {
                    head,
                    msg,
                    session,
                    floor,
                } => {
                    // Of the sweep's epoch: a newer one abandons the sweep
                    // (`restart`) before it is held, an older one is stale.
                    self.budget.parked -= 1;
                    let mut ctx = Ctx::new(
                        &ticket.origin,
                        (o.epoch, head.lane),
                        &mut self.budget,
                        session,
                        out,
                    );
                    step_message(o, &mut ctx, head, msg, || floor);
                }
                Held::Range { from, to, session } => {
                    let range = (from, to, session);
                    begin_sweep(o, &ticket.origin, &mut self.budget, range, held, out);
                    return;
                }
            }
        }
    }
}

/// Starts the sweep of `(from, to)` stepped with `session`, with `held`
/// waiting behind it, and asks for its range.
fn begin_sweep<M>(
    o: &mut Origin<M>,
    origin: &Arc<str>,
    budget: &mut Budget,
    (from, to, session): (u64, u64, Option<u64>),
    held: VecDeque<Held<M>>,
    out: &mut Vec<Action<M>>,
) {
    let id = budget.next_id();
    o.sweep = Some(Sweep {
        id,
        from,
        to,
        session,
        held,
    });
    out.push(Action::Repair(Ticket {
        id,
        origin: origin.clone(),
        epoch: o.epoch,
        lane: None,
        from,
        to,
    }));
}
