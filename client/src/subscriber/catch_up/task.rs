//! The catch-up task: one per catching-up subscription and round. It asks
//! the replay task for each planned [`Segment`], sends what comes back into
//! the subscription's own queue with backpressure (`send().await`: it waits
//! for the application, the subscriber task never does), reports what
//! history no longer holds as gaps, then waits until the application has
//! taken everything queued and reports the marks it reached
//! ([`Command::CatchUpDone`]).
//!
//! It owns no socket and touches no shared state but the subscription's
//! progress (a `Position` behind a mutex, read when the subscription is
//! closed as slow).

use std::sync::{Arc, Mutex};

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::replay::{ReplayRequest, Status};
use tokio::sync::mpsc;

use super::plan::Segment;
use crate::message::{Delivery, Gap, GapReason, Mark, Origins};
use crate::replay_query::decode_reply;
use crate::replay_sources::ReplayHandle;
use crate::subscriber::handle::Command;
use crate::subscriber::publisher_seqs::{PublisherSeqs, CATCH_UP_SESSIONS};

/// One catch-up round of one subscription.
pub(crate) struct CatchUpTask {
    pub id: u64,
    pub replay: ReplayHandle,
    pub tx: mpsc::Sender<Delivery>,
    pub pattern: Pattern,
    pub plan: Vec<Segment>,
    pub progress: Arc<Mutex<Position>>,
    pub done: mpsc::Sender<Command>,
}

impl CatchUpTask {
    pub(crate) async fn run(self) {
        let mut origins = Origins::default();
        let mut seen = PublisherSeqs::new(CATCH_UP_SESSIONS);
        let mut marks = Vec::new();
        for seg in &self.plan {
            match self.segment(seg, &mut origins, &mut seen).await {
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
    async fn segment(
        &self,
        seg: &Segment,
        origins: &mut Origins,
        seen: &mut PublisherSeqs,
    ) -> Result<Option<Mark>, Closed> {
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
            let batch = match self.replay.request(request).await {
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
                // A re-sent copy of one already delivered is skipped (but
                // its stamp still counts as covered).
                if seen.fresh(m.stamp.publisher_seq) {
                    self.tx
                        .send(Delivery::Message(m))
                        .await
                        .map_err(|_| Closed)?;
                }
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
