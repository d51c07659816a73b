//! Carrying out the tracker's actions: delivering, fetching lost ranges from
//! history round by round (a reply may be cut at the broadcaster's reply
//! limit), and reporting what cannot be recovered.

use std::sync::Arc;

use fanfare_protocol::replay::{ReplayRequest, Status};
use futures::FutureExt;
use tokio::sync::mpsc;

use super::State;
use crate::error::ReplayError;
use crate::events::ClientEvent;
use crate::history::{History, RawReply};
use crate::message::{Gap, GapReason, Message};
use crate::repair::{Action, Ticket};
use crate::replay::decode_reply;

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
    history: History,
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
            lane: Some(ticket.lane),
            patterns: ask.patterns,
        };
        let result = ask.history.request(request).await;
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
    /// Carries out tracker actions in order.
    pub(super) fn apply(&mut self, actions: Vec<Action<Message>>) {
        for a in actions {
            match a {
                Action::Deliver(m) => self.deliver(&m),
                Action::Repair(t) => {
                    tracing::debug!(origin = %t.origin, lane = t.lane, from = t.from, to = t.to, "repairing gap");
                    self.next_round(t, None, 0, false);
                }
                Action::Restarted {
                    origin,
                    old_epoch,
                    new_epoch,
                } => {
                    tracing::info!(%origin, old_epoch, new_epoch, "broadcaster restarted");
                    let _ = self.task.events.send(ClientEvent::BroadcasterRestarted {
                        origin,
                        old_epoch,
                        new_epoch,
                    });
                }
                Action::Abandoned(t) => {
                    self.lost(&t, t.from, t.to, GapReason::EpochGone);
                }
                Action::Duplicate(m) => {
                    tracing::trace!(seq = m.stamp.seq, "duplicate dropped");
                }
                Action::Stale(m) => {
                    tracing::debug!(
                        epoch = m.stamp.epoch,
                        seq = m.stamp.seq,
                        "stale epoch dropped"
                    );
                }
            }
        }
    }

    fn deliver(&mut self, m: &Message) {
        let tracker = &self.tracker;
        let low = |o: &str| tracker.lowest_pending(o);
        self.registry.deliver(m, &low);
    }

    fn next_round(&mut self, t: Ticket, cursor: Option<u64>, recovered: u64, lost: bool) {
        let cursor = cursor.unwrap_or(t.from);
        // Rounds cover at most a quarter of a subscription queue in seqs,
        // so one reply never floods a queue that is keeping up.
        let room = (self.registry.capacity() / 4).max(1);
        let window = u64::try_from(room).unwrap_or(u64::MAX);
        let ask = Ask {
            history: self.task.history.clone(),
            patterns: self.registry.replay_patterns(),
            to: t.to.min(cursor.saturating_add(window - 1)),
            queues: self.registry.queues_for_lane(t.lane),
            room,
            wait: self.task.replay_wait,
        };
        self.rounds.push(round(ask, t, cursor, recovered, lost));
    }

    /// Reports `[first, last]` of a ticket's lane as lost.
    fn lost(&mut self, t: &Ticket, first: u64, last: u64, reason: GapReason) {
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
        self.registry.gap(&gap, Some(t.lane), &low);
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
            Ok(raw) => decode_reply(raw, &mut self.origins),
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
        for m in &batch.messages {
            let s = &m.stamp;
            let ours = s.origin == *origin && s.epoch == t.epoch && s.lane == t.lane;
            if ours && (cursor..=t.to).contains(&s.seq) {
                recovered += 1;
                self.deliver(m);
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
