//! Puts the feed back in origin seq order.
//!
//! The client keeps order per lane; while it repairs one lane, later
//! messages of other lanes are delivered first. Browser positions are per
//! origin (`origin:epoch:seq`), so the hub must deliver each origin's seqs in
//! order: a message that arrives early is parked until the seqs before it
//! arrive or are reported lost (a client gap covering them, or nothing for
//! `wait`). Parked messages are bounded by count; past it the hole is
//! declared lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use foldhash::HashMap;
use tokio::time::Instant;

use super::fabric::FabricMessage;
use super::protocol::{GapCause, GapNotice};

/// What comes out, in order.
#[derive(Debug)]
pub enum Ordered {
    /// The next message of its origin.
    Message(FabricMessage),
    /// Seqs declared lost.
    Lost(GapNotice),
}

#[derive(Debug)]
struct Origin {
    epoch: u64,
    next: u64,
    parked: BTreeMap<u64, FabricMessage>,
    /// Seqs ahead of `next` that will not come: re-sent copies (bounded
    /// like `parked`).
    resent: BTreeSet<u64>,
    blocked_since: Option<Instant>,
}

/// The reorder buffer of one hub.
#[derive(Debug)]
pub struct Reorder {
    origins: HashMap<Arc<str>, Origin>,
    max_parked: usize,
    wait: Duration,
    /// Until then, messages of every origin but this one go out as they
    /// come (see [`Reorder::release_all_but`]).
    pass_through: Option<(Arc<str>, Instant)>,
}

impl Reorder {
    /// Parks at most `max_parked` messages per origin, waits at most `wait` for a hole.
    pub fn new(max_parked: usize, wait: Duration) -> Self {
        Self {
            origins: HashMap::default(),
            max_parked: max_parked.max(1),
            wait,
            pass_through: None,
        }
    }

    /// Takes one message; appends what can now be delivered to `out`.
    pub fn push(&mut self, m: FabricMessage, out: &mut Vec<Ordered>) {
        if let Some((keep, until)) = &self.pass_through {
            if Instant::now() >= *until {
                self.pass_through = None;
            } else if *m.origin != **keep {
                out.push(Ordered::Message(m));
                return;
            }
        }
        let o = match self.origins.get_mut(&m.origin) {
            Some(o) if o.epoch == m.epoch => o,
            Some(o) if o.epoch > m.epoch => return,
            _ => {
                // First sight of the origin, or it restarted: what was parked
                // of the old epoch goes out as it is.
                if let Some(old) = self.origins.remove(&m.origin) {
                    out.extend(old.parked.into_values().map(Ordered::Message));
                }
                let origin = m.origin.clone();
                self.origins.insert(
                    origin.clone(),
                    Origin {
                        epoch: m.epoch,
                        next: m.seq,
                        parked: BTreeMap::new(),
                        resent: BTreeSet::new(),
                        blocked_since: None,
                    },
                );
                match self.origins.get_mut(&origin) {
                    Some(o) => o,
                    None => return,
                }
            }
        };
        if m.seq < o.next {
            return; // late or duplicate
        }
        if m.seq > o.next {
            o.parked.insert(m.seq, m);
            o.blocked_since.get_or_insert_with(Instant::now);
            if o.parked.len() > self.max_parked {
                skip_to_parked(o, out, GapCause::TooFarBehind);
            }
            return;
        }
        out.push(Ordered::Message(m));
        o.next = o.next.saturating_add(1);
        drain(o, out);
    }

    /// A client gap: seqs `[first, last]` (of one lane) are lost. Holes in
    /// that range stop blocking.
    pub fn gap(
        &mut self,
        origin: &Arc<str>,
        epoch: u64,
        first: u64,
        last: u64,
        reason: GapCause,
        out: &mut Vec<Ordered>,
    ) {
        out.push(Ordered::Lost(GapNotice {
            reason,
            origin: origin.to_string(),
            epoch,
            first,
            last,
        }));
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        if o.epoch != epoch || last == 0 {
            return;
        }
        if o.next < first || o.next > last {
            return drain(o, out);
        }
        // What is parked up to `last` goes out in order and `next` steps past
        // it at once: the range comes from outside (stamps), so no walk
        // along it.
        let up_to = match last.checked_add(1) {
            Some(after) => {
                let rest = o.parked.split_off(&after);
                std::mem::replace(&mut o.parked, rest)
            }
            None => std::mem::take(&mut o.parked),
        };
        out.extend(up_to.into_values().map(Ordered::Message));
        o.next = last.saturating_add(1);
        drain(o, out);
    }

    /// Seq `seq` is a re-sent copy the client dropped: not a hole, nothing
    /// waits for it.
    pub fn resent(&mut self, origin: &Arc<str>, epoch: u64, seq: u64, out: &mut Vec<Ordered>) {
        let Some(o) = self.origins.get_mut(origin) else {
            return; // nothing of that origin yet: its first message sets `next`
        };
        if o.epoch != epoch || seq < o.next {
            return;
        }
        if seq == o.next {
            o.next = o.next.saturating_add(1);
            drain(o, out);
        } else if o.resent.len() < self.max_parked {
            o.resent.insert(seq);
        }
    }

    /// The feed is complete for `origin`/`epoch` through `through`: the
    /// holes up to it were filtered, not lost. What is parked up to it goes
    /// out in order, and the next message may be any seq after it.
    pub fn watermark(
        &mut self,
        origin: &Arc<str>,
        epoch: u64,
        through: u64,
        out: &mut Vec<Ordered>,
    ) {
        let Some(o) = self.origins.get_mut(origin) else {
            return; // nothing of that origin yet: its first message sets `next`
        };
        if o.epoch != epoch || through < o.next {
            return;
        }
        let after = through.saturating_add(1);
        let rest = o.parked.split_off(&after);
        let up_to = std::mem::replace(&mut o.parked, rest);
        out.extend(up_to.into_values().map(Ordered::Message));
        o.resent = o.resent.split_off(&after);
        o.next = after;
        drain(o, out);
    }

    /// Every origin but `keep`: what is parked goes out in seq order, the
    /// origin is forgotten, and for `grace` its messages go out as they
    /// come (then its next message starts it afresh). For a feed that was
    /// filtered without watermarks for those origins: their holes are not
    /// known to be losses, and until the broadcasters' interest catches up
    /// (federation) more such holes come. The fabric still reports real
    /// losses as gaps.
    pub fn release_all_but(
        &mut self,
        keep: &Arc<str>,
        grace: Duration,
        out: &mut Vec<Ordered>,
    ) -> Vec<Arc<str>> {
        self.pass_through = Some((keep.clone(), Instant::now() + grace));
        let others: Vec<Arc<str>> = self
            .origins
            .keys()
            .filter(|o| ***o != **keep)
            .cloned()
            .collect();
        for o in &others {
            if let Some(old) = self.origins.remove(o) {
                out.extend(old.parked.into_values().map(Ordered::Message));
            }
        }
        others
    }

    /// Does a hole hold messages back (so [`Self::tick`] has work)?
    pub fn waiting(&self) -> bool {
        self.origins.values().any(|o| o.blocked_since.is_some())
    }

    /// Declares lost every hole waited on for longer than `wait`.
    pub fn tick(&mut self, out: &mut Vec<Ordered>) {
        let now = Instant::now();
        for o in self.origins.values_mut() {
            if o.blocked_since
                .is_some_and(|t| now.duration_since(t) >= self.wait)
            {
                skip_to_parked(o, out, GapCause::Unrecoverable);
            }
        }
    }
}

fn drain(o: &mut Origin, out: &mut Vec<Ordered>) {
    loop {
        if let Some(m) = o.parked.remove(&o.next) {
            out.push(Ordered::Message(m));
        } else if !o.resent.remove(&o.next) {
            break;
        }
        o.next = o.next.saturating_add(1);
    }
    if o.resent.first().is_some_and(|&s| s < o.next) {
        o.resent = o.resent.split_off(&o.next);
    }
    o.blocked_since = if o.parked.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
}

fn skip_to_parked(o: &mut Origin, out: &mut Vec<Ordered>, reason: GapCause) {
    let Some((&first_parked, m)) = o.parked.iter().next() else {
        return;
    };
    out.push(Ordered::Lost(GapNotice {
        reason,
        origin: m.origin.to_string(),
        epoch: o.epoch,
        first: o.next,
        last: first_parked - 1,
    }));
    o.next = first_parked;
    drain(o, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64) -> FabricMessage {
        FabricMessage {
            topic: "t".into(),
            payload: Default::default(),
            origin: "b".into(),
            epoch: 1,
            seq,
            timestamp_us: 0,
            publisher: None,
        }
    }

    fn seqs(out: &[Ordered]) -> Vec<i64> {
        out.iter()
            .map(|o| match o {
                Ordered::Message(m) => m.seq as i64,
                Ordered::Lost(g) => -(g.first as i64),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn parks_until_the_hole_fills_or_is_lost() {
        let mut r = Reorder::new(100, Duration::from_secs(8));
        let mut out = Vec::new();
        for s in [5, 7, 8, 6, 6, 10] {
            r.push(m(s), &mut out);
        }
        assert_eq!(seqs(&out), vec![5, 6, 7, 8]);
        assert!(r.waiting(), "10 waits for 9");
        out.clear();
        r.gap(&"b".into(), 1, 9, 9, GapCause::Unrecoverable, &mut out);
        assert_eq!(seqs(&out), vec![-9, 10]);
        assert!(!r.waiting());
        out.clear();
        r.push(m(13), &mut out);
        tokio::time::advance(Duration::from_secs(9)).await;
        r.tick(&mut out);
        assert_eq!(seqs(&out), vec![-11, 13]);
    }

    /// A gap's range comes from stamps: one as wide as the seq space is
    /// stepped over at once (it was walked seq by seq: the feed task spun
    /// for ever), and the seqs at the very top do not overflow.
    #[tokio::test(start_paused = true)]
    async fn a_gap_as_wide_as_the_seq_space_is_stepped_over_at_once() {
        let mut r = Reorder::new(100, Duration::from_secs(8));
        let mut out = Vec::new();
        let b: Arc<str> = "b".into();
        for s in [1, 3, u64::MAX - 1] {
            r.push(m(s), &mut out);
        }
        assert_eq!(seqs(&out), vec![1]);
        out.clear();
        r.gap(&b, 1, 2, u64::MAX - 2, GapCause::Unrecoverable, &mut out);
        let got: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Ordered::Message(m) => Some(m.seq),
                Ordered::Lost(_) => None,
            })
            .collect();
        assert_eq!(got, vec![3, u64::MAX - 1]);
        assert!(!r.waiting());
        out.clear();
        r.push(m(u64::MAX), &mut out);
        r.gap(&b, 1, 1, u64::MAX, GapCause::Unrecoverable, &mut out);
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, Ordered::Message(_)))
                .count(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watermark_steps_over_filtered_holes_without_a_loss() {
        let mut r = Reorder::new(100, Duration::from_secs(8));
        let mut out = Vec::new();
        let b: Arc<str> = "b".into();
        r.watermark(&b, 1, 50, &mut out); // unknown origin: nothing to do
        for s in [1, 4, 9, 12] {
            r.push(m(s), &mut out);
        }
        assert_eq!(seqs(&out), vec![1], "2, 3 not yet known filtered");
        r.resent(&b, 1, 7, &mut out);
        out.clear();
        r.watermark(&b, 2, 20, &mut out); // another epoch: ignored
        assert!(out.is_empty());
        r.watermark(&b, 1, 9, &mut out);
        assert_eq!(seqs(&out), vec![4, 9], "in order, no loss told");
        assert!(r.waiting(), "12 still waits for 10 and 11");
        out.clear();
        r.watermark(&b, 1, 5, &mut out); // behind: nothing
        r.push(m(10), &mut out);
        r.push(m(3), &mut out); // stepped over: late
        assert_eq!(seqs(&out), vec![10]);
        out.clear();
        r.watermark(&b, 1, 11, &mut out);
        assert_eq!(seqs(&out), vec![12], "11 filtered, 12 next");
        assert!(!r.waiting());
        out.clear();
        r.watermark(&b, 1, 30, &mut out);
        r.push(m(31), &mut out);
        tokio::time::advance(Duration::from_secs(9)).await;
        r.tick(&mut out);
        assert_eq!(seqs(&out), vec![31], "nothing declared lost");
    }

    #[tokio::test(start_paused = true)]
    async fn released_origins_go_out_as_they_come_for_the_grace() {
        let mut r = Reorder::new(100, Duration::from_secs(8));
        let mut out = Vec::new();
        let other = |seq| FabricMessage {
            origin: "far".into(),
            ..m(seq)
        };
        for s in [1, 3, 5] {
            r.push(other(s), &mut out);
            r.push(m(s), &mut out);
        }
        assert_eq!(seqs(&out), vec![1, 1], "both wait for 2");
        out.clear();
        let released = r.release_all_but(&"b".into(), Duration::from_secs(10), &mut out);
        assert_eq!(released, vec![Arc::<str>::from("far")]);
        assert_eq!(seqs(&out), vec![3, 5], "far's parked, in order");
        out.clear();
        r.push(other(9), &mut out);
        r.push(other(7), &mut out);
        r.push(m(7), &mut out);
        assert_eq!(
            seqs(&out),
            vec![9, 7],
            "far as it comes; b still waits for 2"
        );
        out.clear();
        tokio::time::advance(Duration::from_secs(11)).await;
        r.push(other(20), &mut out);
        r.push(other(22), &mut out);
        assert_eq!(seqs(&out), vec![20], "after the grace far is ordered again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_resent_copy_is_no_hole() {
        let mut r = Reorder::new(100, Duration::from_secs(8));
        let mut out = Vec::new();
        let b: Arc<str> = "b".into();
        r.push(m(1), &mut out);
        r.resent(&b, 1, 2, &mut out); // the very next seq
        r.push(m(3), &mut out);
        assert_eq!(seqs(&out), vec![1, 3]);
        out.clear();
        r.push(m(6), &mut out); // 4 and 5 outstanding
        r.resent(&b, 1, 5, &mut out); // ahead of the hole: remembered
        assert!(out.is_empty());
        r.push(m(4), &mut out);
        assert_eq!(seqs(&out), vec![4, 6]);
        out.clear();
        r.resent(&b, 1, 2, &mut out); // behind: ignored
        r.resent(&"other".into(), 1, 9, &mut out); // unknown origin: ignored
        r.push(m(7), &mut out);
        tokio::time::advance(Duration::from_secs(9)).await;
        r.tick(&mut out);
        assert_eq!(seqs(&out), vec![7], "nothing declared lost");
    }
}
