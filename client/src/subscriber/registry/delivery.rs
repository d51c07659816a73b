//! Delivery: queuing messages and gaps for the subscriptions that want
//! them, and the slow-consumer rule.
//!
//! A live subscription's queue is filled with `try_send`; when it is full
//! the subscription is closed as a slow consumer, with the position it can
//! resume from (after what it got, before anything still under repair). A
//! catching-up subscription holds live deliveries instead (`CatchUp::hold`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::position::Position;
use fanfare_protocol::RESERVED_PREFIX;

use super::{Entry, Failed, Registry};
use crate::message::{CloseReason, Delivery, Gap, Mark, Message};

impl Registry {
    /// Delivers a message to every matching subscription. `low` tells the
    /// lowest seq of an origin still under repair (for slow positions).
    pub(crate) fn deliver(&mut self, m: &Message, low: &dyn Fn(&str) -> Option<Mark>) {
        let reserved = m.topic.starts_with(RESERVED_PREFIX);
        let mark = (m.stamp.epoch, m.stamp.seq);
        let mut slow = Vec::new();
        for (id, e) in &mut self.subs {
            if reserved && !e.pattern.as_str().starts_with(RESERVED_PREFIX) {
                continue;
            }
            if !e.pattern.matches(&m.topic) {
                continue;
            }
            if e.start.get(&m.stamp.origin).is_some_and(|s| mark <= *s) {
                continue;
            }
            if !push(e, self.capacity, self.stall, Delivery::Message(m.clone())) {
                slow.push((*id, Some((m.stamp.origin.clone(), mark))));
            }
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
            if !push(e, self.capacity, self.stall, Delivery::Gap(gap.clone())) {
                slow.push((*id, None));
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

/// Queues a delivery (or holds it while catching up). False when the
/// subscription must close: queue full (or, catching up, an application
/// that stopped reading), or receiver gone.
pub(super) fn push(e: &mut Entry, capacity: usize, stall: Duration, d: Delivery) -> bool {
    if let Some(c) = &mut e.catch_up {
        return c.hold(d, capacity, &e.queue, stall);
    }
    let Delivery::Message(m) = &d else {
        return e.queue.tx.try_send(d).is_ok();
    };
    let mark = (m.stamp.epoch, m.stamp.seq);
    // A known origin (the usual case) is updated in place: no hash of a
    // new key, no refcount of the origin's name per message.
    let known = e.delivered.get_mut(&m.stamp.origin);
    let new_origin = known.is_none().then(|| m.stamp.origin.clone());
    if e.queue.tx.try_send(d).is_err() {
        return false;
    }
    match (known, new_origin) {
        (Some(d), _) => *d = (*d).max(mark),
        (None, Some(origin)) => {
            e.delivered.insert(origin, mark);
        }
        (None, None) => {}
    }
    true
}

/// The origin and mark of a message delivery.
pub(super) fn mark_of(d: &Delivery) -> Failed {
    match d {
        Delivery::Message(m) => Some((m.stamp.origin.clone(), (m.stamp.epoch, m.stamp.seq))),
        _ => None,
    }
}

/// Where a closing subscription stands: per origin, the last seq below
/// which nothing it wants is missing.
fn position_of(e: &Entry, failed: Failed, low: &dyn Fn(&str) -> Option<Mark>) -> Position {
    let mut marks: HashMap<Arc<str>, Mark> = e.start.clone();
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
