//! [`SubscriberHandle`]: what `Client` and every `Subscription` hold to talk
//! to the subscriber task.
//!
//! The command queue is bounded (`COMMAND_QUEUE` in `task`): `subscribe`
//! waits for room; a dropped `Subscription` unsubscribes with `try_send`
//! (when the queue is full, the task still notices the closed subscription
//! queue at its next delivery or sweep).

use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use tokio::sync::{mpsc, oneshot, watch};

use super::queue::Parts;
use super::registry::PatternSet;
use crate::error::SubscribeError;
use crate::message::{Mark, PatternsApplied};

/// What handles (and catch-up tasks) ask of the subscriber task.
pub(crate) enum Command {
    /// A new subscription; with `since`, replay what came after it first.
    Subscribe {
        pattern: Pattern,
        since: Option<Position>,
        reply: oneshot::Sender<Parts>,
    },
    /// A `Subscription` was dropped.
    Unsubscribe { id: u64 },
    /// A `Subscription` asks for [`Delivery::Watermark`](crate::Delivery) items.
    Watermarks { id: u64 },
    /// A `Subscription` matches this set from now on (built by the caller).
    SetPatterns {
        id: u64,
        set: Box<PatternSet>,
        reply: oneshot::Sender<PatternsApplied>,
    },
    /// A catch-up task delivered history up to these marks.
    CatchUpDone {
        id: u64,
        marks: Vec<(Arc<str>, Mark)>,
    },
}

/// Cloneable handle to the subscriber task.
#[derive(Clone, Debug)]
pub(crate) struct SubscriberHandle {
    commands: mpsc::Sender<Command>,
    heard: watch::Receiver<bool>,
    relayed: Arc<std::sync::atomic::AtomicBool>,
}

impl SubscriberHandle {
    pub(super) fn new(
        commands: mpsc::Sender<Command>,
        heard: watch::Receiver<bool>,
        relayed: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            commands,
            heard,
            relayed,
        }
    }

    /// Did a heartbeat or message of an origin other than the
    /// broadcaster's own come (it relays others)?
    pub(crate) fn relays_others(&self) -> bool {
        self.relayed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Registers a subscription (catching up from `since` first, if given)
    /// and returns what its `Subscription` is made of.
    pub(crate) async fn subscribe(
        &self,
        pattern: Pattern,
        since: Option<Position>,
    ) -> Result<Parts, SubscribeError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Subscribe {
            pattern,
            since,
            reply,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| SubscribeError::Closed)?;
        rx.await.map_err(|_| SubscribeError::Closed)
    }

    /// Asks for watermarks on subscription `id`.
    pub(crate) async fn want_watermarks(&self, id: u64) -> Result<(), SubscribeError> {
        self.commands
            .send(Command::Watermarks { id })
            .await
            .map_err(|_| SubscribeError::Closed)
    }

    /// Sets the patterns of subscription `id`; resolves once they apply.
    pub(crate) async fn set_patterns(
        &self,
        id: u64,
        patterns: Vec<Pattern>,
    ) -> Result<PatternsApplied, SubscribeError> {
        let (reply, rx) = oneshot::channel();
        // Built here, in the caller's task, not in the subscriber task.
        let set = Box::new(PatternSet::new(&patterns));
        self.commands
            .send(Command::SetPatterns { id, set, reply })
            .await
            .map_err(|_| SubscribeError::Closed)?;
        rx.await.map_err(|_| SubscribeError::Closed)
    }

    /// Ends subscription `id` (without waiting; see the module docs).
    pub(crate) fn unsubscribe(&self, id: u64) {
        let _ = self.commands.try_send(Command::Unsubscribe { id });
    }

    /// True while the broadcaster is heard (heartbeats or messages).
    pub(crate) fn is_heard(&self) -> bool {
        *self.heard.borrow()
    }

    /// Waits (at most `limit`) until the broadcaster is heard. False on
    /// timeout or when the task has stopped.
    pub(crate) async fn wait_heard(&self, limit: Duration) -> bool {
        let mut heard = self.heard.clone();
        let wait = async { heard.wait_for(|h| *h).await.is_ok() };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }
}
