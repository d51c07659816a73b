//! Connection events: what happened to the link with the broadcaster.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fanfare_protocol::position::Position;
use futures::Stream;
use tokio::sync::broadcast;

use crate::message::Gap;

/// Something that happened to the client's link with the fabric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The subscriber hears the broadcaster (first heartbeat or message,
    /// after start or after a [`Disconnected`](ClientEvent::Disconnected)).
    Connected,
    /// Nothing (not even a heartbeat) came for the heartbeat timeout; the
    /// client reconnects with backoff.
    Disconnected {
        /// Why, in words.
        reason: String,
    },
    /// The publisher is connected to the broadcaster's ingress.
    PublisherConnected,
    /// A publish failed because the broadcaster went away; messages wait in
    /// the outbox while the publisher reconnects.
    PublisherDisconnected {
        /// Why, in words.
        reason: String,
    },
    /// Lost messages were fetched from history and delivered.
    GapRepaired {
        /// Origin broadcaster.
        origin: Arc<str>,
        /// Origin epoch.
        epoch: u64,
        /// First seq of the repaired range.
        first: u64,
        /// Last seq of the repaired range.
        last: u64,
        /// Messages recovered (and delivered to matching subscriptions).
        recovered: u64,
    },
    /// Messages are lost for good; every subscription that may have wanted
    /// them got a [`Delivery::Gap`](crate::Delivery::Gap).
    GapUnrecoverable(Gap),
    /// An origin broadcaster restarted: a new epoch. Not an error.
    BroadcasterRestarted {
        /// Origin broadcaster.
        origin: Arc<str>,
        /// The epoch we knew.
        old_epoch: u64,
        /// The new one.
        new_epoch: u64,
    },
    /// A subscription's queue was full and it was closed.
    SlowConsumer {
        /// Its pattern.
        pattern: String,
        /// Where it stood (resume with `subscribe_from`).
        position: Position,
    },
}

/// A stream of [`ClientEvent`]s from [`Client::events`](crate::Client::events).
///
/// Bounded: a reader that falls behind by more than the events capacity
/// skips the oldest events (never blocks the client). Ends when the client
/// shuts down.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = ClientEvent> + Send>>,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<ClientEvent>) -> Self {
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "events reader lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for EventStream {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}
