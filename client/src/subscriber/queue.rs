//! One subscription's bounded queue, both ends: the subscriber task's
//! [`Queue`] and the [`Parts`] a [`Subscription`](super::Subscription) is
//! made of.
//!
//! The queue holds `subscription_capacity` deliveries. The subscriber task
//! only ever `try_send`s into it (a full queue closes that subscription as
//! a slow consumer, see `registry`); catch-up tasks `send().await` (they
//! wait for the application). `taken` counts what the application took, so
//! the task can tell an application that reads slowly from one that stopped.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::message::{CloseReason, Delivery};

/// The subscriber task's end of a subscription's queue.
pub(crate) struct Queue {
    pub tx: mpsc::Sender<Delivery>,
    /// Items the application has taken from the queue.
    pub taken: Arc<AtomicU64>,
}

/// What the subscriber task hands back for a new subscription.
pub(crate) struct Parts {
    pub id: u64,
    pub rx: mpsc::Receiver<Delivery>,
    pub reason: oneshot::Receiver<CloseReason>,
    pub taken: Arc<AtomicU64>,
}

/// Opens the queue of subscription `id`: the task's end, where to send the
/// reason it closes for, and the subscription's parts.
pub(crate) fn open(id: u64, capacity: usize) -> (Queue, oneshot::Sender<CloseReason>, Parts) {
    let (tx, rx) = mpsc::channel(capacity);
    let (reason_tx, reason) = oneshot::channel();
    let taken = Arc::new(AtomicU64::new(0));
    let queue = Queue {
        tx,
        taken: taken.clone(),
    };
    let parts = Parts {
        id,
        rx,
        reason,
        taken,
    };
    (queue, reason_tx, parts)
}
