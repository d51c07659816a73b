//! Delivery: queuing messages and gaps for the subscriptions that want
//! them, and the slow-consumer rule.
//!
//! A live subscription's queue is filled with `try_send`; when it is full
//! the subscription is closed as a slow consumer, with the position it can
//! resume from (after what it got, before anything still under repair). A
//! catching-up subscription holds live deliveries instead (`CatchUp::hold`).

use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::position::Position;
use fanfare_protocol::RESERVED_PREFIX;

use super::{Entry, Failed, Registry, MAX_KEPT_PENDING};
use crate::message::{CloseReason, Delivery, Gap, Mark, Marks, Message};

impl Registry {
    /// Delivers a message to every matching subscription: a clone to each
    /// but the last, which takes the message itself (one subscription, the
    /// usual case, costs no clone). `low` tells the lowest seq of an origin
    /// still under repair (for slow positions). The items wait in the
    /// subscription until [`Registry::flush`].
    pub(crate) fn deliver(&mut self, m: Message, low: &dyn Fn(&str) -> Option<Mark>) {
        let reserved = m.topic.starts_with(RESERVED_PREFIX);
        let mark = (m.stamp.epoch, m.stamp.seq);
        let mut slow = Vec::new();
        let mut last: Option<(u64, &mut Entry)> = None;
        let Registry {
            subs,
            flush_list,
            capacity,
            stall,
            ..
        } = self;
        let mut queue = |id: u64, e: &mut Entry, d: Delivery| {
            if let Err(failed) = defer_or_push(e, id, d, *capacity, *stall, flush_list) {
                slow.push((id, failed));
            }
        };
        for (id, e) in subs.iter_mut() {
            if !e.wants(&m.topic, reserved) {
                continue;
            }
            if e.start.get(&m.stamp.origin).is_some_and(|s| mark <= *s) {
                continue;
            }
            if let Some((pid, pe)) = last.replace((*id, e)) {
                queue(pid, pe, Delivery::Message(m.clone()));
            }
        }
        if let Some((id, e)) = last {
            queue(id, e, Delivery::Message(m));
        }
        self.close_slow(slow, low);
    }

    /// Tells a gap to every subscription that may have wanted the range
    /// (`lane`: the lane it is on, if known).
    pub(crate) fn gap(&mut self, gap: &Gap, lane: Option<u16>, low: &dyn Fn(&str) -> Option<Mark>) {
        let mut slow = Vec::new();
        for (id, e) in &mut self.subs {
            if let (Some(l), Some(el)) = (lane, e.lane) {
                if l != el {
                    continue;
                }
            }
            if e.start
                .get(&gap.origin)
                .is_some_and(|s| (gap.epoch, gap.last) <= *s)
            {
                continue;
            }
            // Behind what waits already: order is kept.
            let d = Delivery::Gap(gap.clone());
            let (capacity, stall) = (self.capacity, self.stall);
            if let Err(failed) = defer_or_push(e, *id, d, capacity, stall, &mut self.flush_list) {
                slow.push((*id, failed));
            }
        }
        self.close_slow(slow, low);
    }

    /// Queues what waits in the subscriptions, in
    /// order: one burst per subscription and task wake-up, so a reader on
    /// another thread is woken once per burst rather than per message.
    pub(crate) fn flush(&mut self, low: &dyn Fn(&str) -> Option<Mark>) {
        if self.flush_list.is_empty() {
            return;
        }
        let mut slow = Vec::new();
        for id in std::mem::take(&mut self.flush_list) {
            let Some(e) = self.subs.get_mut(&id) else {
                continue;
            };
            if let Err(failed) = drain_pending(e, self.capacity, self.stall) {
                slow.push((id, failed));
            }
        }
        self.close_slow(slow, low);
    }

    pub(super) fn close_slow(
        &mut self,
        slow: Vec<(u64, Failed)>,
        low: &dyn Fn(&str) -> Option<Mark>,
    ) {
        for (id, failed) in slow {
            let Some(e) = self.subs.get(&id) else {
                continue;
            };
            if e.queue.tx.is_closed() {
                self.remove(id, None);
                continue;
            }
            let position = position_of(e, failed, low);
            let pattern = e.pattern.as_str().to_owned();
            tracing::warn!(%pattern, %position, "slow subscription closed");
            self.remove(
                id,
                Some(CloseReason::SlowConsumer {
                    position: position.clone(),
                }),
            );
            self.effects.slow.push((pattern, position));
        }
    }
}

/// Puts `d` behind what waits in `e` (a live entry), or, for one catching
/// up, hands it to its catch-up. What waits never exceeds the queue's own bound: a
/// wake-up that releases more (a lane's parked messages after a repair) is
/// queued as it comes, and a reader that cannot take it is closed as slow.
fn defer_or_push(
    e: &mut Entry,
    id: u64,
    d: Delivery,
    capacity: usize,
    stall: Duration,
    flush_list: &mut Vec<u64>,
) -> Result<(), Failed> {
    if e.catch_up.is_some() {
        return push(e, capacity, stall, d);
    }
    if e.pending.len() >= capacity {
        drain_pending(e, capacity, stall)?;
    }
    if e.pending.is_empty() {
        flush_list.push(id);
    }
    e.pending.push(d);
    Ok(())
}

/// Queues what waits in `e`, in order; stops at the first that does not fit.
/// When all of it fits (the usual case), room for the whole burst is taken
/// from the queue at once: one reservation instead of one per item.
fn drain_pending(e: &mut Entry, capacity: usize, stall: Duration) -> Result<(), Failed> {
    let mut items = std::mem::take(&mut e.pending);
    let mut result = Ok(());
    if e.catch_up.is_none() {
        if let Ok(permits) = e.queue.tx.try_reserve_many(items.len()) {
            for (permit, d) in permits.zip(items.drain(..)) {
                if let Delivery::Message(m) = &d {
                    note_delivered(&mut e.delivered, m);
                }
                permit.send(d);
            }
        }
    }
    for d in items.drain(..) {
        if let Err(failed) = push(e, capacity, stall, d) {
            result = Err(failed);
            break;
        }
    }
    items.clear();
    if items.capacity() <= MAX_KEPT_PENDING {
        e.pending = items;
    }
    result
}

/// Queues a delivery (or holds it while catching up). `Err` (with the
/// message that did not fit, for the position) when the subscription must
/// close: queue full (or, catching up, an application that stopped
/// reading), or receiver gone.
pub(super) fn push(
    e: &mut Entry,
    capacity: usize,
    stall: Duration,
    d: Delivery,
) -> Result<(), Failed> {
    if let Some(c) = &mut e.catch_up {
        let failed = mark_of(&d);
        return if c.hold(d, capacity, &e.queue, stall) {
            Ok(())
        } else {
            Err(failed)
        };
    }
    let Delivery::Message(m) = &d else {
        return e
            .queue
            .tx
            .try_send(d)
            .map_err(|err| mark_of(&err.into_inner()));
    };
    let permit = match e.queue.tx.try_reserve() {
        Ok(permit) => permit,
        Err(_) => return Err(mark_of(&d)),
    };
    note_delivered(&mut e.delivered, m);
    permit.send(d);
    Ok(())
}

/// Moves the subscription's delivered mark of `m`'s origin on to `m`. A
/// known origin (the usual case) is updated in place: no hash of a new
/// key, no refcount of the origin's name per message.
fn note_delivered(delivered: &mut Marks, m: &Message) {
    let mark = (m.stamp.epoch, m.stamp.seq);
    match delivered.get_mut(&m.stamp.origin) {
        Some(d) => *d = (*d).max(mark),
        None => {
            delivered.insert(m.stamp.origin.clone(), mark);
        }
    }
}

/// The origin and mark of a delivery that did not fit: a message's own
/// seq, a gap's first (a position must stay below either).
pub(super) fn mark_of(d: &Delivery) -> Failed {
    match d {
        Delivery::Message(m) => Some((m.stamp.origin.clone(), (m.stamp.epoch, m.stamp.seq))),
        Delivery::Gap(g) => Some((g.origin.clone(), (g.epoch, g.first))),
        Delivery::Closed(_) | Delivery::Watermark(_) => None,
    }
}

/// Where a closing subscription stands: per origin, the last seq below
/// which nothing it wants is missing.
fn position_of(e: &Entry, failed: Failed, low: &dyn Fn(&str) -> Option<Mark>) -> Position {
    let mut marks: Marks = e.start.clone();
    if let Some(c) = &e.catch_up {
        if let Ok(p) = c.progress.lock() {
            for (o, ep, s) in p.iter() {
                let m = marks.entry(Arc::from(o)).or_insert((ep, s));
                *m = (*m).max((ep, s));
            }
        }
    }
    for (o, d) in &e.delivered {
        let m = marks.entry(o.clone()).or_insert(*d);
        *m = (*m).max(*d);
    }
    if let Some((o, (ep, s))) = failed {
        let m = marks.entry(o).or_insert((ep, s.saturating_sub(1)));
        *m = (*m).min((ep, s.saturating_sub(1)));
    }
    let mut pos = Position::new();
    for (o, (ep, mut s)) in marks {
        if let Some((le, lf)) = low(&o) {
            if le == ep {
                s = s.min(lf.saturating_sub(1));
            }
        }
        pos.advance(&o, ep, s);
    }
    pos
}
