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

use super::Head;

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
    /// A range of seqs to fetch once what is before it is out.
    Range { from: u64, to: u64 },
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

/// Queues `[from, to]` behind what is held, merged into a range it touches.
pub(super) fn push_range<M>(held: &mut VecDeque<Held<M>>, from: u64, to: u64) {
    if let Some(Held::Range { from: f, to: t }) = held.back_mut() {
        if from <= t.saturating_add(1) && to.saturating_add(1) >= *f {
            *f = (*f).min(from);
            *t = (*t).max(to);
            return;
        }
    }
    held.push_back(Held::Range { from, to });
}
