//! Repair rounds: fetching a gap's range ([`Ticket`]) from the replay task
//! round by round (a reply may be cut at the broadcaster's reply limit),
//! delivering what comes back, reporting what cannot be recovered, and
//! telling the tracker when a repair is finished.
//!
//! A round is a future polled by the subscriber task (in `State::rounds`),
//! not a task: it first waits (at most `replay_wait`) until the queues of
//! the live subscriptions on the lane have room for a window of a quarter
//! of a subscription queue, then asks for that window. One reply therefore
//! never floods a queue that is keeping up.

use std::sync::Arc;

use fanfare_protocol::replay::{ReplayRequest, Status};
use futures::FutureExt;
use tokio::sync::mpsc;

use super::State;
use crate::error::ReplayError;
use crate::events::ClientEvent;
use crate::gaps::Ticket;
use crate::message::{Gap, GapReason};
use crate::replay_query::decode_reply;
use crate::replay_sources::ReplayHandle;
use crate::replay_task::RawReply;

/// One answered request of a repair.
pub(crate) struct Round {
    ticket: Ticket,
    /// First seq this round asked for.
    cursor: u64,
    /// Messages recovered so far by this repair.
    recovered: u64,
    /// Part of the range was reported lost.
    lost: bool,
    result: Result<RawReply, ReplayError>,
}

/// How one round is asked: the seq window and the queues to wait for.
struct Ask {
    replay: ReplayHandle,
    patterns: Vec<fanfare_protocol::pattern::Pattern>,
    /// Last seq of this round (a window of the ticket's range).
    to: u64,
    /// Subscriptions' queues that must have `room` free slots first.
    queues: Vec<mpsc::Sender<crate::Delivery>>,
    room: usize,
    /// Longest wait for that room; past it the round goes ahead (and a
    /// consumer still too slow is closed as such).
    wait: std::time::Duration,
}

fn round(
    ask: Ask,
    ticket: Ticket,
    cursor: u64,
    recovered: u64,
    lost: bool,
) -> futures::future::BoxFuture<'static, Round> {
    async move {
        let room = async {
            for q in &ask.queues {
                // Permits are dropped at once: this only waits for space.
                let _ = q.reserve_many(ask.room).await;
            }
        };
        let _ = tokio::time::timeout(ask.wait, room).await;
        let request = ReplayRequest {
            req_id: bytes::Bytes::new(),
            origin: ticket.origin.to_string(),
            epoch: ticket.epoch,
            from: cursor,
            to: ask.to,
            lane: ticket.lane,
            patterns: ask.patterns,
        };
        let result = ask.replay.request(request).await;
        Round {
            ticket,
            cursor,
            recovered,
            lost,
            result,
        }
    }
    .boxed()
}

impl State {
    pub(super) fn next_round(
        &mut self,
        t: Ticket,
        cursor: Option<u64>,
        recovered: u64,
        lost: bool,
    ) {
        let cursor = cursor.unwrap_or(t.from);
        // Rounds cover at most a quarter of a subscription queue in seqs,
        // so one reply never floods a queue that is keeping up.
        let room = (self.registry.capacity() / 4).max(1);
        let window = u64::try_from(room).unwrap_or(u64::MAX);
        let ask = Ask {
            replay: self.task.replay.clone(),
            patterns: self.registry.replay_patterns(),
            to: t.to.min(cursor.saturating_add(window - 1)),
            queues: self.registry.queues_for_lane(t.lane),
            room,
            wait: self.task.replay_wait,
        };
        self.rounds.push(round(ask, t, cursor, recovered, lost));
    }

    /// Reports `[first, last]` of a ticket's lane as lost.
    pub(super) fn lost(&mut self, t: &Ticket, first: u64, last: u64, reason: GapReason) {
        if first > last {
            return;
        }
        let gap = Gap {
            origin: t.origin.clone(),
            epoch: t.epoch,
            first,
            last,
            reason,
        };
        tracing::warn!(origin = %gap.origin, epoch = gap.epoch, first, last, ?reason, "unrecoverable gap");
        let tracker = &self.tracker;
        let low = |o: &str| tracker.lowest_pending(o);
        self.registry.gap(&gap, t.lane, &low);
        let _ = self.task.events.send(ClientEvent::GapUnrecoverable(gap));
    }

    /// Handles one answer of a repair: delivers what it recovered, reports
    /// what is lost, asks for the rest or finishes the repair.
    pub(super) fn on_round(&mut self, r: Round) {
        let Round {
            ticket: t,
            cursor,
            mut recovered,
            mut lost,
            result,
        } = r;
        let batch = match result {
            Ok(raw) => {
                self.read_pause.progress();
                decode_reply(raw, &mut self.origins)
            }
            Err(e) => {
                tracing::warn!(error = %e, "gap repair failed");
                self.lost(&t, cursor, t.to, GapReason::ReplayFailed);
                return self.finish(t, recovered, true);
            }
        };
        match batch.status {
            Status::Ok => {}
            Status::UnknownEpoch | Status::UnknownOrigin => {
                self.lost(&t, cursor, t.to, GapReason::EpochGone);
                return self.finish(t, recovered, true);
            }
            Status::BadRequest | Status::Busy => {
                self.lost(&t, cursor, t.to, GapReason::ReplayFailed);
                return self.finish(t, recovered, true);
            }
        }
        let mut next = batch.next;
        if batch.oldest > cursor {
            let last = t.to.min(batch.oldest - 1);
            self.lost(&t, cursor, last, GapReason::Expired);
            lost = true;
            next = next.max(last.saturating_add(1));
        }
        let origin: &Arc<str> = &t.origin;
        for m in batch.messages {
            let s = &m.stamp;
            let ours =
                s.origin == *origin && s.epoch == t.epoch && t.lane.is_none_or(|l| l == s.lane);
            if ours && (cursor..=t.to).contains(&s.seq) {
                recovered += 1;
                if t.lane.is_some() {
                    self.deliver(m);
                } else {
                    self.sweep_reply(m);
                }
            }
        }
        if next > cursor && next <= t.to.min(batch.newest) {
            return self.next_round(t, Some(next), recovered, lost);
        }
        self.finish(t, recovered, lost);
    }

    fn finish(&mut self, t: Ticket, recovered: u64, lost: bool) {
        if recovered > 0 && !lost {
            tracing::debug!(origin = %t.origin, from = t.from, to = t.to, recovered, "gap repaired");
            let _ = self.task.events.send(ClientEvent::GapRepaired {
                origin: t.origin.clone(),
                epoch: t.epoch,
                first: t.from,
                last: t.to,
                recovered,
            });
        }
        let mut actions = Vec::new();
        self.tracker.finish(&t, &mut actions);
        self.apply(actions);
    }
}
