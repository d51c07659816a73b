//! `subscribe_from`: a task that fetches, per origin of the position, what
//! came after it, and feeds it to the new subscription before live traffic.
//!
//! The subscriber task registers the subscription first (so live messages
//! are held, not lost), plans the history ranges up to what it has seen
//! live, then this task delivers them with backpressure (`send().await` on
//! the subscription's own queue) and reports the marks it reached. The
//! subscriber task then releases the held live messages after those marks.

use std::sync::{Arc, Mutex};

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::replay::{ReplayRequest, Status};
use tokio::sync::mpsc;

use super::registry::Mark;
use super::Command;
use crate::history::History;
use crate::message::{Delivery, Gap, GapReason, Origins};
use crate::replay::decode_reply;

/// One seq range of one origin epoch to fetch (`to` may be `u64::MAX`:
/// up to the newest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub origin: Arc<str>,
    pub epoch: u64,
    pub from: u64,
    pub to: u64,
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
    };
    let from = seq.saturating_add(1);
    match live {
        Some((le, ls)) if le == epoch => vec![seg(epoch, from, ls)],
        Some((le, ls)) if le > epoch => vec![seg(epoch, from, u64::MAX), seg(le, 1, ls)],
        _ => vec![seg(epoch, from, u64::MAX)],
    }
}

/// The catch-up of one subscription.
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
                    self.gap(seg, cursor, seg.to, GapReason::ReplayFailed)
                        .await?;
                    return Ok(covered);
                }
            };
            match batch.status {
                Status::Ok => {}
                Status::UnknownEpoch | Status::UnknownOrigin => {
                    self.gap(seg, cursor, seg.to, GapReason::EpochGone).await?;
                    return Ok(covered);
                }
                Status::BadRequest | Status::Busy => {
                    self.gap(seg, cursor, seg.to, GapReason::ReplayFailed)
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

    async fn gap(
        &self,
        seg: &Segment,
        first: u64,
        last: u64,
        reason: GapReason,
    ) -> Result<(), Closed> {
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
                to: 20
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
