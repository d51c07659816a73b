//! Gap tracking: which messages are missing, per origin and lane.
//!
//! Pure logic, no I/O and no clock: the subscriber task feeds it every
//! message and heartbeat and carries out the [`Action`]s it returns.
//!
//! Per origin it knows the epoch, and per lane the last lane seq and the seq
//! of that lane's last message. A lane seq jump, or a heartbeat reporting a
//! lane further on than we are, asks for a repair of the seq range in
//! between (filtered by lane: a jump may also be prefix filtering, and the
//! replay answer tells which). While a lane is being repaired its later
//! messages are *parked* and released, in order, once the repair is
//! [finished](Tracker::finish). Parking is bounded ([`Tracker::new`]): past
//! the bound, messages are dropped and remembered as a *tail* that is fetched
//! from history after the repair — nothing is lost, memory stays bounded.
//!
//! Ordering guarantee: per lane (all topics sharing a first word), messages
//! are released in seq order. Lanes are independent.

use foldhash::HashMap;
use std::sync::Arc;

use fanfare_protocol::heartbeat::LaneMark;

/// The stamp fields the tracker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub epoch: u64,
    pub seq: u64,
    pub lane: u16,
    pub lane_seq: u64,
}

/// A seq range to fetch from history: of one lane, or of every lane of
/// the origin (`lane: None`, a [sweep](sweep)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub id: u64,
    pub origin: Arc<str>,
    pub epoch: u64,
    pub lane: Option<u16>,
    pub from: u64,
    pub to: u64,
}

/// What the caller must do, in this order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action<M> {
    /// Deliver this message now.
    Deliver(M),
    /// Fetch this range (lane filter) and deliver it, then call
    /// [`Tracker::finish`]. For a sweep (no lane), hand every reply to
    /// [`Tracker::on_sweep_reply`] instead of delivering it.
    Repair(Ticket),
    /// The origin restarted (a newer epoch).
    Restarted {
        origin: Arc<str>,
        old_epoch: u64,
        new_epoch: u64,
    },
    /// This range of an old epoch will not be repaired (the origin
    /// restarted): report it lost.
    Abandoned(Ticket),
    /// Already delivered; drop it.
    Duplicate(M),
    /// From an older epoch than the origin's current one; drop it.
    Stale(M),
}

mod lane;
mod sweep;

use lane::{Budget, Ctx, Lane};
use sweep::{push_range, Held, Sweep};

#[derive(Debug)]
struct Origin<M> {
    epoch: u64,
    /// Seqs up to this one came before we were listening.
    base: u64,
    max_seq: u64,
    lanes: HashMap<u16, Lane<M>>,
    /// A repair of a range across lanes, with what waits behind it.
    sweep: Option<Sweep<M>>,
}

/// Gap tracker over all origins. `M` is the message type carried through.
#[derive(Debug)]
pub(crate) struct Tracker<M> {
    origins: HashMap<Arc<str>, Origin<M>>,
    budget: Budget,
}

impl<M> Tracker<M> {
    /// A tracker parking at most `max_parked` messages in all.
    pub(crate) fn new(max_parked: usize) -> Self {
        Self {
            origins: HashMap::default(),
            budget: Budget {
                next_id: 0,
                parked: 0,
                max_parked,
            },
        }
    }

    /// A message arrived live. `floor` is asked only for a lane seen for the
    /// first time: the seq after which subscriptions want this origin's
    /// messages (to repair what the lane lost before its first message), or
    /// `None` when no subscription covers the lane: then the lane is not
    /// tracked (a late message after an unsubscribe must not leave a lane
    /// behind whose next message would ask for everything in between).
    /// `session`: the seq after which the connection that brought it is
    /// complete for this origin (a session, PROTOCOL.md): a lane that had
    /// everything up to that seq and jumps was filtered, and is not
    /// repaired.
    pub(crate) fn on_message(
        &mut self,
        origin: &Arc<str>,
        head: Head,
        msg: M,
        floor: impl FnOnce() -> Option<u64>,
        session: Option<u64>,
        out: &mut Vec<Action<M>>,
    ) {
        let Some(o) = self.origins.get_mut(origin) else {
            let mut lanes = HashMap::default();
            lanes.insert(head.lane, Lane::at(head.lane_seq, head.seq));
            self.origins.insert(
                origin.clone(),
                Origin {
                    epoch: head.epoch,
                    base: head.seq.saturating_sub(1),
                    max_seq: head.seq,
                    lanes,
                    sweep: None,
                },
            );
            out.push(Action::Deliver(msg));
            return;
        };
        if head.epoch < o.epoch {
            out.push(Action::Stale(msg));
            return;
        }
        if head.epoch > o.epoch {
            restart(origin, o, head.epoch, &mut self.budget.parked, out);
        }
        o.max_seq = o.max_seq.max(head.seq);
        if let Some(sw) = o.sweep.as_mut() {
            if self.budget.parked < self.budget.max_parked {
                self.budget.parked += 1;
                // Asked only for a lane not seen yet (as for a live one;
                // asking looks at every subscription). A known lane does not
                // consult it, and one forgotten meanwhile (no subscription
                // covers it any more) is then not tracked, as `None` says.
                let floor = if o.lanes.contains_key(&head.lane) {
                    None
                } else {
                    floor()
                };
                sw.held.push_back(Held::Msg {
                    head,
                    msg,
                    session,
                    floor,
                });
            } else {
                push_range(&mut sw.held, head.seq, head.seq, session);
            }
            return;
        }
        let mut ctx = Ctx::new(origin, (o.epoch, head.lane), &mut self.budget, session, out);
        step_message(o, &mut ctx, head, msg, floor);
    }

    /// A heartbeat arrived: `seq` is the origin's last stamped seq, `marks`
    /// its recently active lanes. `floor(lane)` tells, for a lane not yet
    /// seen, the seq after which subscriptions want it (`None`: no
    /// subscription covers that lane). `session` as for
    /// [`Self::on_message`]: a lane complete up to it that the mark shows
    /// further on had nothing more we want, and moves on unrepaired.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_heartbeat(
        &mut self,
        origin: &Arc<str>,
        epoch: u64,
        seq: u64,
        marks: &[LaneMark],
        floor: impl Fn(u16) -> Option<u64>,
        session: Option<u64>,
        out: &mut Vec<Action<M>>,
    ) {
        let Some(o) = self.origins.get_mut(origin) else {
            self.origins.insert(
                origin.clone(),
                Origin {
                    epoch,
                    base: seq,
                    max_seq: seq,
                    lanes: HashMap::default(),
                    sweep: None,
                },
            );
            return;
        };
        if epoch < o.epoch {
            return;
        }
        if epoch > o.epoch {
            restart(origin, o, epoch, &mut self.budget.parked, out);
        }
        o.max_seq = o.max_seq.max(seq);
        if o.sweep.is_some() {
            // The sweep covers the range behind; the next heartbeat after
            // it tells what is beyond.
            return;
        }
        for mark in marks {
            // A lane's seq is one of the origin's seqs, and counts no more
            // messages than the origin stamped: a mark beyond that is
            // corrupt (acting on it would move the lane past messages that
            // exist, dropping every later one as a duplicate).
            if mark.seq > seq || mark.lane_seq > mark.seq {
                continue;
            }
            let mut ctx = Ctx::new(origin, (o.epoch, mark.lane), &mut self.budget, session, out);
            let target = (mark.lane_seq, mark.seq);
            let complete_from = |lane_seq: u64| session.is_some_and(|p| lane_seq >= p);
            match o.lanes.get_mut(&mark.lane) {
                Some(lane) => {
                    let parked = lane.parked.back().map_or(0, |(h, _)| h.lane_seq);
                    let tail = lane.tail.map_or(0, |t| t.0);
                    if mark.lane_seq <= lane.lane_seq.max(parked).max(tail) {
                        continue;
                    }
                    if lane.pending.is_some() {
                        lane.tail = Some(target);
                    } else if complete_from(lane.seq) {
                        (lane.lane_seq, lane.seq) = (mark.lane_seq, lane.seq.max(mark.seq));
                    } else {
                        ctx.start(lane, lane.seq.saturating_add(1), mark.seq, target);
                    }
                }
                None => {
                    let Some(f) = floor(mark.lane) else { continue };
                    let f = f.max(o.base);
                    if mark.seq > f && !complete_from(f) {
                        let mut lane = Lane::at(0, f);
                        ctx.start(&mut lane, f + 1, mark.seq, target);
                        o.lanes.insert(mark.lane, lane);
                    }
                }
            }
        }
    }

    /// The repair `ticket` is done (its messages were delivered, or its loss
    /// reported): releases the lane's parked messages.
    pub(crate) fn finish(&mut self, ticket: &Ticket, out: &mut Vec<Action<M>>) {
        let Some(o) = self.origins.get_mut(&ticket.origin) else {
            return;
        };
        if o.epoch != ticket.epoch {
            return;
        }
        let Some(lane_id) = ticket.lane else {
            return self.finish_sweep(ticket, out);
        };
        let Some(lane) = o.lanes.get_mut(&lane_id) else {
            return;
        };
        let Some(p) = lane.pending.filter(|p| p.id == ticket.id) else {
            return;
        };
        lane.pending = None;
        lane.lane_seq = lane.lane_seq.max(p.target.0);
        lane.seq = lane.seq.max(p.target.1);
        let mut ctx = Ctx::new(
            &ticket.origin,
            (o.epoch, lane_id),
            &mut self.budget,
            None,
            out,
        );
        ctx.drain(lane);
    }

    /// The origin's epoch and the seq up to which it had sent before the
    /// client started listening to it.
    pub(crate) fn base(&self, origin: &str) -> Option<(u64, u64)> {
        self.origins.get(origin).map(|o| (o.epoch, o.base))
    }

    /// The origin's epoch and the highest seq seen from it.
    pub(crate) fn max_seq(&self, origin: &str) -> Option<(u64, u64)> {
        self.origins.get(origin).map(|o| (o.epoch, o.max_seq))
    }

    /// Every known origin with its epoch and highest seq.
    pub(crate) fn origins(&self) -> impl Iterator<Item = (&Arc<str>, u64, u64)> {
        self.origins.iter().map(|(k, o)| (k, o.epoch, o.max_seq))
    }

    /// The lowest seq of the origin still being repaired, if any: a
    /// position must stay below it to lose nothing.
    pub(crate) fn lowest_pending(&self, origin: &str) -> Option<(u64, u64)> {
        let o = self.origins.get(origin)?;
        let low = o
            .lanes
            .values()
            .filter_map(|l| l.pending.map(|p| p.from))
            .chain(o.sweep.as_ref().map(|s| s.from))
            .min()?;
        Some((o.epoch, low))
    }

    /// Forgets lanes (not under repair) that no subscription covers any more,
    /// so a later subscription starts them afresh.
    pub(crate) fn retain_lanes(&mut self, keep: impl Fn(u16) -> bool) {
        for o in self.origins.values_mut() {
            o.lanes.retain(|id, l| l.pending.is_some() || keep(*id));
        }
    }

    /// The parking bound is reached: a message of a lane under repair
    /// would be dropped (and fetched later as the lane's tail).
    pub(crate) fn parking_full(&self) -> bool {
        self.budget.parked >= self.budget.max_parked
    }

    /// Messages parked in all.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.budget.parked
    }
}

/// One message on its lane (a new lane starts from `floor`, asked only
/// then; `None`: no subscription covers it, so it is not tracked).
fn step_message<M>(
    o: &mut Origin<M>,
    ctx: &mut Ctx<'_, M>,
    head: Head,
    msg: M,
    floor: impl FnOnce() -> Option<u64>,
) {
    if let Some(lane) = o.lanes.get_mut(&head.lane) {
        ctx.step(lane, head, msg);
        return;
    }
    let Some(floor) = floor() else {
        ctx.out.push(Action::Deliver(msg));
        return;
    };
    let floor = if head.lane_seq <= 1 {
        u64::MAX
    } else {
        o.base.max(floor)
    };
    if floor.saturating_add(1) >= head.seq {
        o.lanes.insert(head.lane, Lane::at(head.lane_seq, head.seq));
        ctx.out.push(Action::Deliver(msg));
        return;
    }
    let mut lane = Lane::at(0, floor);
    ctx.step(&mut lane, head, msg);
    o.lanes.insert(head.lane, lane);
}

/// The origin restarted: abandon old repairs (release their parked messages
/// after reporting the loss) and expect every known lane from lane seq 1.
fn restart<M>(
    origin: &Arc<str>,
    o: &mut Origin<M>,
    new_epoch: u64,
    parked: &mut usize,
    out: &mut Vec<Action<M>>,
) {
    out.push(Action::Restarted {
        origin: origin.clone(),
        old_epoch: o.epoch,
        new_epoch,
    });
    for (id, lane) in &mut o.lanes {
        if let Some(p) = lane.pending.take() {
            let last_parked = lane.parked.back().map(|(h, _)| h.seq);
            out.push(Action::Abandoned(Ticket {
                id: p.id,
                origin: origin.clone(),
                epoch: o.epoch,
                lane: Some(*id),
                from: p.from,
                to: p.to,
            }));
            *parked -= lane.parked.len();
            out.extend(lane.parked.drain(..).map(|(_, m)| Action::Deliver(m)));
            if let Some(t) = lane.tail.take() {
                let from = last_parked.unwrap_or(p.to).saturating_add(1);
                if t.1 >= from {
                    out.push(Action::Abandoned(Ticket {
                        id: p.id,
                        origin: origin.clone(),
                        epoch: o.epoch,
                        lane: Some(*id),
                        from,
                        to: t.1,
                    }));
                }
            }
        }
        *lane = Lane::at(0, 0);
    }
    // After the lanes' parked messages: the sweep's held ones are later.
    if let Some(sw) = o.sweep.take() {
        let abandoned = |from, to| Ticket {
            id: sw.id,
            origin: origin.clone(),
            epoch: o.epoch,
            lane: None,
            from,
            to,
        };
        out.push(Action::Abandoned(abandoned(sw.from, sw.to)));
        for h in sw.held {
            match h {
                Held::Msg { msg, .. } => {
                    *parked -= 1;
                    out.push(Action::Deliver(msg));
                }
                Held::Range { from, to, .. } => {
                    out.push(Action::Abandoned(abandoned(from, to)));
                }
            }
        }
    }
    o.epoch = new_epoch;
    o.base = 0;
    o.max_seq = 0;
}

#[cfg(test)]
mod sweep_tests;
#[cfg(test)]
mod tests;
