//! One replay round: look the range up in history, then filter it, with
//! bounded work. Runs on a blocking thread (see `replay::answer`), never on
//! an async worker; history's read lock is held only while [`History::stretch`]
//! copies out at most [`ScanBudget::entries_for`] entries, and the patterns
//! are matched after it is released.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};

use crate::history::{Entry, History, Lookup, Stretch};
use crate::zmtp::MAX_FRAME_HEADER;

/// Limits on one replay reply's content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyLimits {
    /// Most messages.
    pub(crate) messages: usize,
    /// Most bytes (topic + stamp + payload); the message that crosses it is
    /// the last one in.
    pub(crate) bytes: usize,
}

/// The work one reply may cost. Whichever bound is hit first cuts the reply;
/// its `next` then says where to continue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanBudget {
    /// Most history entries examined.
    pub(crate) entries: usize,
    /// Most (entry × pattern) tests: a request with `p` patterns examines at
    /// most `matches / p` entries.
    pub(crate) matches: usize,
    /// Most time spent filtering (the clock is read once per entry when the
    /// request has patterns, every 256 entries otherwise). At least one
    /// entry is always examined, so every round makes progress.
    pub(crate) time: Duration,
}

impl ScanBudget {
    /// Entries a request with `patterns` patterns may examine (at least 1).
    pub(crate) fn entries_for(&self, patterns: usize) -> usize {
        let by_matches = self.matches / patterns.max(1);
        self.entries.min(by_matches).max(1)
    }
}

/// A computed reply (before it is written).
#[derive(Debug)]
pub(crate) struct Scanned {
    /// Status and position.
    pub(crate) header: ReplyHeader,
    /// `(topic, stamp, payload)` of each message, in seq order.
    pub(crate) messages: Vec<[Bytes; 3]>,
    /// Encoded size of the messages' frames (bodies and headers).
    pub(crate) bytes: usize,
    /// History entries examined.
    pub(crate) examined: usize,
    /// True when the scan budget, not the reply limits, cut the reply.
    pub(crate) budget_cut: bool,
    /// True when the asked range held nothing to scan (`to < from`, `from`
    /// past the newest, or everything evicted).
    pub(crate) empty_range: bool,
}

impl Scanned {
    /// A reply with no messages.
    pub(crate) fn status_only(header: ReplyHeader) -> Self {
        Self {
            header,
            messages: Vec::new(),
            bytes: 0,
            examined: 0,
            budget_cut: false,
            empty_range: false,
        }
    }
}

/// A header with only a status and `next` (no origin state).
pub(crate) fn status_header(status: Status, next: u64) -> ReplyHeader {
    ReplyHeader {
        status,
        epoch: 0,
        oldest: 0,
        newest: 0,
        next,
    }
}

/// Answers `req` for `origin` from `history`.
pub(crate) fn run(
    history: &RwLock<History>,
    origin: &str,
    req: &ReplayRequest,
    limits: ReplyLimits,
    budget: ScanBudget,
) -> Scanned {
    let max = budget.entries_for(req.patterns.len());
    let lookup = match history.read() {
        Ok(h) => h.stretch(origin, req.epoch, req.from, req.to, max),
        Err(_) => return Scanned::status_only(status_header(Status::Busy, req.from)),
    };
    match lookup {
        Lookup::UnknownOrigin => {
            Scanned::status_only(status_header(Status::UnknownOrigin, req.from))
        }
        Lookup::UnknownEpoch(x) => Scanned::status_only(ReplyHeader {
            status: Status::UnknownEpoch,
            epoch: x.epoch,
            oldest: x.oldest,
            newest: x.newest,
            next: req.from,
        }),
        Lookup::Found(s) => filter(&s, req, limits, budget.time),
    }
}

/// Filters a stretch (no lock held).
fn filter(s: &Stretch, req: &ReplayRequest, limits: ReplyLimits, time: Duration) -> Scanned {
    let started = Instant::now();
    let clock_every = if req.patterns.is_empty() { 256 } else { 1 };
    let mut messages = Vec::new();
    let (mut body_bytes, mut bytes) = (0usize, 0usize);
    // Where the scan stopped early, and whether the budget stopped it.
    let mut cut: Option<(u64, bool)> = None;
    let mut examined = 0;
    for (i, e) in s.entries.iter().enumerate() {
        if messages.len() >= limits.messages || body_bytes >= limits.bytes {
            cut = Some((e.seq, false));
            break;
        }
        if i > 0 && i % clock_every == 0 && started.elapsed() >= time {
            cut = Some((e.seq, true));
            break;
        }
        examined += 1;
        if wants(req, e) {
            let body = e.body_len();
            body_bytes = body_bytes.saturating_add(body);
            bytes = bytes.saturating_add(body + 3 * MAX_FRAME_HEADER);
            messages.push(e.parts());
        }
    }
    let x = s.extent;
    let empty_range = s.start > s.end;
    let (next, budget_cut) = match (cut, s.rest) {
        (Some((seq, by_budget)), _) => (seq, by_budget),
        (None, Some(seq)) => (seq, true),
        // Nothing to scan: `next` is the first seq not held yet at most
        // (`from` past the newest means up to date).
        (None, None) if empty_range => (s.start.min(x.newest.saturating_add(1)), false),
        (None, None) => (s.end.saturating_add(1), false),
    };
    Scanned {
        header: ReplyHeader {
            status: Status::Ok,
            epoch: x.epoch,
            oldest: x.oldest,
            newest: x.newest,
            next,
        },
        messages,
        bytes,
        examined,
        budget_cut,
        empty_range,
    }
}

/// Does the entry pass the request's lane and pattern filters?
fn wants(req: &ReplayRequest, e: &Entry) -> bool {
    if req.lane.is_some_and(|l| l != e.lane) {
        return false;
    }
    req.patterns.is_empty()
        || std::str::from_utf8(e.topic()).is_ok_and(|t| req.patterns.iter().any(|p| p.matches(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Limits;

    fn history(topics: impl Fn(u64) -> String, n: u64, count: usize) -> RwLock<History> {
        let now = Instant::now();
        let mut h = History::new(Limits {
            count,
            bytes: 1 << 30,
            age: Duration::from_secs(60),
        });
        h.start_epoch("b", 7);
        for seq in 1..=n {
            let topic = topics(seq);
            let lane = fanfare_protocol::stamp::lane_of(topic.as_bytes());
            let entry = Entry::of_bodies(seq, lane, topic.as_bytes(), b"s", b"p", now);
            h.push("b", entry);
        }
        h.evict(now);
        RwLock::new(h)
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
    const ANY: ScanBudget = ScanBudget {
        entries: 1 << 20,
        matches: 1 << 20,
        time: Duration::from_secs(60),
    };

    fn pos(s: &Scanned) -> (Status, u64, u64, u64, u64) {
        let h = s.header;
        (h.status, h.epoch, h.oldest, h.newest, h.next)
    }

    #[test]
    fn ranges_filters_and_limits() {
        let chat_or_news = |s: u64| {
            if s.is_multiple_of(2) {
                "chat.a"
            } else {
                "news.b"
            }
            .to_owned()
        };
        let h = history(chat_or_news, 8, 5);
        let all = run(&h, "b", &req(1, u64::MAX, &[]), BIG, ANY);
        assert_eq!(pos(&all), (Status::Ok, 7, 4, 8, 9));
        assert_eq!((all.messages.len(), all.bytes), (5, 5 * (8 + 27)));
        let chat = run(&h, "b", &req(5, 7, &["chat.#"]), BIG, ANY);
        assert_eq!((chat.messages.len(), chat.header.next), (1, 8));
        let two = ReplyLimits {
            messages: 2,
            bytes: 1 << 20,
        };
        let cut = run(&h, "b", &req(4, 8, &[]), two, ANY);
        assert_eq!(
            (cut.messages.len(), cut.header.next, cut.budget_cut),
            (2, 6, false)
        );
        let mut r = req(1, 2, &[]);
        r.epoch = 3;
        let other = run(&h, "b", &r, BIG, ANY);
        assert_eq!(pos(&other), (Status::UnknownEpoch, 7, 4, 8, 1));
        assert_eq!(
            run(&h, "zz", &r, BIG, ANY).header.status,
            Status::UnknownOrigin
        );
    }

    #[test]
    fn the_scan_budget_cuts_and_next_continues() {
        let h = history(|s| format!("t.{s}"), 100, 1000);
        let budget = ScanBudget {
            entries: 30,
            matches: 40,
            ..ANY
        };
        assert_eq!(budget.entries_for(0), 30);
        assert_eq!(budget.entries_for(2), 20);
        assert_eq!(budget.entries_for(64), 1);
        // No message matches: each round still advances by its budget.
        let (mut from, mut rounds) = (1, 0);
        while from <= 100 {
            let s = run(&h, "b", &req(from, u64::MAX, &["x.#", "y.#"]), BIG, budget);
            assert!(s.messages.is_empty() && s.header.next > from);
            assert!(s.budget_cut || s.header.next == 101);
            from = s.header.next;
            rounds += 1;
        }
        assert_eq!(rounds, 5);
        // Every message matches: the rounds together give each seq once.
        let mut seen = Vec::new();
        let mut from = 1;
        while from <= 100 {
            let s = run(&h, "b", &req(from, 100, &["t.*"]), BIG, budget);
            seen.extend(s.messages.iter().map(|m| m[0].clone()));
            from = s.header.next;
        }
        let want: Vec<Bytes> = (1..=100).map(|s| Bytes::from(format!("t.{s}"))).collect();
        assert_eq!(seen, want);
        // A zero time budget still examines one entry per round.
        let stingy = ScanBudget {
            time: Duration::ZERO,
            ..ANY
        };
        let s = run(&h, "b", &req(1, 100, &["t.*"]), BIG, stingy);
        assert_eq!(
            (s.messages.len(), s.header.next, s.budget_cut),
            (1, 2, true)
        );
    }

    #[test]
    fn numbers_from_outside_never_wrap() {
        let h = history(|s| format!("t.{s}"), 10, 1000);
        let cases = [
            // (from, to) -> next
            ((u64::MAX, u64::MAX), 11),
            ((u64::MAX, 3), 11),
            ((11, u64::MAX), 11),
            ((5, 3), 5),
            ((0, 0), 1),
            ((0, u64::MAX), 11),
            ((10, 10), 11),
        ];
        for ((from, to), next) in cases {
            let s = run(&h, "b", &req(from, to, &[]), BIG, ANY);
            assert_eq!(pos(&s), (Status::Ok, 7, 1, 10, next), "from {from} to {to}");
            let want = (from.max(1)..=to.min(10)).count();
            assert_eq!(s.messages.len(), want, "from {from} to {to}");
            assert_eq!(s.empty_range, want == 0);
        }
        let mut r = req(u64::MAX, 0, &[]);
        r.epoch = u64::MAX;
        assert_eq!(run(&h, "b", &r, BIG, ANY).header.next, u64::MAX);
    }
}
