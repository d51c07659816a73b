//! `subscribe_from`: tasks that fetch, per origin of the position, what
//! came after it, and feed it to the new subscription before live traffic.
//!
//! The subscriber task registers the subscription first (so live messages
//! are held, not lost), plans the history ranges (up to the newest the
//! broadcaster holds, in every epoch of the origin it knows of), then a
//! catch-up task delivers them with backpressure
//! (`send().await` on the subscription's own queue), waits until the
//! application has taken them all and reports the marks it reached. The
//! subscriber task then releases the held live messages after those marks —
//! or, when live messages outran the catch-up and had to be dropped (see
//! [`super::held`]), starts another round for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::replay::{ReplayRequest, Status};
use tokio::sync::mpsc;

use super::held::CatchUp;
use super::registry::{Extension, Mark};
use super::{Command, State};
use crate::history::History;
use crate::message::{Delivery, Gap, GapReason, Origins};
use crate::replay::decode_reply;
use crate::subscription::Parts;

impl State {
    /// Registers a subscription that first catches up from `since`. `live`
    /// holds, per known origin, the mark a plain subscription starts after.
    pub(super) fn subscribe_from(
        &mut self,
        pattern: Pattern,
        since: Position,
        live: HashMap<Arc<str>, Mark>,
    ) -> Parts {
        let mut start = live;
        let mut segments = Vec::new();
        for (o, e, s) in since.iter() {
            let origin = self.origins.intern(o);
            // Up to the newest the broadcaster holds, not only what was
            // seen here: what this client saw may lag behind (heartbeats
            // are periodic, and its SUB may not carry these topics yet).
            let newest = plan(&origin, e, s, self.tracker.max_seq(o))
                .into_iter()
                .map(|seg| Segment {
                    to: u64::MAX,
                    ..seg
                });
            segments.extend(newest);
            start.insert(origin, (e, s));
        }
        let progress = Arc::new(Mutex::new(since));
        let catch_up = CatchUp::new(progress.clone());
        let (parts, tx) = self.registry.add(pattern.clone(), start, Some(catch_up));
        let job = Extension {
            tx,
            pattern,
            progress,
            ranges: Vec::new(),
        };
        self.spawn_catch_up(parts.id, job, segments);
        parts
    }

    /// A catch-up round is done: the subscription goes live, or the
    /// catch-up goes on with what live traffic dropped meanwhile.
    pub(super) fn on_catch_up_done(&mut self, id: u64, marks: Vec<(Arc<str>, Mark)>) {
        let tracker = &self.tracker;
        let low = |o: &str| tracker.lowest_pending(o);
        let Some(job) = self.registry.finish_catch_up(id, marks, &low) else {
            return;
        };
        let mut segments = Vec::new();
        for (origin, after, to) in &job.ranges {
            // An origin first heard after the subscription was made: from
            // where the client started listening to it.
            let after = after
                .or_else(|| self.tracker.base(origin).filter(|b| b.0 == to.0))
                .unwrap_or((to.0, 0));
            // A gap's end came from the network: no further than seen.
            let to = match self.tracker.max_seq(origin) {
                Some((e, s)) if e == to.0 => (e, to.1.min(s)),
                _ => *to,
            };
            if after < to {
                segments.extend(plan(origin, after.0, after.1, Some(to)));
            }
        }
        tracing::debug!(
            id,
            segments = segments.len(),
            "live traffic outran a catch-up: fetching it from history"
        );
        self.spawn_catch_up(id, job, segments);
    }

    fn spawn_catch_up(&mut self, id: u64, job: Extension, plan: Vec<Segment>) {
        let task = CatchUpTask {
            id,
            history: self.task.history.clone(),
            tx: job.tx,
            pattern: job.pattern,
            plan,
            progress: job.progress,
            done: self.commands.clone(),
        };
        self.registry
            .set_catch_up_task(id, tokio::spawn(task.run()));
    }
}

/// One seq range of one origin epoch to fetch (`to` may be `u64::MAX`:
/// up to the newest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub origin: Arc<str>,
    pub epoch: u64,
    pub from: u64,
    pub to: u64,
    /// The last seq known to exist (`u64::MAX`: unknown). When history
    /// cannot be had, the gap reported ends here: nothing beyond it is known
    /// to be missing (and whatever the live stream then lacks is fetched in
    /// a later round).
    pub known: u64,
}

/// The ranges after `(epoch, seq)` of `origin`, given what has been seen
/// live (`live`: current epoch and highest seq, if the origin is known).
pub(crate) fn plan(
    origin: &Arc<str>,
    epoch: u64,
    seq: u64,
    live: Option<(u64, u64)>,
) -> Vec<Segment> {
    let seg = |epoch, from, to| Segment {
        origin: origin.clone(),
        epoch,
        from,
        to,
        known: to,
    };
    let from = seq.saturating_add(1);
    match live {
        Some((le, ls)) if le == epoch => vec![seg(epoch, from, ls)],
        Some((le, ls)) if le > epoch => vec![seg(epoch, from, u64::MAX), seg(le, 1, ls)],
        _ => vec![seg(epoch, from, u64::MAX)],
    }
}

/// One catch-up round of one subscription.
pub(crate) struct CatchUpTask {
    pub id: u64,
    pub history: History,
    pub tx: mpsc::Sender<Delivery>,
    pub pattern: Pattern,
    pub plan: Vec<Segment>,
    pub progress: Arc<Mutex<Position>>,
    pub done: mpsc::Sender<Command>,
}

impl CatchUpTask {
    pub(crate) async fn run(self) {
        let mut origins = Origins::default();
        let mut marks = Vec::new();
        for seg in &self.plan {
            match self.segment(seg, &mut origins).await {
                Ok(Some(mark)) => marks.push((seg.origin.clone(), mark)),
                Ok(None) => {}
                Err(Closed) => return,
            }
        }
        // Report once the application has taken everything queued, so the
        // held live deliveries fit in the queue.
        let room = self.tx.max_capacity();
        if self.tx.reserve_many(room).await.is_err() {
            return;
        }
        let _ = self
            .done
            .send(Command::CatchUpDone { id: self.id, marks })
            .await;
    }

    /// Delivers one segment; returns the mark it covered up to.
    async fn segment(&self, seg: &Segment, origins: &mut Origins) -> Result<Option<Mark>, Closed> {
        let mut cursor = seg.from;
        let mut covered = None;
        while cursor <= seg.to {
            let request = ReplayRequest {
                req_id: bytes::Bytes::new(),
                origin: seg.origin.to_string(),
                epoch: seg.epoch,
                from: cursor,
                to: seg.to,
                lane: None,
                patterns: vec![self.pattern.clone()],
            };
            let batch = match self.history.request(request).await {
                Ok(raw) => decode_reply(raw, origins),
                Err(e) => {
                    tracing::warn!(error = %e, origin = %seg.origin, "catch-up failed");
                    self.gap(seg, cursor, seg.known, GapReason::ReplayFailed)
                        .await?;
                    return Ok(covered);
                }
            };
            match batch.status {
                Status::Ok => {}
                Status::UnknownEpoch | Status::UnknownOrigin => {
                    self.gap(seg, cursor, seg.known, GapReason::EpochGone)
                        .await?;
                    return Ok(covered);
                }
                Status::BadRequest | Status::Busy => {
                    self.gap(seg, cursor, seg.known, GapReason::ReplayFailed)
                        .await?;
                    return Ok(covered);
                }
            }
            let mut next = batch.next;
            if batch.oldest > cursor {
                let last = seg.to.min(batch.oldest - 1);
                self.gap(seg, cursor, last, GapReason::Expired).await?;
                next = next.max(last.saturating_add(1));
            }
            for m in batch.messages {
                if m.stamp.epoch != seg.epoch || !self.pattern.matches(&m.topic) {
                    continue;
                }
                let (o, e, s) = (m.stamp.origin.clone(), m.stamp.epoch, m.stamp.seq);
                self.tx
                    .send(Delivery::Message(m))
                    .await
                    .map_err(|_| Closed)?;
                if let Ok(mut p) = self.progress.lock() {
                    p.advance(&o, e, s);
                }
            }
            if next > cursor {
                covered = Some((seg.epoch, next - 1));
            }
            if next > cursor && next <= seg.to.min(batch.newest) {
                cursor = next;
            } else {
                return Ok(covered);
            }
        }
        Ok(Some((seg.epoch, seg.to)))
    }

    /// Reports `[first, last]` of the segment as lost (nothing when empty).
    async fn gap(
        &self,
        seg: &Segment,
        first: u64,
        last: u64,
        reason: GapReason,
    ) -> Result<(), Closed> {
        if first > last {
            return Ok(());
        }
        let gap = Gap {
            origin: seg.origin.clone(),
            epoch: seg.epoch,
            first,
            last,
            reason,
        };
        self.tx.send(Delivery::Gap(gap)).await.map_err(|_| Closed)
    }
}

/// The subscription is gone.
#[derive(Debug)]
pub(crate) struct Closed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_epochs() {
        let o: Arc<str> = Arc::from("b1");
        assert_eq!(
            plan(&o, 5, 10, Some((5, 20))),
            vec![Segment {
                origin: o.clone(),
                epoch: 5,
                from: 11,
                to: 20,
                known: 20,
            }]
        );
        let two = plan(&o, 5, 10, Some((6, 3)));
        assert_eq!(
            (two[0].to, two[1].epoch, two[1].from, two[1].to),
            (u64::MAX, 6, 1, 3)
        );
        assert_eq!(plan(&o, 5, 10, None)[0].to, u64::MAX);
    }
}
