//! [`Subscription`]: a stream of deliveries for one pattern.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use super::handle::SubscriberHandle;
use super::queue::Parts;
use crate::message::{CloseReason, Delivery};

/// Most deliveries a [`Subscription`] takes from its queue at once. Taken
/// ones no longer count against the queue's bound, so an application that
/// stopped reading holds at most this many more than the bound.
const BURST: usize = 64;

/// A stream of [`Delivery`] items for one pattern.
///
/// Its queue is bounded ([`ClientOptions::subscription_capacity`](crate::ClientOptions::subscription_capacity),
/// default 4096). When the application lets it fill up, the subscription is
/// ended: the items already queued are still yielded, then
/// `Delivery::Closed(CloseReason::SlowConsumer { position })`, then the
/// stream ends. Other subscriptions are not affected. The subscription
/// takes what waits in its queue in bursts of up to 64, so an application
/// that stops reading mid-burst holds that many more.
///
/// Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    pattern: String,
    rx: mpsc::Receiver<Delivery>,
    /// Deliveries taken from `rx` in one burst and not yet yielded (at
    /// most [`BURST`]): one queue operation per burst instead of one per
    /// item. Its allocation is reused from burst to burst.
    burst: VecDeque<Delivery>,
    reason: oneshot::Receiver<CloseReason>,
    /// Items taken from `rx` (the subscriber task tells a reading
    /// application from one that stopped by it).
    taken: Arc<AtomicU64>,
    finished: bool,
    /// Yield re-sent copies (marked) instead of skipping them.
    keep_resent: bool,
    subscriber: SubscriberHandle,
    _client: Arc<dyn Send + Sync>,
}

impl Subscription {
    pub(crate) fn new(
        parts: Parts,
        pattern: String,
        subscriber: SubscriberHandle,
        client: Arc<dyn Send + Sync>,
    ) -> Self {
        Self {
            id: parts.id,
            pattern,
            rx: parts.rx,
            burst: VecDeque::new(),
            reason: parts.reason,
            taken: parts.taken,
            finished: false,
            keep_resent: false,
            subscriber,
            _client: client,
        }
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// From now on this subscription matches `patterns` (any of them;
    /// none: nothing) instead of what it matched, and holds their SUB
    /// prefixes (coarser ones past a budget of 6144 prefixes / 48 KiB, so
    /// the broadcaster refuses none). Resolves once the broadcaster applied
    /// the change (the session marker answering it, PROTOCOL.md
    /// "Sessions"), telling from which seq of its origin the new patterns
    /// are complete; a change that needs no new prefix resolves at once.
    /// With several broadcasters, once the first applied it. Without a
    /// session (a broadcaster that refused a prefix) it waits: bound it
    /// with a timeout.
    pub async fn set_patterns(
        &mut self,
        patterns: &[&str],
    ) -> Result<crate::PatternsApplied, crate::SubscribeError> {
        let parsed = patterns
            .iter()
            .map(|p| fanfare_protocol::pattern::Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        self.subscriber.set_patterns(self.id, parsed).await
    }

    /// What [`Self::set_patterns`] needs, to call it while another task
    /// reads the subscription (the hub's feed).
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    pub(crate) fn control(&self) -> (SubscriberHandle, u64) {
        (self.subscriber.clone(), self.id)
    }

    /// From now on, also yield [`Delivery::Watermark`] items: for a
    /// consumer that orders by origin seq (the hub), they tell which
    /// missing seqs were filtered rather than still to come.
    pub async fn keep_watermarks(&mut self) -> Result<(), crate::SubscribeError> {
        self.subscriber.want_watermarks(self.id).await
    }

    /// From now on, also yield re-sent copies (marked `resent`) of messages
    /// already delivered, so that a consumer that orders by origin seq (the
    /// hub) can tell such a seq from a hole.
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    pub(crate) fn keep_resent(&mut self) {
        self.keep_resent = true;
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        loop {
            if let Some(d) = this.burst.pop_front() {
                this.taken.fetch_add(1, Ordering::Relaxed);
                if !this.keep_resent && matches!(&d, Delivery::Message(m) if m.resent) {
                    continue;
                }
                return Poll::Ready(Some(d));
            }
            // The burst is empty here: turning it into a `Vec` and back
            // moves nothing and keeps its allocation.
            let mut buf = Vec::from(std::mem::take(&mut this.burst));
            let got = this.rx.poll_recv_many(cx, &mut buf, BURST);
            this.burst = VecDeque::from(buf);
            match got {
                Poll::Ready(0) => {
                    this.finished = true;
                    let reason = this.reason.try_recv().unwrap_or(CloseReason::ClientClosed);
                    return Poll::Ready(Some(Delivery::Closed(reason)));
                }
                Poll::Ready(_) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // If the command queue is full, the subscriber task still notices
        // the closed queue at its next delivery or sweep.
        self.subscriber.unsubscribe(self.id);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("pattern", &self.pattern)
            .finish()
    }
}
