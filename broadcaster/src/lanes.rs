//! Per-lane stamping state and the lanes' recency order, for heartbeats.
//!
//! Every one of the 65,536 lanes has its lane seq and the global seq of its
//! last message; an intrusive doubly linked list keeps the lanes in order of
//! last use (O(1) per message), so a heartbeat lists the most recently
//! active lanes, most recent first, however many lanes were ever used.

use fanfare_protocol::heartbeat::LaneMark;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Lane {
    seq: u64,
    last: u64,
    prev: u32,
    next: u32,
}

impl Default for Lane {
    fn default() -> Self {
        Self {
            seq: 0,
            last: 0,
            prev: NONE,
            next: NONE,
        }
    }
}

/// All lanes and their recency list.
pub(crate) struct Lanes {
    lanes: Vec<Lane>,
    head: u32,
}

impl Lanes {
    /// No lane used yet.
    pub(crate) fn new() -> Self {
        Self {
            lanes: vec![Lane::default(); 1 << 16],
            head: NONE,
        }
    }

    /// Stamps one message of `lane` with global `seq`; returns its lane seq
    /// and makes the lane the most recent.
    pub(crate) fn stamp(&mut self, lane: u16, seq: u64) -> u64 {
        let id = u32::from(lane);
        if self.head != id {
            let Lane { prev, next, .. } = self.lanes[id as usize];
            if prev != NONE {
                self.lanes[prev as usize].next = next;
            }
            if next != NONE {
                self.lanes[next as usize].prev = prev;
            }
            let l = &mut self.lanes[id as usize];
            l.prev = NONE;
            l.next = self.head;
            if self.head != NONE {
                self.lanes[self.head as usize].prev = id;
            }
            self.head = id;
        }
        let l = &mut self.lanes[id as usize];
        l.seq += 1;
        l.last = seq;
        l.seq
    }

    /// The `n` most recently used lanes, most recent first.
    pub(crate) fn recent(&self, n: usize) -> Vec<LaneMark> {
        let mut out = Vec::with_capacity(n.min(64));
        let mut at = self.head;
        while at != NONE && out.len() < n {
            let l = &self.lanes[at as usize];
            out.push(LaneMark {
                lane: at as u16,
                lane_seq: l.seq,
                seq: l.last,
            });
            at = l.next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_recent_first_and_bounded() {
        let mut l = Lanes::new();
        assert!(l.recent(4).is_empty());
        let mut seq = 0;
        for lane in 0..1000u16 {
            seq += 1;
            assert_eq!(l.stamp(lane, seq), 1);
        }
        seq += 1;
        assert_eq!(l.stamp(5, seq), 2);
        seq += 1;
        l.stamp(999, seq);
        let r = l.recent(3);
        let lanes: Vec<u16> = r.iter().map(|m| m.lane).collect();
        assert_eq!(lanes, vec![999, 5, 998]);
        assert_eq!(
            r[1],
            LaneMark {
                lane: 5,
                lane_seq: 2,
                seq: 1001
            }
        );
        assert_eq!(l.recent(5000).len(), 1000);
    }
}
