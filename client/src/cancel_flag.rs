//! A lock-free view of a [`CancellationToken`] for a loop that polls it on
//! every wake-up.
//!
//! `CancellationToken::cancelled()` takes the token's mutex and its notify
//! list's lock each time it is polled; a loop that wakes once per message
//! (the subscriber task, the hub's feed) polled it once per message. A
//! [`CancelFlag`] is one atomic flag and an [`AtomicWaker`]: a small watcher
//! task waits on the token once, then sets the flag and wakes the loop.
//! One task may wait on a flag (the waker is single-slot).
//!
//! [`WakeFlag`] is that flag and waker alone; a hub connection's end
//! (`ConnShared`) is one too, set by whoever ends the connection and waited
//! on by its writer.

use std::future::Future;
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Release},
};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

/// A flag that stays set once set, and wakes the one task that waits on it.
#[derive(Debug, Default)]
pub(crate) struct WakeFlag {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl WakeFlag {
    /// Sets the flag and wakes the waiting task.
    pub(crate) fn set(&self) {
        self.set.store(true, Release);
        self.waker.wake();
    }

    /// Is it set? One atomic load.
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Acquire)
    }

    /// Ready once set; else registers the caller (one task only) to be woken
    /// then. No lock: a waker registration and an atomic load.
    pub(crate) fn poll_set(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register first, then look: a set between the two still wakes.
        self.waker.register(cx.waker());
        if self.is_set() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Set once the watched token is cancelled. Dropping it ends its watcher.
#[derive(Debug)]
pub(crate) struct CancelFlag {
    inner: Arc<WakeFlag>,
    /// Cancelled on drop, so the watcher does not outlive the flag.
    dropped: CancellationToken,
}

impl CancelFlag {
    /// Watches `token` (spawns its watcher: call inside a tokio runtime).
    pub(crate) fn watch(token: &CancellationToken) -> Self {
        let inner = Arc::new(WakeFlag::default());
        let dropped = CancellationToken::new();
        let (watched, gone, set) = (token.clone(), dropped.clone(), inner.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = watched.cancelled() => set.set(),
                _ = gone.cancelled() => {}
            }
        });
        Self { inner, dropped }
    }

    /// Ready once the token is cancelled ([`WakeFlag::poll_set`]), to poll
    /// again and again in a `select!` (it is `Unpin`).
    pub(crate) fn cancelled(&self) -> impl Future<Output = ()> + Unpin + '_ {
        std::future::poll_fn(move |cx| self.inner.poll_set(cx))
    }
}

impl Drop for CancelFlag {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_cancel_wakes_the_waiting_loop() {
        let token = CancellationToken::new();
        let flag = Arc::new(CancelFlag::watch(&token));
        let waiter = tokio::spawn({
            let flag = flag.clone();
            async move { flag.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing cancelled yet");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is woken")
            .expect("the waiter did not panic");
        // Once set, it stays ready.
        tokio::time::timeout(Duration::from_secs(5), flag.cancelled())
            .await
            .expect("ready at once");
    }

    #[tokio::test]
    async fn dropping_the_flag_ends_its_watcher() {
        let token = CancellationToken::new();
        let flag = CancelFlag::watch(&token);
        let gone = flag.dropped.clone();
        drop(flag);
        tokio::time::timeout(Duration::from_secs(5), gone.cancelled())
            .await
            .expect("the drop signals the watcher");
        assert!(!token.is_cancelled(), "the watched token is left alone");
    }
}
