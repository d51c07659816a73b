//! One lane's state and how a message or a finished repair moves it on.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Action, Head, Ticket};

/// Most parked messages folded into one repair request.
pub(super) const BATCH: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) from: u64,
    pub(super) to: u64,
    /// Lane state once the range is handled: (lane seq, seq).
    pub(super) target: (u64, u64),
}

#[derive(Debug)]
pub(super) struct Lane<M> {
    pub(super) lane_seq: u64,
    pub(super) seq: u64,
    pub(super) pending: Option<Pending>,
    pub(super) parked: VecDeque<(Head, M)>,
    /// Highest (lane seq, seq) known to exist beyond what is parked.
    pub(super) tail: Option<(u64, u64)>,
}

impl<M> Lane<M> {
    pub(super) fn at(lane_seq: u64, seq: u64) -> Self {
        Self {
            lane_seq,
            seq,
            pending: None,
            parked: VecDeque::new(),
            tail: None,
        }
    }
}

/// Ticket ids and the parking bound, shared by every lane and sweep.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) next_id: u64,
    /// Messages parked or held, all lanes and sweeps together.
    pub(super) parked: usize,
    pub(super) max_parked: usize,
}

impl Budget {
    /// A fresh ticket id.
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

pub(super) struct Ctx<'a, M> {
    pub(super) origin: &'a Arc<str>,
    pub(super) epoch: u64,
    pub(super) lane_id: u16,
    pub(super) budget: &'a mut Budget,
    /// The seq after which the message's connection is complete for this
    /// origin (a session), if it is: a lane complete up to there that
    /// jumps was filtered.
    pub(super) session: Option<u64>,
    pub(super) out: &'a mut Vec<Action<M>>,
}

impl<'a, M> Ctx<'a, M> {
    pub(super) fn new(
        origin: &'a Arc<str>,
        (epoch, lane_id): (u64, u16),
        budget: &'a mut Budget,
        session: Option<u64>,
        out: &'a mut Vec<Action<M>>,
    ) -> Self {
        Self {
            origin,
            epoch,
            lane_id,
            budget,
            session,
            out,
        }
    }

    pub(super) fn start(&mut self, lane: &mut Lane<M>, from: u64, to: u64, target: (u64, u64)) {
        let id = self.budget.next_id();
        lane.pending = Some(Pending {
            id,
            from,
            to,
            target,
        });
        self.out.push(Action::Repair(Ticket {
            id,
            origin: self.origin.clone(),
            epoch: self.epoch,
            lane: Some(self.lane_id),
            from,
            to,
        }));
    }

    /// One message on a known lane.
    pub(super) fn step(&mut self, lane: &mut Lane<M>, head: Head, msg: M) {
        if lane.pending.is_some() {
            if self.budget.parked < self.budget.max_parked {
                self.budget.parked += 1;
                lane.parked.push_back((head, msg));
            } else {
                let t = (head.lane_seq, head.seq);
                lane.tail = Some(lane.tail.map_or(t, |old| old.max(t)));
            }
            return;
        }
        if head.lane_seq <= lane.lane_seq || head.seq <= lane.seq {
            self.out.push(Action::Duplicate(msg));
        } else if lane.lane_seq.checked_add(1) == Some(head.lane_seq)
            || self.session.is_some_and(|p| lane.seq >= p)
        {
            lane.lane_seq = head.lane_seq;
            lane.seq = head.seq;
            self.out.push(Action::Deliver(msg));
        } else {
            let target = (head.lane_seq - 1, head.seq - 1);
            self.start(lane, lane.seq.saturating_add(1), head.seq - 1, target);
            // Parked messages (if any) are later ones: this one goes first.
            self.budget.parked += 1;
            lane.parked.push_front((head, msg));
        }
    }

    /// Releases parked messages until one reveals another gap, then asks
    /// for the tail if nothing is pending.
    ///
    /// When a gap shows up with more messages parked behind it that jump
    /// too (typical of prefix filtering: a narrow pattern in a busy
    /// namespace), one request covers the range up to the last of those
    /// jumps (at most [`BATCH`] parked messages): the ones in between come
    /// back from history, in order, instead of costing a round trip each.
    /// A parked message that follows its predecessor directly is never
    /// fetched again: a loss (a drop, then a run of live messages) asks for
    /// its own range only.
    pub(super) fn drain(&mut self, lane: &mut Lane<M>) {
        while lane.pending.is_none() {
            let Some((head, msg)) = lane.parked.pop_front() else {
                break;
            };
            self.budget.parked -= 1;
            let fresh = head.lane_seq > lane.lane_seq && head.seq > lane.seq;
            let jump = lane.lane_seq.checked_add(1) != Some(head.lane_seq);
            if let Some(k) = (fresh && jump)
                .then(|| jumps_behind(head, &lane.parked))
                .flatten()
            {
                let last = lane.parked[k].0;
                // `msg` and the k parked before `last` are in the range.
                drop(msg);
                lane.parked.drain(..k);
                self.budget.parked -= k;
                let target = (last.lane_seq.saturating_sub(1), last.seq.saturating_sub(1));
                self.start(lane, lane.seq.saturating_add(1), target.1, target);
                break;
            }
            self.step(lane, head, msg);
        }
        if lane.pending.is_none() {
            if let Some(tail) = lane.tail.take() {
                if tail.0 > lane.lane_seq {
                    self.start(lane, lane.seq.saturating_add(1), tail.1, tail);
                }
            }
        }
    }
}

/// How many parked messages behind `head` (which jumps) to fold into its
/// repair, as the index of the one the range ends just before: the run of
/// jumps behind `head`, at most [`BATCH`]. `None` when the first parked
/// message follows `head` directly (or nothing is parked): only `head`'s
/// own gap is asked for.
fn jumps_behind<M>(head: Head, parked: &VecDeque<(Head, M)>) -> Option<usize> {
    let n = parked.len().min(BATCH);
    let follows = |i: usize| {
        let prev = if i == 0 { head } else { parked[i - 1].0 };
        prev.lane_seq.checked_add(1) == Some(parked[i].0.lane_seq)
    };
    match (0..n).find(|&i| follows(i)) {
        Some(0) => None,
        Some(i) => Some(i - 1),
        None => n.checked_sub(1),
    }
}
