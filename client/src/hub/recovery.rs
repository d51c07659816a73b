//! Resuming a browser at a position: from the hub's ring when it holds the
//! range, else from the broadcaster's history, else an explicit gap.
//!
//! Every resume is bounded ([`Budget`]): events it may send, bytes of
//! frames it may build, and ring events it may scan (matching is done here,
//! outside the registry lock, yielding to the runtime every
//! [`SCAN_SLICE`] events so other connections keep their pace). Past any
//! bound the rest of that origin is a `too_far_behind` gap.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use fanfare_protocol::pattern::Pattern;

use super::fabric::{Fabric, FabricMessage, ReplayRange};
use super::metrics::HubMetrics;
use super::protocol::{self, GapCause, GapNotice};
use super::registry::ResumeStart;

/// Ring events matched between two yields to the runtime.
pub const SCAN_SLICE: usize = 64;

/// What one resume may cost.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Events sent (ring and history together).
    pub events: usize,
    /// Bytes of event frames held by the resume (ring and history).
    pub bytes: usize,
    /// Ring events looked at (matched against the patterns).
    pub scanned: usize,
}

/// What a resume produced, in the order it is to be sent.
#[derive(Debug, Default)]
pub struct Recovery {
    /// `gap` and `event` frames.
    pub frames: Vec<Utf8Bytes>,
    /// Last (epoch, seq) sent per origin: held live events up to it are dropped.
    pub delivered: HashMap<Arc<str>, (u64, u64)>,
    /// Every missed event was found.
    pub recovered: bool,
    /// Events in `frames`.
    pub events: u64,
}

struct Ctx<'a> {
    fabric: &'a dyn Fabric,
    patterns: &'a [Pattern],
    topics: &'a [String],
    trusted: &'a [String],
    budget: Budget,
    bytes: usize,
    scanned: usize,
    metrics: &'a HubMetrics,
    out: Recovery,
}

impl Ctx<'_> {
    fn gap(&mut self, origin: &str, epoch: u64, first: u64, last: u64, reason: GapCause) {
        self.out.recovered = false;
        let notice = GapNotice {
            reason,
            origin: origin.to_owned(),
            epoch,
            first,
            last,
        };
        self.out.frames.push(protocol::gap(self.topics, &notice));
        self.metrics.gaps_sent.inc();
    }

    /// Room for one more frame of `len` bytes?
    fn room(&self, len: usize) -> bool {
        (self.out.events as usize) < self.budget.events
            && self.bytes.saturating_add(len) <= self.budget.bytes
    }

    fn fresh(&mut self, origin: &Arc<str>, epoch: u64, seq: u64) -> bool {
        match self.out.delivered.get(origin) {
            Some(&(e, s)) if e == epoch && seq <= s => false,
            Some(&(e, _)) if e > epoch => false,
            _ => {
                self.out.delivered.insert(origin.clone(), (epoch, seq));
                true
            }
        }
    }

    fn push(&mut self, frame: Utf8Bytes) {
        self.bytes = self.bytes.saturating_add(frame.len());
        self.out.frames.push(frame);
        self.out.events += 1;
    }

    /// Fetches `[from, to]` of `origin`/`epoch` from the broadcaster.
    async fn replay(&mut self, origin: &str, epoch: u64, mut from: u64, to: u64) {
        while from <= to {
            if !self.room(0) {
                self.gap(
                    origin,
                    epoch,
                    from,
                    to_or_unknown(to),
                    GapCause::TooFarBehind,
                );
                return;
            }
            let range = ReplayRange {
                origin: origin.to_owned(),
                epoch,
                from,
                to,
                patterns: self.patterns.to_vec(),
            };
            let chunk = match self.fabric.replay(range).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, origin, "resume: history request failed");
                    self.gap(origin, epoch, from, to_or_unknown(to), e.gap_cause());
                    return;
                }
            };
            if chunk.oldest > from {
                let last = chunk.oldest.saturating_sub(1).min(to);
                self.gap(origin, epoch, from, last, GapCause::Unrecoverable);
            }
            for m in &chunk.messages {
                if !self.replayed(m) {
                    // Out of budget: the rest of the range is a gap, and
                    // nothing of it is sent later (held live events are newer).
                    let last = to.min(chunk.newest);
                    if m.seq <= last {
                        self.gap(origin, epoch, m.seq, last, GapCause::TooFarBehind);
                        self.out.delivered.insert(m.origin.clone(), (epoch, last));
                    }
                    return;
                }
            }
            let end = to.min(chunk.newest);
            if chunk.next > end || chunk.next <= from {
                return;
            }
            from = chunk.next;
        }
    }

    /// Takes one replayed message; false when the budget has no room for it.
    fn replayed(&mut self, m: &FabricMessage) -> bool {
        if let Some(&(e, s)) = self.out.delivered.get(&m.origin) {
            if (e == m.epoch && m.seq <= s) || e > m.epoch {
                return true;
            }
        }
        let frame = m.event_frame(self.trusted);
        if !self.room(frame.len()) {
            return false;
        }
        self.fresh(&m.origin, m.epoch, m.seq);
        self.push(frame);
        self.metrics.recovered_from_replay.inc();
        true
    }
}

fn to_or_unknown(to: u64) -> u64 {
    if to == u64::MAX {
        0
    } else {
        to
    }
}

/// Computes what a connection resuming after `start` must receive, within
/// `budget` (beyond it the rest is reported as a `too_far_behind` gap).
pub async fn recover(
    fabric: &dyn Fabric,
    start: ResumeStart,
    patterns: &[Pattern],
    topics: &[String],
    trusted: &[String],
    budget: Budget,
    metrics: &HubMetrics,
) -> Recovery {
    let mut cx = Ctx {
        fabric,
        patterns,
        topics,
        trusted,
        budget,
        bytes: 0,
        scanned: 0,
        metrics,
        out: Recovery {
            recovered: true,
            ..Recovery::default()
        },
    };
    for (origin, epoch, seq, coverage) in &start.coverage {
        // What the browser already has is never sent again. A seq is the
        // browser's word: `seq + 1` is checked (u64::MAX has nothing after it).
        let key: Arc<str> = Arc::from(origin.as_str());
        cx.fresh(&key, *epoch, *seq);
        let after = seq.checked_add(1);
        match (coverage, after) {
            (_, None) => {}
            (Some(c), Some(next)) if c.epoch == *epoch => {
                if next < c.first {
                    cx.replay(origin, *epoch, next, c.first.saturating_sub(1))
                        .await;
                }
            }
            (Some(c), Some(next)) => {
                // The origin restarted since: the old epoch's tail, then the
                // new epoch from its start.
                if c.epoch > *epoch {
                    cx.replay(origin, *epoch, next, u64::MAX).await;
                    if c.first > 1 {
                        cx.replay(origin, c.epoch, 1, c.first - 1).await;
                    }
                }
            }
            (None, Some(next)) => cx.replay(origin, *epoch, next, u64::MAX).await,
        }
        let ring = start.ring_events.iter().filter(|e| e.origin == key);
        let newest = coverage.map(|c| (c.epoch, c.last));
        for ev in ring {
            if cx.scanned >= cx.budget.scanned || !cx.room(0) {
                // Out of budget: the rest of what the ring held is a gap.
                if let Some((ep, last)) = newest {
                    if ep == ev.epoch && ev.seq <= last && cx.fresh(&key, ep, last) {
                        cx.gap(origin, ep, ev.seq, last, GapCause::TooFarBehind);
                    }
                }
                break;
            }
            cx.scanned += 1;
            if cx.scanned.is_multiple_of(SCAN_SLICE) {
                tokio::task::yield_now().await;
            }
            if !patterns.iter().any(|p| p.matches(&ev.topic)) {
                continue;
            }
            if !cx.room(ev.frame.len()) {
                if let Some((ep, last)) = newest {
                    if ep == ev.epoch && ev.seq <= last && cx.fresh(&key, ep, last) {
                        cx.gap(origin, ep, ev.seq, last, GapCause::TooFarBehind);
                    }
                }
                break;
            }
            if cx.fresh(&ev.origin, ev.epoch, ev.seq) {
                cx.push(ev.frame.clone());
                metrics.recovered_from_ring.inc();
            }
        }
    }
    cx.out
}
