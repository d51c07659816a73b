//! [`Fabric`] over a real [`Client`]: the hub's feed is one client
//! subscription (resumed with `subscribe_from` if the client ever closes it
//! as a slow consumer), recovery uses the client's raw history queries.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::fabric::{
    Fabric, FabricItem, FabricMessage, FeedApplied, FeedFailure, PublishFailure, ReplayChunk,
    ReplayFailure, ReplayRange,
};
use super::protocol::GapCause;
use crate::subscriber::handle::SubscriberHandle;
use crate::{
    Client, CloseReason, Delivery, GapReason, Message, PublishError, ReplayError, ReplayQuery,
    ReplayStatus, SubscribeError,
};

/// The hub's view of a [`Client`].
pub struct ClientFabric {
    client: Client,
    control: Arc<Mutex<Control>>,
}

/// What the feed stream carries from item to item.
struct FeedState {
    sub: crate::Subscription,
    client: Client,
    pattern: Pattern,
    control: Arc<Mutex<Control>>,
}

/// The open feed subscription, to change its patterns while the feed
/// stream reads it, and the patterns last set (a resumed feed gets them).
#[derive(Default)]
struct Control {
    current: Option<(SubscriberHandle, u64)>,
    patterns: Option<Vec<Pattern>>,
}

fn lock(c: &Mutex<Control>) -> std::sync::MutexGuard<'_, Control> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientFabric {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            control: Arc::default(),
        }
    }
}

fn convert(m: Message) -> FabricMessage {
    FabricMessage {
        topic: m.topic,
        payload: m.payload,
        origin: m.stamp.origin,
        epoch: m.stamp.epoch,
        seq: m.stamp.seq,
        timestamp_us: m.stamp.timestamp_us,
        publisher: m.stamp.publisher,
    }
}

impl From<GapReason> for GapCause {
    fn from(r: GapReason) -> Self {
        match r {
            GapReason::Expired => GapCause::Unrecoverable,
            GapReason::EpochGone => GapCause::EpochChanged,
            GapReason::ReplayFailed => GapCause::HistoryUnavailable,
        }
    }
}

impl From<PublishError> for PublishFailure {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::PayloadTooLarge { size, limit } => {
                PublishFailure::TooLarge { size, limit }
            }
            e @ (PublishError::InvalidTopic(_) | PublishError::Json(_)) => {
                PublishFailure::Refused(Box::new(e))
            }
            e @ (PublishError::OutboxFull { .. } | PublishError::Closed) => {
                PublishFailure::Unavailable(Box::new(e))
            }
        }
    }
}

impl From<ReplayError> for ReplayFailure {
    fn from(e: ReplayError) -> Self {
        ReplayFailure::Unavailable(Box::new(e))
    }
}

impl From<SubscribeError> for FeedFailure {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::InvalidPattern(p) => FeedFailure::InvalidPattern(p),
            SubscribeError::Closed => FeedFailure::Closed,
        }
    }
}

impl Fabric for ClientFabric {
    fn publish(&self, topic: String, payload: Bytes) -> BoxFuture<'_, Result<(), PublishFailure>> {
        async move {
            self.client
                .publish(&topic, payload)
                .await
                .map_err(PublishFailure::from)
        }
        .boxed()
    }

    fn replay(&self, r: ReplayRange) -> BoxFuture<'_, Result<ReplayChunk, ReplayFailure>> {
        async move {
            let query = ReplayQuery {
                origin: r.origin,
                epoch: r.epoch,
                from: r.from,
                to: r.to,
                lane: None,
                patterns: r.patterns,
            };
            let batch = self.client.replay(query).await?;
            match batch.status {
                ReplayStatus::Ok => Ok(ReplayChunk {
                    oldest: batch.oldest,
                    newest: batch.newest,
                    next: batch.next,
                    messages: batch.messages.into_iter().map(convert).collect(),
                }),
                ReplayStatus::UnknownEpoch => Err(ReplayFailure::UnknownEpoch),
                ReplayStatus::UnknownOrigin => Err(ReplayFailure::UnknownOrigin),
                ReplayStatus::Busy => Err(ReplayFailure::Busy),
                ReplayStatus::BadRequest => Err(ReplayFailure::BadRequest),
            }
        }
        .boxed()
    }

    fn feed(
        &self,
        pattern: Pattern,
    ) -> BoxFuture<'_, Result<BoxStream<'static, FabricItem>, FeedFailure>> {
        async move {
            let mut sub = self.client.subscribe(pattern.as_str()).await?;
            sub.keep_resent();
            sub.keep_watermarks().await?;
            {
                let mut c = lock(&self.control);
                c.current = Some(sub.control());
                c.patterns = None;
            }
            let state = FeedState {
                sub,
                client: self.client.clone(),
                pattern,
                control: self.control.clone(),
            };
            // State: the live subscription; on a slow-consumer close, resume
            // from its position so the hub loses nothing. Everything travels
            // in the state: cloning per item would cost the pattern's three
            // allocations and a refcount per message.
            let stream = futures::stream::unfold(Some(state), |state| async move {
                let mut st = state?;
                loop {
                    let item = match st.sub.next().await? {
                        Delivery::Message(m) if m.resent => FabricItem::Resent {
                            origin: m.stamp.origin,
                            epoch: m.stamp.epoch,
                            seq: m.stamp.seq,
                        },
                        Delivery::Message(m) => FabricItem::Message(convert(m)),
                        Delivery::Gap(g) => FabricItem::Gap {
                            origin: g.origin,
                            epoch: g.epoch,
                            first: g.first,
                            last: if g.last == u64::MAX { 0 } else { g.last },
                            reason: g.reason.into(),
                        },
                        Delivery::Watermark(w) => FabricItem::Watermark {
                            origin: w.origin,
                            epoch: w.epoch,
                            through: w.through,
                        },
                        Delivery::Closed(CloseReason::SlowConsumer { position }) => {
                            tracing::warn!("hub feed fell behind; resuming from its position");
                            st.sub = resume(&st.client, &st.pattern, position).await?;
                            reapply(&st.control, &st.sub);
                            continue;
                        }
                        Delivery::Closed(_) => return None,
                    };
                    return Some((item, Some(st)));
                }
            });
            Ok(stream.boxed())
        }
        .boxed()
    }

    fn follows_interest(&self) -> bool {
        // With several broadcasters an origin may come by more than one
        // path: no watermarks (the client's lanes rule), so no filtering.
        // A broadcaster that relays other origins (federation): no
        // watermarks for those, so no filtering either.
        self.client.broadcasters() == 1 && !self.client.relays_other_origins()
    }

    fn set_feed_patterns(
        &self,
        patterns: Vec<Pattern>,
    ) -> BoxFuture<'static, Result<FeedApplied, FeedFailure>> {
        let current = {
            let mut c = lock(&self.control);
            c.patterns = Some(patterns.clone());
            c.current.clone()
        };
        async move {
            let (handle, id) = current.ok_or(FeedFailure::Closed)?;
            let a = handle.set_patterns(id, patterns).await?;
            Ok(FeedApplied {
                origin: a.origin,
                epoch: a.epoch,
                seq: a.seq,
            })
        }
        .boxed()
    }
}

/// A resumed feed (it starts on the feed's own pattern) gets the patterns
/// last set, in the background (it only narrows what it carries).
fn reapply(control: &Mutex<Control>, sub: &crate::Subscription) {
    let (handle, id) = sub.control();
    let mut c = lock(control);
    c.current = Some((handle.clone(), id));
    if let Some(patterns) = c.patterns.clone() {
        tokio::spawn(async move {
            let _ = handle.set_patterns(id, patterns).await;
        });
    }
}

async fn resume(
    client: &Client,
    pattern: &Pattern,
    position: Position,
) -> Option<crate::Subscription> {
    let subscribed = match client.subscribe_from(pattern.as_str(), position).await {
        Ok(mut s) => {
            s.keep_resent();
            s.keep_watermarks().await.map(|()| s)
        }
        Err(e) => Err(e),
    };
    match subscribed {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "hub feed could not resume");
            None
        }
    }
}
