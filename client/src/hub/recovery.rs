//! Resuming a browser at a position: from the hub's ring when it holds the
//! range, else from the broadcaster's history, else an explicit gap.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use fanfare_protocol::pattern::Pattern;

use super::fabric::{Fabric, FabricMessage, ReplayRange};
use super::metrics::HubMetrics;
use super::protocol::{self, GapCause, GapNotice};
use super::registry::ResumeStart;

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
    budget: usize,
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

    fn push_replayed(&mut self, m: &FabricMessage) {
        if !self.fresh(&m.origin, m.epoch, m.seq) {
            return;
        }
        self.out.frames.push(m.event_frame());
        self.out.events += 1;
        self.metrics.recovered_from_replay.inc();
    }

    /// Fetches `[from, to]` of `origin`/`epoch` from the broadcaster.
    async fn replay(&mut self, origin: &str, epoch: u64, mut from: u64, to: u64) {
        while from <= to {
            if self.out.events as usize >= self.budget {
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
                self.push_replayed(m);
            }
            let end = to.min(chunk.newest);
            if chunk.next > end || chunk.next <= from {
                return;
            }
            from = chunk.next;
        }
    }
}

fn to_or_unknown(to: u64) -> u64 {
    if to == u64::MAX {
        0
    } else {
        to
    }
}

/// Computes what a connection resuming after `start` must receive.
///
/// `budget` bounds the events taken from the broadcaster's history; beyond it
/// the rest is reported as a `too_far_behind` gap.
pub async fn recover(
    fabric: &dyn Fabric,
    start: ResumeStart,
    patterns: &[Pattern],
    topics: &[String],
    budget: usize,
    metrics: &HubMetrics,
) -> Recovery {
    let mut cx = Ctx {
        fabric,
        patterns,
        topics,
        budget,
        metrics,
        out: Recovery {
            recovered: true,
            ..Recovery::default()
        },
    };
    for (origin, epoch, seq, coverage) in &start.coverage {
        // What the browser already has is never sent again.
        cx.fresh(&Arc::from(origin.as_str()), *epoch, *seq);
        // The browser's position is outside input: never wrap past u64::MAX.
        let after = seq.saturating_add(1);
        match coverage {
            Some(c) if c.epoch == *epoch => {
                if after < c.first {
                    cx.replay(origin, *epoch, after, c.first - 1).await;
                }
            }
            Some(c) => {
                // The origin restarted since: the old epoch's tail, then the
                // new epoch from its start.
                if c.epoch > *epoch {
                    cx.replay(origin, *epoch, after, u64::MAX).await;
                    if c.first > 1 {
                        cx.replay(origin, c.epoch, 1, c.first - 1).await;
                    }
                }
            }
            None => cx.replay(origin, *epoch, after, u64::MAX).await,
        }
        for ev in start
            .ring_events
            .iter()
            .filter(|e| &*e.origin == origin.as_str())
        {
            if cx.fresh(&ev.origin, ev.epoch, ev.seq) {
                cx.out.frames.push(ev.frame.clone());
                cx.out.events += 1;
                metrics.recovered_from_ring.inc();
            }
        }
    }
    cx.out
}
