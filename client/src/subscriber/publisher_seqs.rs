//! Dropping re-sent copies on the delivery path: per publisher session, a
//! window of the publisher seqs already delivered.
//!
//! A message re-sent after a failover is stamped again by another
//! broadcaster (a new stamp), so the gap tracker cannot tell it from a new
//! message; its `(session, publisher seq)` can. Per session the table keeps
//! the highest seq delivered and a bitmap of the [`WINDOW`] seqs below it: a
//! seq marked there is a duplicate. A window rather than a high-water mark,
//! because one publisher's messages on different lanes are released in
//! their own orders (a lane being repaired delivers older seqs after newer
//! ones of another lane); a seq more than [`WINDOW`] below the highest is
//! let through (a re-send that late cannot be told from a late original).
//!
//! Bounds: at most [`MAX_SESSIONS`] sessions (512 bytes of bitmap each, so
//! at most 32 MiB in all); at the cap the least recently seen one goes
//! (second chance, at most 16 looks per insert). Messages without a
//! publisher seq pass untouched. A catch-up task (`subscribe_from`) keeps a
//! smaller table of its own ([`CATCH_UP_SESSIONS`]) for what it fetches
//! from history: a range that holds an original and, under another origin,
//! its re-sent copy yields one of them.

use std::collections::{HashMap, VecDeque};

use fanfare_protocol::meta::PublisherSeq;

/// Seqs remembered below the highest, per session.
pub(crate) const WINDOW: u64 = 4096;
/// Most sessions remembered.
pub(crate) const MAX_SESSIONS: usize = 65_536;
/// Most sessions one catch-up task remembers (≤ 512 KiB).
pub(crate) const CATCH_UP_SESSIONS: usize = 1024;
const WORDS: usize = (WINDOW / 64) as usize;
const EVICT_SCAN: usize = 16;

#[derive(Debug)]
struct Seen {
    highest: u64,
    bits: Box<[u64; WORDS]>,
    referenced: bool,
}

impl Seen {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn mark(&mut self, seq: u64) {
        let (w, b) = Self::bit(seq);
        self.bits[w] |= b;
    }

    fn is_marked(&self, seq: u64) -> bool {
        let (w, b) = Self::bit(seq);
        self.bits[w] & b != 0
    }

    /// True when `seq` was not delivered before (and marks it).
    fn take(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            if seq - self.highest >= WINDOW {
                self.bits.fill(0);
            } else {
                for s in self.highest + 1..seq {
                    let (w, b) = Self::bit(s);
                    self.bits[w] &= !b;
                }
            }
            self.highest = seq;
            self.mark(seq);
            return true;
        }
        if self.highest - seq >= WINDOW {
            return true; // older than the window: let through
        }
        if self.is_marked(seq) {
            return false;
        }
        self.mark(seq);
        true
    }
}

/// The per-session windows.
#[derive(Debug)]
pub(crate) struct PublisherSeqs {
    sessions: HashMap<u64, Seen>,
    hand: VecDeque<u64>,
    cap: usize,
    /// Duplicates dropped so far.
    pub(crate) dropped: u64,
}

impl Default for PublisherSeqs {
    fn default() -> Self {
        Self::new(MAX_SESSIONS)
    }
}

impl PublisherSeqs {
    /// A table of at most `cap` sessions.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            hand: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// True when the message should be delivered: it has no publisher seq,
    /// or its seq was not delivered before. False for a re-sent copy.
    pub(crate) fn fresh(&mut self, p: Option<PublisherSeq>) -> bool {
        let Some(p) = p else { return true };
        if let Some(seen) = self.sessions.get_mut(&p.session) {
            seen.referenced = true;
            let fresh = seen.take(p.seq);
            if !fresh {
                self.dropped += 1;
            }
            return fresh;
        }
        if self.sessions.len() >= self.cap {
            self.evict_one();
        }
        let mut seen = Seen {
            highest: p.seq,
            bits: Box::new([0; WORDS]),
            referenced: false,
        };
        seen.mark(p.seq);
        self.sessions.insert(p.session, seen);
        self.hand.push_back(p.session);
        true
    }

    fn evict_one(&mut self) {
        for look in 0..EVICT_SCAN {
            let Some(key) = self.hand.pop_front() else {
                return;
            };
            match self.sessions.get_mut(&key) {
                Some(s) if s.referenced && look + 1 < EVICT_SCAN => {
                    s.referenced = false;
                    self.hand.push_back(key);
                }
                Some(_) => {
                    self.sessions.remove(&key);
                    return;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(session: u64, seq: u64) -> Option<PublisherSeq> {
        Some(PublisherSeq { session, seq })
    }

    #[test]
    fn copies_are_dropped_originals_in_any_order_pass() {
        let mut t = PublisherSeqs::default();
        assert!(t.fresh(None) && t.fresh(None));
        assert!(t.fresh(p(1, 5)));
        assert!(!t.fresh(p(1, 5)));
        // Older seqs not seen yet (another lane, repaired late) pass once.
        assert!(t.fresh(p(1, 3)));
        assert!(!t.fresh(p(1, 3)));
        assert!(t.fresh(p(1, 4)));
        assert!(t.fresh(p(1, 6)));
        assert!(t.fresh(p(2, 6)), "sessions are independent");
        assert!(!t.fresh(p(1, 6)));
        // A jump clears the bits it passes over.
        assert!(t.fresh(p(1, 6 + WINDOW + 1)));
        assert!(t.fresh(p(1, 6 + WINDOW)));
        assert!(!t.fresh(p(1, 6 + WINDOW)));
        assert!(t.fresh(p(1, 6)), "older than the window: let through");
        assert_eq!(t.dropped, 4);
    }

    #[test]
    fn bits_wrap_without_stale_marks() {
        let mut t = PublisherSeqs::default();
        for s in 1..=3 * WINDOW {
            assert!(t.fresh(p(9, s)), "seq {s}");
        }
        for s in 2 * WINDOW + 1..=3 * WINDOW {
            assert!(!t.fresh(p(9, s)), "seq {s}");
        }
    }

    #[test]
    fn sessions_are_bounded() {
        let mut t = PublisherSeqs::default();
        for s in 1..=(MAX_SESSIONS as u64 + 10) {
            t.fresh(p(s, 1));
        }
        assert_eq!(t.sessions.len(), MAX_SESSIONS);
        assert!(t.hand.len() <= MAX_SESSIONS);
    }
}
