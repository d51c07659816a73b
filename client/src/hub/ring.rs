//! The hub's own ring: the last events it dispatched, already serialized,
//! so that a browser resuming with `since` is served without asking the
//! broadcaster.
//!
//! Bounded by count and bytes; the oldest go first. For each origin the ring
//! knows from which seq on it holds *every* message of the current epoch
//! that the feed carries (`first`): below that, recovery must ask the
//! broadcaster. The reorder hands events over in origin order with every
//! hole accounted for (filled, reported lost — [`Ring::note_gap`] —, a
//! re-sent copy, or filtered under a watermark), so a seq jump is no hole.
//! When the feed takes on a pattern, what the ring held before does not
//! cover it: [`Ring::raise`].

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use foldhash::HashMap;

use super::connection::Outgoing;

/// One dispatched event: its stamp and its frame, shared by every connection.
#[derive(Debug)]
pub struct Event {
    /// Topic.
    pub topic: Arc<str>,
    /// Origin broadcaster id.
    pub origin: Arc<str>,
    /// Origin epoch.
    pub epoch: u64,
    /// Origin seq.
    pub seq: u64,
    /// Stamp time (µs since the Unix epoch).
    pub timestamp_us: u64,
    /// The `{"op":"event",…}` frame.
    pub frame: Utf8Bytes,
}

impl Event {
    /// Its frame as a live delivery (counted in the delivery lag).
    pub fn live(&self) -> Outgoing {
        Outgoing::live(self.frame.clone(), self.timestamp_us)
    }
}

/// What the ring holds of one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Epoch of the held run.
    pub epoch: u64,
    /// The ring holds every seq in `[first, last]` (first > last: none).
    pub first: u64,
    /// Newest seq seen.
    pub last: u64,
}

/// The ring.
#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    origins: HashMap<Arc<str>, Coverage>,
    /// A raise that found no run of its origin and epoch (none yet, or an
    /// older epoch's): the run that starts next covers only after it.
    /// At most one per origin.
    floors: HashMap<Arc<str>, (u64, u64)>,
}

impl Ring {
    /// An empty ring holding at most `max_events` events and `max_bytes` of frames.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
            origins: HashMap::default(),
            floors: HashMap::default(),
        }
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// What is held of `origin`.
    pub fn coverage(&self, origin: &str) -> Option<Coverage> {
        self.origins.get(origin).copied()
    }

    /// Records a dispatched event. Returns false (and keeps nothing) when it
    /// is a duplicate or older than what was seen.
    pub fn push(&mut self, event: Arc<Event>) -> bool {
        match self.origins.get_mut(&event.origin) {
            Some(c) if c.epoch == event.epoch => {
                if event.seq <= c.last {
                    return false;
                }
                c.last = event.seq;
            }
            Some(c) if c.epoch > event.epoch => return false,
            _ => {
                let first = match self.floors.remove(&event.origin) {
                    Some((epoch, floor)) if epoch == event.epoch => {
                        event.seq.max(floor.saturating_add(1))
                    }
                    _ => event.seq,
                };
                self.origins.insert(
                    event.origin.clone(),
                    Coverage {
                        epoch: event.epoch,
                        first,
                        last: event.seq,
                    },
                );
            }
        }
        self.bytes += event.frame.len();
        self.events.push_back(event);
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.frame.len();
            if let Some(c) = self.origins.get_mut(&old.origin) {
                if c.epoch == old.epoch && c.first <= old.seq {
                    c.first = old.seq.saturating_add(1);
                }
            }
        }
        true
    }

    /// Records that `[.., last]` of `origin`/`epoch` will never come: the held
    /// run restarts after it.
    pub fn note_gap(&mut self, origin: &Arc<str>, epoch: u64, last: u64) {
        if let Some(c) = self.origins.get_mut(origin) {
            if c.epoch == epoch && c.first <= last {
                c.first = last.saturating_add(1);
            }
        }
    }

    /// The feed carries more patterns from after `seq` of `origin`/`epoch`
    /// on: the held run covers them only from there.
    pub fn raise(&mut self, origin: &Arc<str>, epoch: u64, seq: u64) {
        match self.origins.get_mut(origin) {
            Some(c) if c.epoch == epoch => {
                if c.first <= seq {
                    c.first = seq.saturating_add(1);
                }
            }
            Some(c) if c.epoch > epoch => {}
            // No run of this epoch yet: events up to `seq` may still come
            // (in flight in the feed); the run they start covers only after.
            _ => {
                let floor = self.floors.entry(origin.clone()).or_insert((epoch, seq));
                if floor.0 < epoch || (floor.0 == epoch && floor.1 < seq) {
                    *floor = (epoch, seq);
                }
            }
        }
    }

    /// Nothing held of `origin` covers a resume any more (its run restarts
    /// with its next event).
    pub fn forget(&mut self, origin: &str) {
        self.origins.remove(origin);
        self.floors.remove(origin);
    }

    /// Held events of `origin`/`epoch` with seq > `after`, oldest first, at
    /// most `max`: refcount clones, no pattern matching (that is done by the
    /// resuming connection, outside the registry lock).
    pub fn since(&self, origin: &str, epoch: u64, after: u64, max: usize) -> Vec<Arc<Event>> {
        // Events are in dispatch order: skip the older part by seq bound.
        self.events
            .iter()
            .filter(|e| &*e.origin == origin && e.epoch == epoch && e.seq > after)
            .take(max)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(origin: &str, epoch: u64, seq: u64) -> Arc<Event> {
        Arc::new(Event {
            topic: "t".into(),
            origin: origin.into(),
            epoch,
            seq,
            timestamp_us: 0,
            frame: Utf8Bytes::from(format!("{seq:04}")),
        })
    }

    #[test]
    fn coverage_follows_pushes_evictions_and_holes() {
        let mut r = Ring::new(3, 1 << 20);
        for s in 1..=3 {
            assert!(r.push(ev("b", 1, s)));
        }
        assert!(!r.push(ev("b", 1, 2)), "duplicate refused");
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((1, 3)));
        r.push(ev("b", 1, 4));
        assert_eq!(r.len(), 3);
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((2, 4)));
        r.push(ev("b", 1, 7)); // 5 and 6 were filtered: no hole
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((3, 7)));
        assert_eq!(r.since("b", 1, 3, usize::MAX).len(), 2);
        let b: Arc<str> = "b".into();
        r.raise(&b, 1, 6);
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((7, 7)));
        r.raise(&b, 1, 2); // behind: nothing
        assert_eq!(r.coverage("b").map(|c| c.first), Some(7));
        r.push(ev("b", 2, 1));
        assert_eq!(
            r.coverage("b"),
            Some(Coverage {
                epoch: 2,
                first: 1,
                last: 1
            })
        );
        r.note_gap(&"b".into(), 2, 5);
        assert_eq!(r.coverage("b").map(|c| c.first), Some(6));
        r.forget("b");
        assert_eq!(r.coverage("b"), None);
        r.push(ev("b", 2, 9));
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((9, 9)));
    }

    /// A raise before the origin's first event (or of a newer epoch than
    /// the ring holds): the events up to it still in flight start a run
    /// that covers only after the raise.
    #[test]
    fn a_raise_with_no_run_yet_bounds_the_run_that_starts() {
        let mut r = Ring::new(100, 1 << 20);
        let b: Arc<str> = "b".into();
        r.raise(&b, 1, 5);
        assert!(
            r.push(ev("b", 1, 3)),
            "an event in flight is still dispatched"
        );
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((6, 3)));
        r.push(ev("b", 1, 8));
        assert_eq!(r.coverage("b").map(|c| (c.first, c.last)), Some((6, 8)));
        // A newer epoch than the ring holds.
        r.raise(&b, 2, 4);
        assert_eq!(
            r.coverage("b").map(|c| c.epoch),
            Some(1),
            "the old run stays"
        );
        r.push(ev("b", 2, 2));
        assert_eq!(r.coverage("b").map(|c| (c.epoch, c.first)), Some((2, 5)));
        // Used once: a later new run starts where it starts.
        r.forget("b");
        r.push(ev("b", 2, 9));
        assert_eq!(r.coverage("b").map(|c| c.first), Some(9));
    }

    #[test]
    fn byte_bound() {
        let mut r = Ring::new(100, 8);
        for s in 1..=5 {
            r.push(ev("b", 1, s));
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.coverage("b").map(|c| c.first), Some(4));
    }
}
