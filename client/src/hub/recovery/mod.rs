//! Resuming a browser at a position: from the hub's ring when it holds the
//! range, else from the broadcaster's history, else an explicit gap.
//!
//! A resume is streamed, never built whole: each `event`/`gap` frame goes
//! into the connection's bounded queue as soon as it is made, through the
//! connection's resume window ([`Out`]): at most `WINDOW_BYTES` (256 KiB) of resume
//! frames are queued and not yet handed to the socket. A frame that waits
//! longer than the slow-consumer cut for window or queue room ends the
//! connection as a slow consumer (4008), the rule of live traffic. History
//! is fetched in ranges sized to about [`CHUNK_EVENTS`] events /
//! [`CHUNK_BYTES`] bytes, so what a resume holds is one fetched chunk plus
//! its window, whatever the resume's size.
//!
//! Every resume is also bounded in total ([`Budget`]): events it may send,
//! bytes of frames it may send, and ring events it may scan (matching is
//! done here, outside the registry lock, yielding to the runtime every
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

mod window;
pub use window::{Out, Stopped};

/// Ring events matched between two yields to the runtime.
pub const SCAN_SLICE: usize = 64;

/// Events one history request aims at (the range asked for adapts to it).
pub const CHUNK_EVENTS: usize = 256;

/// Bytes of messages one history request aims at.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Seqs asked for by the first history request of a range; later requests
/// double or halve it to stay near the chunk size.
const FIRST_SPAN: u64 = 256;

/// Largest span of seqs one history request asks for.
const MAX_SPAN: u64 = 1 << 16;

/// What one resume may cost.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Events sent (ring and history together).
    pub events: usize,
    /// Bytes of event frames sent by the resume (ring and history).
    pub bytes: usize,
    /// Ring events looked at (matched against the patterns).
    pub scanned: usize,
}

/// What a resume did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Last (epoch, seq) sent per origin: held live events up to it are dropped.
    pub delivered: HashMap<Arc<str>, (u64, u64)>,
    /// Every missed event was found.
    pub recovered: bool,
    /// Events sent.
    pub events: u64,
    /// Set when the connection could not take the rest.
    pub stopped: Option<Stopped>,
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
    sink: &'a Out,
    out: Recovery,
}

impl Ctx<'_> {
    async fn gap(
        &mut self,
        origin: &str,
        epoch: u64,
        first: u64,
        last: u64,
        reason: GapCause,
    ) -> Result<(), Stopped> {
        self.out.recovered = false;
        let notice = GapNotice {
            reason,
            origin: origin.to_owned(),
            epoch,
            first,
            last,
        };
        self.sink.send(protocol::gap(self.topics, &notice)).await?;
        self.metrics.gaps_sent.inc();
        Ok(())
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

    async fn push(&mut self, frame: Utf8Bytes) -> Result<(), Stopped> {
        self.bytes = self.bytes.saturating_add(frame.len());
        self.out.events += 1;
        self.sink.send(frame).await
    }

    /// Fetches `[from, to]` of `origin`/`epoch` from the broadcaster, one
    /// chunk-sized range at a time, each sent before the next is asked for.
    async fn replay(
        &mut self,
        origin: &str,
        epoch: u64,
        mut from: u64,
        to: u64,
    ) -> Result<(), Stopped> {
        let mut span = FIRST_SPAN;
        while from <= to {
            if !self.room(0) {
                let last = to_or_unknown(to);
                return self
                    .gap(origin, epoch, from, last, GapCause::TooFarBehind)
                    .await;
            }
            let asked = to.min(from.saturating_add(span - 1));
            let range = ReplayRange {
                origin: origin.to_owned(),
                epoch,
                from,
                to: asked,
                patterns: self.patterns.to_vec(),
            };
            let chunk = match self.fabric.replay(range).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, origin, "resume: history request failed");
                    let last = to_or_unknown(to);
                    return self.gap(origin, epoch, from, last, e.gap_cause()).await;
                }
            };
            if chunk.oldest > from {
                let last = chunk.oldest.saturating_sub(1).min(to);
                self.gap(origin, epoch, from, last, GapCause::Unrecoverable)
                    .await?;
                if last >= to {
                    return Ok(());
                }
                if chunk.messages.is_empty() && chunk.next <= chunk.oldest {
                    // Ask again from what history still holds.
                    from = chunk.oldest;
                    continue;
                }
            }
            let bytes: usize = chunk.messages.iter().map(|m| m.payload.len()).sum();
            for m in &chunk.messages {
                if !self.replayed(m).await? {
                    // Out of budget: the rest of the range is a gap, and
                    // nothing of it is sent later (held live events are newer).
                    let last = to.min(chunk.newest);
                    if m.seq <= last {
                        self.gap(origin, epoch, m.seq, last, GapCause::TooFarBehind)
                            .await?;
                        self.out.delivered.insert(m.origin.clone(), (epoch, last));
                    }
                    return Ok(());
                }
            }
            let end = to.min(chunk.newest);
            if chunk.next > end || chunk.next <= from {
                return Ok(());
            }
            from = chunk.next;
            span = next_span(span, chunk.messages.len(), bytes);
        }
        Ok(())
    }

    /// Takes one replayed message; false when the budget has no room for it.
    async fn replayed(&mut self, m: &FabricMessage) -> Result<bool, Stopped> {
        if let Some(&(e, s)) = self.out.delivered.get(&m.origin) {
            if (e == m.epoch && m.seq <= s) || e > m.epoch {
                return Ok(true);
            }
        }
        let frame = m.event_frame(self.trusted);
        if !self.room(frame.len()) {
            return Ok(false);
        }
        self.fresh(&m.origin, m.epoch, m.seq);
        self.metrics.recovered_from_replay.inc();
        self.push(frame).await?;
        Ok(true)
    }

    /// Matches the ring events of `key` (taken at the start) and sends the
    /// fresh ones; past the budget, the rest up to `newest` is a gap.
    async fn ring(
        &mut self,
        key: &Arc<str>,
        events: &[Arc<super::ring::Event>],
        newest: Option<(u64, u64)>,
    ) -> Result<(), Stopped> {
        for ev in events.iter().filter(|e| e.origin == *key) {
            let over = self.scanned >= self.budget.scanned || !self.room(0);
            if !over {
                self.scanned += 1;
                if self.scanned.is_multiple_of(SCAN_SLICE) {
                    tokio::task::yield_now().await;
                }
                if !self.patterns.iter().any(|p| p.matches(&ev.topic)) {
                    continue;
                }
            }
            if over || !self.room(ev.frame.len()) {
                // Out of budget: the rest of what the ring held is a gap.
                if let Some((ep, last)) = newest {
                    if ep == ev.epoch && ev.seq <= last && self.fresh(key, ep, last) {
                        self.gap(key, ep, ev.seq, last, GapCause::TooFarBehind)
                            .await?;
                    }
                }
                return Ok(());
            }
            if self.fresh(&ev.origin, ev.epoch, ev.seq) {
                self.metrics.recovered_from_ring.inc();
                self.push(ev.frame.clone()).await?;
            }
        }
        Ok(())
    }
}

/// The next history span: doubled while chunks come back small, halved
/// when one came back over the chunk size.
fn next_span(span: u64, events: usize, bytes: usize) -> u64 {
    if events > CHUNK_EVENTS || bytes > CHUNK_BYTES {
        (span / 2).max(1)
    } else if events < CHUNK_EVENTS / 2 && bytes < CHUNK_BYTES / 2 {
        span.saturating_mul(2).min(MAX_SPAN)
    } else {
        span
    }
}

fn to_or_unknown(to: u64) -> u64 {
    if to == u64::MAX {
        0
    } else {
        to
    }
}

/// What a resume needs besides its start.
pub struct Request<'a> {
    /// The patterns of the `subscribe`.
    pub patterns: &'a [Pattern],
    /// Their text, for `gap` frames.
    pub topics: &'a [String],
    /// Publisher ids shown as `from`.
    pub trusted: &'a [String],
    /// Its bounds.
    pub budget: Budget,
}

/// Sends what a connection resuming after `start` must receive into `sink`,
/// within `budget` (beyond it the rest is reported as a `too_far_behind`
/// gap). Stops early when the connection cannot take it (`stopped`).
pub async fn recover(
    fabric: &dyn Fabric,
    start: ResumeStart,
    request: Request<'_>,
    sink: &Out,
    metrics: &HubMetrics,
) -> Recovery {
    let mut cx = Ctx {
        fabric,
        patterns: request.patterns,
        topics: request.topics,
        trusted: request.trusted,
        budget: request.budget,
        bytes: 0,
        scanned: 0,
        metrics,
        sink,
        out: Recovery {
            recovered: true,
            ..Recovery::default()
        },
    };
    for (origin, epoch, seq, coverage) in &start.coverage {
        if let Err(stopped) = resume_origin(&mut cx, &start, origin, *epoch, *seq, *coverage).await
        {
            cx.out.stopped = Some(stopped);
            break;
        }
    }
    cx.out
}

async fn resume_origin(
    cx: &mut Ctx<'_>,
    start: &ResumeStart,
    origin: &str,
    epoch: u64,
    seq: u64,
    coverage: Option<super::ring::Coverage>,
) -> Result<(), Stopped> {
    // What the browser already has is never sent again. A seq is the
    // browser's word: `seq + 1` is checked (u64::MAX has nothing after it).
    let key: Arc<str> = Arc::from(origin);
    cx.fresh(&key, epoch, seq);
    match (coverage, seq.checked_add(1)) {
        (_, None) => {}
        (Some(c), Some(next)) if c.epoch == epoch => {
            if next < c.first {
                cx.replay(origin, epoch, next, c.first.saturating_sub(1))
                    .await?;
            }
        }
        (Some(c), Some(next)) => {
            // The origin restarted since: the old epoch's tail, then the
            // new epoch from its start.
            if c.epoch > epoch {
                cx.replay(origin, epoch, next, u64::MAX).await?;
                if c.first > 1 {
                    cx.replay(origin, c.epoch, 1, c.first - 1).await?;
                }
            }
        }
        (None, Some(next)) => cx.replay(origin, epoch, next, u64::MAX).await?,
    }
    let newest = coverage.map(|c| (c.epoch, c.last));
    cx.ring(&key, &start.ring_events, newest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_span_follows_the_chunk_size() {
        assert_eq!(next_span(256, 10, 1000), 512);
        assert_eq!(next_span(MAX_SPAN, 0, 0), MAX_SPAN);
        assert_eq!(next_span(256, CHUNK_EVENTS + 1, 0), 128);
        assert_eq!(next_span(1, 1, CHUNK_BYTES + 1), 1);
        assert_eq!(next_span(256, CHUNK_EVENTS, 0), 256);
    }
}
