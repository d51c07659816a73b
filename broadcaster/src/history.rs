//! The bounded history: per origin, the recent messages in seq order.
//!
//! Bounded by count, bytes and age; the oldest entries go first. Entries are
//! zero-copy slices of the egress batch buffers (one slice per message, its
//! three frames), so holding history costs no extra copy of the payload.
//!
//! Replay never matches under the lock: [`History::stretch`] copies out (as
//! refcount clones) at most a bounded number of entries of the requested
//! range, and the caller filters them after releasing the lock (see
//! `replay::scan`). The forwarder's write lock therefore waits at most for
//! one such bounded copy.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::subscribers::Encoded;

/// One stored message: its three ZMTP frames as one slice of the egress
/// batch buffer (one refcount per entry), and where the bodies lie in it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Seq within the origin's epoch.
    pub(crate) seq: u64,
    /// Lane of the topic.
    pub(crate) lane: u16,
    /// The topic, stamp and payload frames, headers included.
    frames: Bytes,
    /// The topic frame's body within `frames`.
    topic: Range<usize>,
    /// The stamp frame's body within `frames`.
    stamp: Range<usize>,
    /// Where the payload frame's body starts; it runs to the end.
    payload: usize,
    /// When it was stored.
    pub(crate) at: Instant,
}

impl Entry {
    /// The message of `buf` at `e`, whose stamp and payload bodies are at
    /// `stamp` and `payload` in `buf`. `None` unless every body lies inside
    /// the message and the payload ends it.
    pub(crate) fn new(
        seq: u64,
        lane: u16,
        buf: &Bytes,
        e: &Encoded,
        stamp: Range<usize>,
        payload: Range<usize>,
        at: Instant,
    ) -> Option<Entry> {
        let base = e.frames.start;
        let rebase = |r: &Range<usize>| {
            (r.start >= base && r.start <= r.end && r.end <= e.frames.end)
                .then(|| r.start - base..r.end - base)
        };
        let (topic, stamp, body) = (rebase(&e.topic)?, rebase(&stamp)?, rebase(&payload)?);
        (payload.end == e.frames.end).then_some(())?;
        Some(Entry {
            seq,
            lane,
            frames: buf.slice(e.frames.clone()),
            topic,
            stamp,
            payload: body.start,
            at,
        })
    }

    /// An entry of the three bodies, encoded afresh (tests).
    #[cfg(test)]
    pub(crate) fn of_bodies(
        seq: u64,
        lane: u16,
        topic: &[u8],
        stamp: &[u8],
        payload: &[u8],
        at: Instant,
    ) -> Entry {
        let mut out = bytes::BytesMut::new();
        let (e, s, p) = crate::forwarder::encode_message(
            &mut out,
            topic,
            |o| bytes::BufMut::put_slice(o, stamp),
            stamp.len(),
            payload,
        );
        let buf = out.freeze();
        Entry::new(seq, lane, &buf, &e, s, p, at).expect("a message just encoded")
    }

    /// The topic frame's body.
    pub(crate) fn topic(&self) -> &[u8] {
        &self.frames[self.topic.clone()]
    }

    /// Bytes of the three bodies.
    pub(crate) fn body_len(&self) -> usize {
        self.topic.len() + self.stamp.len() + (self.frames.len() - self.payload)
    }

    /// The three bodies, as slices of the stored buffer.
    pub(crate) fn parts(&self) -> [Bytes; 3] {
        [
            self.frames.slice(self.topic.clone()),
            self.frames.slice(self.stamp.clone()),
            self.frames.slice(self.payload..),
        ]
    }

    fn size(&self) -> usize {
        self.body_len() + 64
    }
}

/// History bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most messages per origin.
    pub(crate) count: usize,
    /// Most bytes per origin.
    pub(crate) bytes: usize,
    /// Oldest age kept.
    pub(crate) age: Duration,
}

#[derive(Debug)]
struct OriginLog {
    epoch: u64,
    newest: u64,
    bytes: usize,
    entries: VecDeque<Entry>,
}

impl OriginLog {
    fn oldest(&self) -> u64 {
        self.entries
            .front()
            .map_or(self.newest.saturating_add(1), |e| e.seq)
    }
}

/// Messages of every origin this broadcaster has seen.
#[derive(Debug)]
pub(crate) struct History {
    limits: Limits,
    logs: HashMap<String, OriginLog>,
    /// The epoch before the current one of each restarted origin, still
    /// replayable (under the same bounds) until it ages out.
    previous: HashMap<String, OriginLog>,
}

/// What [`History::stretch`] found for one origin.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The broadcaster holds nothing from this origin.
    UnknownOrigin,
    /// The origin is held in another epoch.
    UnknownEpoch(Extent),
    /// The origin and epoch are held.
    Found(Stretch),
}

/// An origin's log as held when it was looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// Its epoch.
    pub(crate) epoch: u64,
    /// Oldest seq held (`newest + 1` when empty).
    pub(crate) oldest: u64,
    /// Newest seq held (0 before any).
    pub(crate) newest: u64,
}

/// A bounded stretch of one origin's log, copied out under the read lock.
#[derive(Debug)]
pub(crate) struct Stretch {
    /// The log's extent at the time.
    pub(crate) extent: Extent,
    /// First seq of the asked range that is held: `max(from, oldest)`.
    pub(crate) start: u64,
    /// Last seq of the asked range that is held: `min(to, newest)`
    /// (`start > end`: nothing to scan).
    pub(crate) end: u64,
    /// The held entries of `[start, end]` in seq order, at most the `max`
    /// asked for (clones of `Bytes`: no payload copy).
    pub(crate) entries: Vec<Entry>,
    /// Seq of the first entry of `[start, end]` left out by `max`.
    pub(crate) rest: Option<u64>,
}

impl History {
    /// An empty history.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            logs: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Starts (or restarts) an origin's log at `epoch`. The epoch it
    /// replaces stays replayable as the previous one (older ones are dropped).
    pub(crate) fn start_epoch(&mut self, origin: &str, epoch: u64) {
        let old = self.logs.remove(origin);
        match old {
            Some(log) if log.epoch != epoch && !log.entries.is_empty() => {
                self.previous.insert(origin.to_owned(), log);
            }
            _ => {}
        }
        self.logs.insert(
            origin.to_owned(),
            OriginLog {
                epoch,
                newest: 0,
                bytes: 0,
                entries: VecDeque::new(),
            },
        );
    }

    /// The epoch held for `origin`, if any.
    pub(crate) fn epoch_of(&self, origin: &str) -> Option<u64> {
        self.logs.get(origin).map(|l| l.epoch)
    }

    /// Drops everything held of `origin` (the relay forgot it).
    pub(crate) fn forget(&mut self, origin: &str) {
        self.logs.remove(origin);
        self.previous.remove(origin);
    }

    /// Seqs up to `to` of `origin` in `epoch` were skipped as unrecoverable:
    /// drop what is held up to there, so that a replay answers them as
    /// unrecoverable (`oldest` > `to`) instead of as filtered.
    pub(crate) fn forget_through(&mut self, origin: &str, epoch: u64, to: u64) {
        let Some(log) = self.logs.get_mut(origin).filter(|l| l.epoch == epoch) else {
            return;
        };
        while let Some(front) = log.entries.front().filter(|e| e.seq <= to) {
            log.bytes -= front.size();
            log.entries.pop_front();
        }
        log.newest = log.newest.max(to);
    }

    /// Appends an entry of `origin` (whose epoch must have been started).
    /// Returns false if the origin is unknown.
    pub(crate) fn push(&mut self, origin: &str, entry: Entry) -> bool {
        let Some(log) = self.logs.get_mut(origin) else {
            return false;
        };
        log.newest = log.newest.max(entry.seq);
        log.bytes += entry.size();
        log.entries.push_back(entry);
        true
    }

    /// Applies the bounds; returns how many entries were evicted.
    pub(crate) fn evict(&mut self, now: Instant) -> usize {
        let l = self.limits;
        let mut evicted = 0;
        for log in self.logs.values_mut().chain(self.previous.values_mut()) {
            while let Some(front) = log.entries.front() {
                let too_many = log.entries.len() > l.count || log.bytes > l.bytes;
                if !too_many && now.duration_since(front.at) <= l.age {
                    break;
                }
                log.bytes -= front.size();
                log.entries.pop_front();
                evicted += 1;
            }
        }
        self.previous.retain(|_, log| !log.entries.is_empty());
        evicted
    }

    /// `(messages, bytes, oldest seq)` of one origin.
    pub(crate) fn usage(&self, origin: &str) -> (usize, usize, u64) {
        self.logs
            .get(origin)
            .map_or((0, 0, 0), |l| (l.entries.len(), l.bytes, l.oldest()))
    }

    /// Looks up `[from, to]` of `origin` in `epoch` (0: the current one) and
    /// copies out at most `max` of its entries. Takes O(log n + max); the
    /// caller holds the read lock only for this.
    pub(crate) fn stretch(
        &self,
        origin: &str,
        epoch: u64,
        from: u64,
        to: u64,
        max: usize,
    ) -> Lookup {
        let Some(mut log) = self.logs.get(origin) else {
            return Lookup::UnknownOrigin;
        };
        if epoch != 0 && epoch != log.epoch {
            if let Some(p) = self.previous.get(origin).filter(|p| p.epoch == epoch) {
                log = p;
            }
        }
        let extent = Extent {
            epoch: log.epoch,
            oldest: log.oldest(),
            newest: log.newest,
        };
        if epoch != 0 && epoch != log.epoch {
            return Lookup::UnknownEpoch(extent);
        }
        let start = from.max(extent.oldest);
        let end = to.min(extent.newest);
        let mut stretch = Stretch {
            extent,
            start,
            end,
            entries: Vec::new(),
            rest: None,
        };
        if start <= end {
            let first = log.entries.partition_point(|e| e.seq < start);
            let mut held = log.entries.range(first..).take_while(|e| e.seq <= end);
            stretch.entries.reserve(max.min(log.entries.len() - first));
            stretch.entries.extend(held.by_ref().take(max).cloned());
            stretch.rest = held.next().map(|e| e.seq);
        }
        Lookup::Found(stretch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_one_slice_and_its_parts_are_the_bodies() {
        let e = Entry::of_bodies(3, 9, b"a.b", b"stamp", b"payload", Instant::now());
        let [t, s, p] = e.parts();
        assert_eq!(
            (&t[..], &s[..], &p[..]),
            (&b"a.b"[..], &b"stamp"[..], &b"payload"[..])
        );
        assert_eq!(e.topic(), b"a.b");
        assert_eq!(e.body_len(), 3 + 5 + 7);
        // One `Bytes` and the body offsets (was three `Bytes`: 128 bytes).
        assert!(std::mem::size_of::<Entry>() <= 104);
        // Ranges that do not lie in the message are refused.
        let buf = Bytes::from_static(b"0123456789");
        let enc = Encoded {
            frames: 2..8,
            topic: 2..4,
        };
        assert!(Entry::new(1, 0, &buf, &enc, 4..5, 5..8, Instant::now()).is_some());
        assert!(Entry::new(1, 0, &buf, &enc, 4..5, 5..9, Instant::now()).is_none());
        assert!(Entry::new(1, 0, &buf, &enc, 1..5, 5..8, Instant::now()).is_none());
        assert!(Entry::new(1, 0, &buf, &enc, 4..5, 5..7, Instant::now()).is_none());
    }

    fn entry(seq: u64, topic: &'static str, at: Instant) -> Entry {
        let lane = fanfare_protocol::stamp::lane_of(topic.as_bytes());
        Entry::of_bodies(seq, lane, topic.as_bytes(), b"s", b"p", at)
    }

    fn found(l: Lookup) -> Stretch {
        match l {
            Lookup::Found(s) => s,
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn bounds_and_queries() {
        let now = Instant::now();
        let mut h = History::new(Limits {
            count: 5,
            bytes: 1 << 20,
            age: Duration::from_secs(60),
        });
        h.start_epoch("b", 7);
        for s in 1..=8 {
            h.push(
                "b",
                entry(s, if s % 2 == 0 { "chat.a" } else { "news.b" }, now),
            );
        }
        assert_eq!(h.evict(now), 3);
        assert_eq!(h.usage("b"), (5, 5 * (6 + 1 + 1 + 64), 4));
        let all = found(h.stretch("b", 0, 1, u64::MAX, 100));
        let e = Extent {
            epoch: 7,
            oldest: 4,
            newest: 8,
        };
        assert_eq!((all.extent, all.start, all.end, all.rest), (e, 4, 8, None));
        let seqs = |s: &Stretch| s.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&all), [4, 5, 6, 7, 8]);
        // At most `max` copied; `rest` says where the copy stopped.
        let some = found(h.stretch("b", 7, 5, 7, 2));
        assert_eq!((seqs(&some), some.rest), (vec![5, 6], Some(7)));
        assert!(matches!(
            h.stretch("b", 3, 1, 2, 10),
            Lookup::UnknownEpoch(Extent { epoch: 7, .. })
        ));
        assert!(matches!(
            h.stretch("zz", 0, 1, 2, 10),
            Lookup::UnknownOrigin
        ));
    }

    #[test]
    fn numbers_from_outside_never_wrap() {
        let now = Instant::now();
        let mut h = History::new(Limits {
            count: 10,
            bytes: 1 << 20,
            age: Duration::from_secs(60),
        });
        h.start_epoch("b", 1);
        // Empty log: oldest = newest + 1.
        let empty = found(h.stretch("b", 0, 0, u64::MAX, 10));
        assert_eq!((empty.extent.oldest, empty.extent.newest), (1, 0));
        assert!(empty.entries.is_empty());
        for s in 1..=3 {
            h.push("b", entry(s, "a", now));
        }
        for (from, to) in [(u64::MAX, u64::MAX), (u64::MAX, 0), (3, 1), (0, 0)] {
            let s = found(h.stretch("b", 1, from, to, 10));
            assert!(s.entries.iter().all(|e| (from..=to).contains(&e.seq)));
        }
        let past = found(h.stretch("b", 0, u64::MAX, u64::MAX, 10));
        assert_eq!((past.start, past.end, past.entries.len()), (u64::MAX, 3, 0));
        // A log whose newest seq is the largest there is.
        h.push("b", entry(u64::MAX, "a", now));
        let top = found(h.stretch("b", 0, u64::MAX, u64::MAX, 10));
        assert_eq!(top.entries.len(), 1);
        h.start_epoch("c", 1);
        h.logs.get_mut("c").unwrap().newest = u64::MAX;
        assert_eq!(h.usage("c").2, u64::MAX);
    }

    #[test]
    fn forgetting() {
        let now = Instant::now();
        let mut h = History::new(Limits {
            count: 10,
            bytes: 1 << 20,
            age: Duration::from_secs(60),
        });
        h.start_epoch("b", 1);
        h.push("b", entry(1, "a", now));
        h.push("b", entry(2, "a", now));
        h.forget_through("b", 1, 5);
        let s = found(h.stretch("b", 1, 1, u64::MAX, 10));
        assert_eq!((s.extent.oldest, s.extent.newest), (6, 5));
        h.push("b", entry(6, "a", now));
        assert_eq!(h.usage("b").2, 6);
        assert_eq!(h.epoch_of("b"), Some(1));
        h.forget("b");
        assert_eq!(h.epoch_of("b"), None);
    }

    #[test]
    fn the_previous_epoch_stays_replayable() {
        let now = Instant::now();
        let mut h = History::new(Limits {
            count: 10,
            bytes: 1 << 20,
            age: Duration::from_secs(60),
        });
        h.start_epoch("b", 1);
        h.push("b", entry(1, "a", now));
        h.start_epoch("b", 2);
        h.push("b", entry(1, "a", now));
        h.push("b", entry(2, "a", now));
        let old = found(h.stretch("b", 1, 1, u64::MAX, 10));
        assert_eq!((old.extent.epoch, old.entries.len()), (1, 1));
        let new = found(h.stretch("b", 0, 1, u64::MAX, 10));
        assert_eq!((new.extent.epoch, new.entries.len()), (2, 2));
        assert!(matches!(
            h.stretch("b", 9, 1, 2, 10),
            Lookup::UnknownEpoch(_)
        ));
        // A third epoch drops the first.
        h.start_epoch("b", 3);
        assert!(matches!(
            h.stretch("b", 1, 1, 2, 10),
            Lookup::UnknownEpoch(_)
        ));
        assert!(matches!(h.stretch("b", 2, 1, 2, 10), Lookup::Found(_)));
        // Aged out, the previous epoch goes.
        assert_eq!(h.evict(now + Duration::from_secs(61)), 2);
        assert!(h.previous.is_empty());
    }

    #[test]
    fn age_bound() {
        let t0 = Instant::now();
        let mut h = History::new(Limits {
            count: 100,
            bytes: 1 << 20,
            age: Duration::from_secs(1),
        });
        h.start_epoch("b", 1);
        h.push("b", entry(1, "a", t0));
        h.push("b", entry(2, "a", t0 + Duration::from_secs(2)));
        assert_eq!(h.evict(t0 + Duration::from_millis(2500)), 1);
        assert_eq!(h.usage("b").2, 2);
    }
}
