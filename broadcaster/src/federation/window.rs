//! Exactly once, in order, per `(origin, epoch)`: the window a broadcaster
//! keeps for each origin it hears over links.
//!
//! `next` is the seq it publishes next. An offered seq below `next` (or
//! already held) is a duplicate; `next` itself is published at once, then
//! held successors drain; a seq above `next` is held in a bounded reorder
//! buffer and opens a *gap* `[next, first held − 1]`, which the relay
//! repairs from a peer's replay endpoint after a short grace. A heartbeat
//! telling a seq at or above `next` opens a gap too (tail loss). Pure logic:
//! no I/O, no clock reads (the caller passes `now`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most messages held per origin.
pub(crate) const MAX_HELD: usize = 4096;
/// Most bytes held per origin.
pub(crate) const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;
/// Repairs in a row that bring nothing before the gap is given up as
/// unrecoverable.
pub(crate) const MAX_FRUITLESS_REPAIRS: u32 = 8;
/// Longest wait between two repairs of one gap.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What became of an offered message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer<T> {
    /// Publish it now (then [`Window::drain`]).
    Publish(T),
    /// Already published or held: drop it.
    Duplicate,
    /// Held for order.
    Held,
    /// Out of order and the buffer is full: dropped; the gap it leaves is
    /// repaired later.
    Overflow,
}

/// One origin's window in one epoch.
#[derive(Debug)]
pub(crate) struct Window<T> {
    /// The epoch this window counts in.
    pub(crate) epoch: u64,
    /// Next seq to publish.
    next: u64,
    held: BTreeMap<u64, (T, usize)>,
    held_bytes: usize,
    /// Highest seq known to exist (offered, or told by a heartbeat).
    known: u64,
    /// When the current gap was first seen.
    gap_since: Option<Instant>,
    /// A repair is in flight since then.
    repairing: Option<Instant>,
    /// `next` when the last repair was asked for.
    mark: u64,
    /// Repairs in a row that did not move `next`.
    fruitless: u32,
    /// Seq `u64::MAX` was published: nothing more can come in this epoch.
    exhausted: bool,
}

impl<T> Window<T> {
    /// A window that publishes `next` first.
    pub(crate) fn new(epoch: u64, next: u64) -> Self {
        Self {
            epoch,
            next: next.max(1),
            held: BTreeMap::new(),
            held_bytes: 0,
            known: 0,
            gap_since: None,
            repairing: None,
            mark: 0,
            fruitless: 0,
            exhausted: false,
        }
    }

    /// Moves `next` past `seq` (`u64::MAX` ends the epoch).
    fn advance_past(&mut self, seq: u64) {
        match seq.checked_add(1) {
            Some(n) => self.next = n,
            None => self.exhausted = true,
        }
    }

    /// Next seq to publish.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Messages held now.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Offers message `seq` of `size` bytes.
    pub(crate) fn offer(&mut self, seq: u64, item: T, size: usize, now: Instant) -> Offer<T> {
        self.known = self.known.max(seq);
        if self.exhausted || seq < self.next || self.held.contains_key(&seq) {
            return Offer::Duplicate;
        }
        if seq == self.next {
            self.advance_past(seq);
            return Offer::Publish(item);
        }
        self.gap_since.get_or_insert(now);
        if self.held.len() >= MAX_HELD || self.held_bytes.saturating_add(size) > MAX_HELD_BYTES {
            return Offer::Overflow;
        }
        self.held_bytes += size;
        self.held.insert(seq, (item, size));
        Offer::Held
    }

    /// The next held message that may now be published, if any.
    pub(crate) fn drain(&mut self) -> Option<T> {
        let entry = self.held.first_entry().filter(|e| *e.key() == self.next);
        match entry {
            Some(e) => {
                let (item, size) = e.remove();
                self.held_bytes -= size;
                self.advance_past(self.next);
                Some(item)
            }
            None => {
                if !self.has_gap() {
                    self.gap_since = None;
                    self.fruitless = 0;
                }
                None
            }
        }
    }

    /// A heartbeat says the origin has stamped up to `seq`.
    pub(crate) fn tell(&mut self, seq: u64, now: Instant) {
        self.known = self.known.max(seq);
        if self.has_gap() {
            self.gap_since.get_or_insert(now);
        }
    }

    /// True when seqs are known to exist that are not published yet.
    pub(crate) fn has_gap(&self) -> bool {
        !self.exhausted && self.known >= self.next
    }

    /// True when everything known has been published.
    pub(crate) fn caught_up(&self, seq: u64) -> bool {
        self.exhausted || seq < self.next
    }

    /// The missing range to repair: `[next, first held − 1]`, or up to the
    /// highest known seq when nothing is held.
    pub(crate) fn gap(&self) -> Option<(u64, u64)> {
        if !self.has_gap() {
            return None;
        }
        let to = match self.held.keys().next() {
            Some(&first) => first - 1,
            None => self.known,
        };
        Some((self.next, to))
    }

    /// True when a repair of the gap should be asked for now: the gap is
    /// older than `grace` (doubled per fruitless repair, at most 1 s), or
    /// the buffer is full; and no repair is in flight.
    pub(crate) fn repair_due(&self, now: Instant, grace: Duration) -> bool {
        let (Some(since), None) = (self.gap_since, self.repairing) else {
            return false;
        };
        let full = self.held.len() >= MAX_HELD || self.held_bytes >= MAX_HELD_BYTES / 2;
        let wait = grace
            .saturating_mul(1 << self.fruitless.min(16))
            .min(MAX_BACKOFF);
        full || now.saturating_duration_since(since) >= wait
    }

    /// A repair was asked for.
    pub(crate) fn repair_started(&mut self, now: Instant) {
        self.repairing = Some(now);
        self.mark = self.next;
    }

    /// True when a repair has been in flight longer than `limit`.
    pub(crate) fn repair_stuck(&self, now: Instant, limit: Duration) -> bool {
        self.repairing
            .is_some_and(|at| now.saturating_duration_since(at) > limit)
    }

    /// The repair in flight ended. Returns true when the gap should be given
    /// up: too many repairs in a row brought nothing.
    pub(crate) fn repair_done(&mut self, now: Instant) -> bool {
        self.repairing = None;
        if !self.has_gap() {
            self.fruitless = 0;
            self.gap_since = None;
            return false;
        }
        if self.next == self.mark {
            self.fruitless += 1;
        } else {
            self.fruitless = 0;
        }
        // Measure the next wait from now.
        self.gap_since = Some(now);
        self.fruitless >= MAX_FRUITLESS_REPAIRS
    }

    /// Gives up seqs `[next, to]` (never past the first held one): returns
    /// how many were skipped. Call [`Self::drain`] after.
    pub(crate) fn skip_through(&mut self, to: u64) -> u64 {
        let to = match self.held.keys().next() {
            Some(&first) => to.min(first - 1),
            None => to,
        };
        if to < self.next {
            return 0;
        }
        let skipped = (to - self.next).saturating_add(1);
        self.advance_past(to);
        self.fruitless = 0;
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(w: &mut Window<u64>, seq: u64, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        if let Offer::Publish(s) = w.offer(seq, seq, 10, now) {
            out.push(s);
            while let Some(s) = w.drain() {
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn in_order_dup_and_reorder() {
        let now = Instant::now();
        let mut w = Window::new(1, 5);
        assert_eq!(publish(&mut w, 5, now), [5]);
        assert_eq!(w.offer(5, 5, 10, now), Offer::Duplicate);
        assert_eq!(w.offer(3, 3, 10, now), Offer::Duplicate);
        assert_eq!(w.offer(8, 8, 10, now), Offer::Held);
        assert_eq!(w.offer(8, 8, 10, now), Offer::Duplicate);
        assert_eq!(w.offer(7, 7, 10, now), Offer::Held);
        assert_eq!(w.gap(), Some((6, 6)));
        assert!(!w.repair_due(now, Duration::from_millis(30)));
        assert!(w.repair_due(now + Duration::from_millis(30), Duration::from_millis(30)));
        assert_eq!(publish(&mut w, 6, now), [6, 7, 8]);
        assert_eq!(w.gap(), None);
        assert_eq!(w.held(), 0);
        assert!(!w.repair_due(now + Duration::from_secs(9), Duration::from_millis(30)));
    }

    #[test]
    fn heartbeat_tail_gap_and_give_up() {
        let t = Instant::now();
        let mut w: Window<u64> = Window::new(1, 1);
        assert_eq!(publish(&mut w, 1, t), [1]);
        w.tell(1, t);
        assert!(!w.has_gap());
        w.tell(4, t);
        assert_eq!(w.gap(), Some((2, 4)));
        let g = Duration::from_millis(10);
        let mut now = t + g;
        let mut gave_up = false;
        for _ in 0..MAX_FRUITLESS_REPAIRS {
            assert!(w.repair_due(now, g));
            w.repair_started(now);
            assert!(!w.repair_due(now, g));
            gave_up = w.repair_done(now);
            now += MAX_BACKOFF;
        }
        assert!(gave_up);
        assert_eq!(w.skip_through(4), 3);
        assert_eq!(w.next(), 5);
        assert!(!w.has_gap());
    }

    #[test]
    fn skip_stops_before_held_and_bounds_hold() {
        let t = Instant::now();
        let mut w = Window::new(1, 1);
        assert_eq!(w.offer(5, 5, 10, t), Offer::Held);
        assert_eq!(w.skip_through(100), 4);
        assert_eq!(w.drain(), Some(5));
        let mut w = Window::new(1, 1);
        for s in 2..2 + MAX_HELD as u64 {
            assert_eq!(w.offer(s, s, 1, t), Offer::Held);
        }
        assert_eq!(w.offer(u64::MAX, 0, 1, t), Offer::Overflow);
        assert!(w.repair_due(t, Duration::from_secs(5)));
        assert_eq!(w.gap(), Some((1, 1)));
        // Seqs from outside never wrap.
        let mut w = Window::new(1, u64::MAX);
        assert_eq!(publish(&mut w, u64::MAX, t), [u64::MAX]);
        assert_eq!(w.offer(u64::MAX, 0, 1, t), Offer::Duplicate);
    }
}
