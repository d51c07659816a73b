//! The bounded history: per origin, the recent messages in seq order.
//!
//! Bounded by count, bytes and age; the oldest entries go first. Entries are
//! zero-copy slices of the egress batch buffers, so holding history costs no
//! extra copy of the payload.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};

/// One stored message.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Seq within the origin's epoch.
    pub(crate) seq: u64,
    /// Lane of the topic.
    pub(crate) lane: u16,
    /// Topic frame.
    pub(crate) topic: Bytes,
    /// Stamp frame.
    pub(crate) stamp: Bytes,
    /// Payload frame.
    pub(crate) payload: Bytes,
    /// When it was stored.
    pub(crate) at: Instant,
}

impl Entry {
    fn size(&self) -> usize {
        self.topic.len() + self.stamp.len() + self.payload.len() + 64
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

/// Limits on one replay reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyLimits {
    /// Most messages.
    pub(crate) messages: usize,
    /// Most bytes.
    pub(crate) bytes: usize,
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
        self.entries.front().map_or(self.newest + 1, |e| e.seq)
    }
}

/// Messages of every origin this broadcaster has seen.
#[derive(Debug)]
pub(crate) struct History {
    limits: Limits,
    logs: HashMap<String, OriginLog>,
}

/// A replay answer: header plus `(topic, stamp, payload)` triples.
type Answer = (ReplyHeader, Vec<[Bytes; 3]>);

impl History {
    /// An empty history.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            logs: HashMap::new(),
        }
    }

    /// Starts (or restarts) an origin's log at `epoch`, dropping older epochs.
    pub(crate) fn start_epoch(&mut self, origin: &str, epoch: u64) {
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
        for log in self.logs.values_mut() {
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
        evicted
    }

    /// `(messages, bytes, oldest seq)` of one origin.
    pub(crate) fn usage(&self, origin: &str) -> (usize, usize, u64) {
        self.logs
            .get(origin)
            .map_or((0, 0, 0), |l| (l.entries.len(), l.bytes, l.oldest()))
    }

    /// Answers a replay request; `own` is this broadcaster's id (used when
    /// the request names no origin).
    pub(crate) fn query(&self, req: &ReplayRequest, own: &str, limits: ReplyLimits) -> Answer {
        let origin = if req.origin.is_empty() {
            own
        } else {
            &req.origin
        };
        let Some(log) = self.logs.get(origin) else {
            return (header(Status::UnknownOrigin, 0, 0, 0, req.from), Vec::new());
        };
        let (oldest, newest) = (log.oldest(), log.newest);
        if req.epoch != 0 && req.epoch != log.epoch {
            return (
                header(Status::UnknownEpoch, log.epoch, oldest, newest, req.from),
                Vec::new(),
            );
        }
        let start = req.from.max(oldest);
        let end = req.to.min(newest);
        let mut out = Vec::new();
        let mut next = if start > end {
            start
        } else {
            end.saturating_add(1)
        };
        if start <= end {
            let first = log.entries.partition_point(|e| e.seq < start);
            let mut bytes = 0usize;
            for e in log.entries.range(first..) {
                if e.seq > end {
                    break;
                }
                if out.len() >= limits.messages || bytes >= limits.bytes {
                    next = e.seq;
                    break;
                }
                if let Ok(topic) = std::str::from_utf8(&e.topic) {
                    if req.wants(topic, e.lane) {
                        bytes += e.topic.len() + e.stamp.len() + e.payload.len();
                        out.push([e.topic.clone(), e.stamp.clone(), e.payload.clone()]);
                    }
                }
            }
        }
        (header(Status::Ok, log.epoch, oldest, newest, next), out)
    }
}

fn header(status: Status, epoch: u64, oldest: u64, newest: u64, next: u64) -> ReplyHeader {
    ReplyHeader {
        status,
        epoch,
        oldest,
        newest,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, topic: &'static str, at: Instant) -> Entry {
        Entry {
            seq,
            lane: fanfare_protocol::stamp::lane_of(topic.as_bytes()),
            topic: Bytes::from_static(topic.as_bytes()),
            stamp: Bytes::from_static(b"s"),
            payload: Bytes::from_static(b"p"),
            at,
        }
    }

    fn req(from: u64, to: u64, patterns: &[&str]) -> ReplayRequest {
        ReplayRequest {
            req_id: Bytes::new(),
            origin: String::new(),
            epoch: 0,
            from,
            to,
            lane: None,
            patterns: patterns.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    const BIG: ReplyLimits = ReplyLimits {
        messages: 1000,
        bytes: 1 << 20,
    };

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
        let (hd, msgs) = h.query(&req(1, u64::MAX, &[]), "b", BIG);
        assert_eq!(
            (hd.status, hd.epoch, hd.oldest, hd.newest, hd.next),
            (Status::Ok, 7, 4, 8, 9)
        );
        assert_eq!(msgs.len(), 5);
        let (_, msgs) = h.query(&req(5, 7, &["chat.#"]), "b", BIG);
        assert_eq!(msgs.len(), 1);
        let (hd, msgs) = h.query(
            &req(4, 8, &[]),
            "b",
            ReplyLimits {
                messages: 2,
                bytes: 1 << 20,
            },
        );
        assert_eq!((msgs.len(), hd.next), (2, 6));
        let mut r = req(1, 2, &[]);
        r.epoch = 3;
        assert_eq!(h.query(&r, "b", BIG).0.status, Status::UnknownEpoch);
        r.origin = "zz".into();
        assert_eq!(h.query(&r, "b", BIG).0.status, Status::UnknownOrigin);
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
