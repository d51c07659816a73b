//! The hub's feed: the fabric's items put in origin order (`reorder`) and
//! dispatched to the connections; and, when the feed follows the browsers'
//! interest (`interest`), the feed's patterns kept equal to theirs.
//!
//! Following interest: a fresh feed carries its whole pattern (`#`), so
//! every generation of the interest so far; then the set is applied through
//! the fabric, one change at a time (a change made meanwhile is applied
//! next), each bounded by [`APPLY_TIMEOUT`] and retried after
//! [`APPLY_RETRY`]. The fabric's answer tells from which seq the new
//! patterns are complete: the ring covers no resume before it. Watermarks
//! come for the broadcaster's own origin only; a message of another origin
//! (federation) ends the following for good: the feed goes back to
//! everything, and what the reorder parked of other origins goes out.

use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use futures::future::{BoxFuture, OptionFuture};
use futures::StreamExt;
use tokio::time::Instant;

use super::fabric::{FabricItem, FabricMessage, FeedApplied, FeedFailure};
use super::{reorder, ring, HubInner};
use std::sync::atomic::Ordering::Relaxed;

/// Longest wait for the fabric to apply a change of the feed's patterns.
pub(crate) const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// After the feed goes back to everything, how long other origins'
/// messages go out unordered: the broadcasters' interest (federation,
/// refreshed every 2 s per hop) may still leave holes in them.
const RELAYED_GRACE: Duration = Duration::from_secs(10);
/// Wait before a failed change is tried again.
const APPLY_RETRY: Duration = Duration::from_secs(1);

type Applying =
    BoxFuture<'static, Result<Result<FeedApplied, FeedFailure>, tokio::time::error::Elapsed>>;

/// Where the feed stands with the interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// It follows the browsers' patterns.
    Following,
    /// It stopped following; the change back to everything is owed.
    Reverting,
    /// It carries everything (its own pattern).
    Everything,
}

/// What the feed knows of the interest it follows.
struct Follow {
    mode: Mode,
    /// The feed's own pattern (`#`): what "everything" is.
    everything: Pattern,
    /// The set changed since the last change was started.
    dirty: bool,
    retry_at: Option<Instant>,
    /// The origin the fabric applies changes for (watermarks come for it).
    own: Option<Arc<str>>,
}

pub(super) async fn feed_loop(inner: Arc<HubInner>) {
    let pattern = match Pattern::parse(&inner.options.feed_pattern) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "hub feed pattern is invalid; the hub delivers nothing");
            return;
        }
    };
    // Polled once per message: the token's own future takes two locks per
    // poll, the flag none.
    let stop = crate::cancel_flag::CancelFlag::watch(&inner.shutdown);
    let mut backoff = Duration::from_millis(100);
    while !inner.shutdown.is_cancelled() {
        let feed = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            f = inner.fabric.feed(pattern.clone()) => f,
        };
        let mut feed = match feed {
            Ok(f) => {
                backoff = Duration::from_millis(100);
                f
            }
            Err(e) => {
                tracing::warn!(error = %e, "hub feed unavailable; retrying");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let on = inner.interest.following();
        if on {
            // The fresh feed carries everything its pattern (`#`) does.
            inner.interest.applied(inner.interest.generation());
        }
        let mut follow = Follow::new(on, pattern.clone());
        let mut order = reorder::Reorder::new(50_000, Duration::from_secs(8));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut out = Vec::new();
        // The change in flight: the generation it applies (`None`: back to
        // everything) and its future.
        let mut in_flight: Option<(Option<u64>, Applying)> = None;
        // Kept across iterations: a fresh `Notified` per message would
        // register a waiter (a lock) each time.
        let mut changed = std::pin::pin!(inner.interest.changed());
        loop {
            if in_flight.is_none() {
                in_flight = follow.start(&inner);
            }
            let generation = in_flight.as_ref().map(|(g, _)| *g);
            let following = follow.following();
            let retry_at = follow.retry_at;
            let applying = OptionFuture::from(in_flight.as_mut().map(|(_, f)| f));
            tokio::select! {
                item = feed.next() => match item {
                    Some(FabricItem::Message(m)) => {
                        follow.check_origin(&inner, &m);
                        order.push(m, &mut out)
                    }
                    Some(FabricItem::Gap { origin, epoch, first, last, reason }) => {
                        order.gap(&origin, epoch, first, last, reason, &mut out)
                    }
                    Some(FabricItem::Resent { origin, epoch, seq }) => {
                        order.resent(&origin, epoch, seq, &mut out)
                    }
                    Some(FabricItem::Watermark { origin, epoch, through }) => {
                        follow.check_fabric(&inner);
                        order.watermark(&origin, epoch, through, &mut out)
                    }
                    None => break,
                },
                Some(r) = applying => {
                    in_flight = None;
                    let generation = generation.flatten();
                    follow.finished(&inner, generation, r, &mut order, &mut out);
                }
                _ = &mut changed, if following => {
                    follow.dirty = true;
                    changed.set(inner.interest.changed());
                }
                _ = sleep_opt(retry_at), if retry_at.is_some() => follow.retry_at = None,
                // Polled only while a hole holds messages back: polling an
                // interval per message re-registers its timer each time.
                _ = tick.tick(), if order.waiting() => order.tick(&mut out),
                _ = stop.cancelled() => return,
            }
            if follow.mode == Mode::Reverting
                && in_flight.as_ref().is_some_and(|(g, _)| g.is_some())
            {
                // A narrowing in flight is dropped: the change back to
                // everything covers it.
                in_flight = None;
            }
            for o in out.drain(..) {
                match o {
                    reorder::Ordered::Message(m) => dispatch(&inner, m),
                    reorder::Ordered::Lost(notice) => inner.registry.gap(&notice),
                }
            }
        }
        tracing::warn!("hub feed ended; resubscribing");
    }
}

impl Follow {
    fn new(following: bool, everything: Pattern) -> Self {
        Self {
            mode: if following {
                Mode::Following
            } else {
                Mode::Everything
            },
            everything,
            dirty: following,
            retry_at: None,
            own: None,
        }
    }

    fn following(&self) -> bool {
        self.mode == Mode::Following
    }

    /// The owed change, if any (called while none is in flight): the
    /// generation it applies (`None`: back to everything) and its future.
    fn start(&mut self, inner: &HubInner) -> Option<(Option<u64>, Applying)> {
        if self.retry_at.is_some() {
            return None;
        }
        let (generation, patterns) = match self.mode {
            Mode::Everything => return None,
            Mode::Reverting => (None, vec![self.everything.clone()]),
            Mode::Following if !self.dirty => return None,
            Mode::Following => {
                let (g, p) = inner.interest.wanted()?;
                (Some(g), p)
            }
        };
        self.dirty = false;
        let change = inner.fabric.set_feed_patterns(patterns);
        Some((
            generation,
            Box::pin(tokio::time::timeout(APPLY_TIMEOUT, change)),
        ))
    }

    /// A change was applied (or failed).
    fn finished(
        &mut self,
        inner: &HubInner,
        generation: Option<u64>,
        r: Result<Result<FeedApplied, FeedFailure>, tokio::time::error::Elapsed>,
        order: &mut reorder::Reorder,
        out: &mut Vec<reorder::Ordered>,
    ) {
        let a = match r {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return self.retry(&e.to_string()),
            Err(_) => return self.retry("timed out"),
        };
        inner.metrics.feed_changes.inc();
        match generation {
            None => {
                // Back to everything: the other origins' holes were filtering.
                self.mode = Mode::Everything;
                for origin in order.release_all_but(&a.origin, RELAYED_GRACE, out) {
                    inner.registry.forget_ring(&origin);
                }
            }
            Some(generation) => {
                inner.registry.raise_ring(&a.origin, a.epoch, a.seq);
                self.own = Some(a.origin);
                inner.interest.applied(generation);
            }
        }
    }

    fn retry(&mut self, why: &str) {
        tracing::warn!(why, "hub feed: changing its patterns failed; retrying");
        self.dirty = true;
        self.retry_at = Some(Instant::now() + APPLY_RETRY);
    }

    /// A message of an origin the feed has no watermarks for: stop
    /// following (once), go back to everything.
    fn check_origin(&mut self, inner: &HubInner, m: &FabricMessage) {
        let Some(own) = &self.own else { return };
        if !self.following() || Arc::ptr_eq(own, &m.origin) || **own == *m.origin {
            return;
        }
        tracing::info!(origin = %m.origin, "hub feed: a relayed origin (federation) came");
        self.stop_following(inner);
    }

    /// The fabric can no longer follow (it heard a relayed origin's
    /// heartbeat, usually long before any of its messages): stop following.
    fn check_fabric(&mut self, inner: &HubInner) {
        if self.following() && !inner.fabric.follows_interest() {
            tracing::info!("hub feed: the broadcaster relays other origins (federation)");
            self.stop_following(inner);
        }
    }

    fn stop_following(&mut self, inner: &HubInner) {
        tracing::info!("hub feed: carrying everything from now on");
        inner.interest.stop_following();
        self.mode = Mode::Reverting;
        self.retry_at = None;
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn dispatch(inner: &HubInner, m: FabricMessage) {
    if m.topic.starts_with(fanfare_protocol::RESERVED_PREFIX) {
        return;
    }
    inner.metrics.events_in.inc();
    let lag = fanfare_protocol::stamp::now_us().saturating_sub(m.timestamp_us);
    inner.metrics.lag_us.store(lag, Relaxed);
    let frame = m.event_frame(&inner.options.trusted_publishers);
    inner.registry.dispatch(Arc::new(ring::Event {
        topic: m.topic,
        origin: m.origin,
        epoch: m.epoch,
        seq: m.seq,
        timestamp_us: m.timestamp_us,
        frame,
    }));
}
