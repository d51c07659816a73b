//! A connection's bounded outgoing queue: many senders (dispatch, the
//! reader's replies, a resume), one receiver (the writer), which takes
//! everything queued (up to a batch) under one lock.
//!
//! Why not tokio's `mpsc`: per frame it costs a semaphore permit, a slot in
//! a linked block list, a receiver wake-up and, when the writer takes the
//! frame, the semaphore's waiter mutex (measured at 500 k deliveries/s: 13 %
//! of a worker's CPU); and it allocates a block of 32 slots (1.5 KiB) with
//! every connection. Here a send is one uncontended lock and a push, the
//! writer is woken only when the queue turns non-empty, a batch is taken in
//! one lock (the two `VecDeque`s swap their allocations, so a steady stream
//! allocates nothing), and the queue's memory grows with what it holds.
//!
//! Full policy: `try_send` refuses a frame once `capacity` are queued (the
//! caller closes the connection, 4008); `send` (a resume) waits for room.
//! The queue closes when the receiver is dropped (sends fail; what was
//! queued is dropped, which returns any resume window permits) or when the
//! last sender is dropped (`recv_many` returns 0 once it is empty).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::AcqRel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
pub use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::Notify;

use super::writer::Outgoing;

/// Slots a drained batch keeps allocated for the next one (more is let go,
/// so a connection that once had a backlog does not keep it).
const KEEP_SLOTS: usize = 16;

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// The writer, woken when the queue turns non-empty or closes.
    rx_waker: AtomicWaker,
    /// Senders waiting for room (a resume).
    space: Notify,
    senders: AtomicUsize,
}

#[derive(Default)]
struct State {
    items: VecDeque<Outgoing>,
    rx_closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No invariant spans a panic here: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue of at most `capacity` frames.
pub fn queue(capacity: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        capacity: capacity.max(1),
        rx_waker: AtomicWaker::new(),
        space: Notify::new(),
        senders: AtomicUsize::new(1),
    });
    (QueueTx(shared.clone()), QueueRx(shared))
}

/// The sending side; clones share the queue.
pub struct QueueTx(Arc<Shared>);

impl QueueTx {
    /// Queues `item` if there is room and the writer is still there.
    pub fn try_send(&self, item: Outgoing) -> Result<(), TrySendError<Outgoing>> {
        let mut st = self.0.lock();
        if st.rx_closed {
            return Err(TrySendError::Closed(item));
        }
        if st.items.len() >= self.0.capacity {
            return Err(TrySendError::Full(item));
        }
        st.items.push_back(item);
        let first = st.items.len() == 1;
        drop(st);
        if first {
            self.0.rx_waker.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room; `Err` when the writer is gone.
    pub async fn send(&self, item: Outgoing) -> Result<(), Outgoing> {
        let mut item = item;
        loop {
            let room = self.0.space.notified();
            tokio::pin!(room);
            // Registered before the check: a drain after it wakes us.
            room.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(i)) => return Err(i),
                Err(TrySendError::Full(i)) => item = i,
            }
            room.await;
        }
    }
}

impl Clone for QueueTx {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, AcqRel);
        Self(self.0.clone())
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, AcqRel) == 1 {
            // Through the lock: a receiver checking the count under it has
            // registered its waker by the time this wakes it.
            drop(self.0.lock());
            self.0.rx_waker.wake();
        }
    }
}

/// The receiving side (the connection's writer).
pub struct QueueRx(Arc<Shared>);

impl QueueRx {
    /// Moves up to `max` queued frames into `batch` (which must be empty),
    /// waiting for one; `Ready(0)` once every sender is gone and nothing is
    /// left.
    pub fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Outgoing>,
        max: usize,
    ) -> Poll<usize> {
        debug_assert!(batch.is_empty());
        if batch.capacity() > KEEP_SLOTS {
            *batch = VecDeque::new();
        }
        let mut st = self.0.lock();
        let had = st.items.len();
        if had == 0 {
            if self.0.senders.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return Poll::Ready(0);
            }
            self.0.rx_waker.register(cx.waker());
            return Poll::Pending;
        }
        if had <= max {
            std::mem::swap(&mut st.items, batch);
        } else {
            batch.extend(st.items.drain(..max));
        }
        drop(st);
        if had >= self.0.capacity {
            self.0.space.notify_waiters();
        }
        Poll::Ready(batch.len())
    }

    /// [`QueueRx::poll_recv_many`] as a future.
    pub async fn recv_many(&mut self, batch: &mut VecDeque<Outgoing>, max: usize) -> usize {
        std::future::poll_fn(|cx| self.poll_recv_many(cx, batch, max)).await
    }

    /// One queued frame, if any (the close path).
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let mut st = self.0.lock();
        let item = st.items.pop_front();
        let was_full = item.is_some() && st.items.len() + 1 >= self.0.capacity;
        drop(st);
        if was_full {
            self.0.space.notify_waiters();
        }
        item
    }

    /// Frames queued now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().items.len()
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.rx_closed = true;
        let left = std::mem::take(&mut st.items);
        drop(st);
        // Dropped outside the lock: resume frames return their window here.
        drop(left);
        self.0.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::extract::ws::Utf8Bytes;

    use super::*;

    fn frame(i: usize) -> Outgoing {
        Outgoing::from(Utf8Bytes::from(i.to_string()))
    }

    fn text(o: &Outgoing) -> &str {
        o.frame.as_str()
    }

    #[tokio::test]
    async fn frames_come_out_in_order_in_batches_and_the_bound_holds() {
        let (tx, mut rx) = queue(100);
        for i in 0..100 {
            tx.try_send(frame(i)).unwrap();
        }
        assert!(matches!(
            tx.try_send(frame(100)),
            Err(TrySendError::Full(_))
        ));
        let mut batch = VecDeque::new();
        let mut got = Vec::new();
        while got.len() < 100 {
            let n = rx.recv_many(&mut batch, 64).await;
            assert!(n <= 64);
            got.extend(batch.drain(..).map(|o| text(&o).to_owned()));
        }
        let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
        assert_eq!(rx.len(), 0);
    }

    #[tokio::test]
    async fn the_writer_wakes_for_a_frame_and_ends_when_senders_are_gone() {
        let (tx, mut rx) = queue(8);
        let tx2 = tx.clone();
        let writer = tokio::spawn(async move {
            let mut batch = VecDeque::new();
            let mut got = 0;
            loop {
                match rx.recv_many(&mut batch, 64).await {
                    0 => return got,
                    n => {
                        got += n;
                        batch.clear();
                    }
                }
            }
        });
        for i in 0..1000 {
            while tx.try_send(frame(i)).is_err() {
                tokio::task::yield_now().await;
            }
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        tx2.try_send(frame(0)).unwrap();
        drop(tx2);
        let got = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer ended")
            .unwrap();
        assert_eq!(got, 1001);
    }

    #[tokio::test]
    async fn send_waits_for_room_and_fails_once_the_writer_is_gone() {
        let (tx, mut rx) = queue(2);
        tx.try_send(frame(0)).unwrap();
        tx.try_send(frame(1)).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(frame(2)).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room yet");
        let mut batch = VecDeque::new();
        assert_eq!(rx.recv_many(&mut batch, 64).await, 2);
        let sent = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(sent.unwrap().unwrap(), "room made by the drain");
        // Full again, then the writer goes: the waiting send fails.
        tx.try_send(frame(3)).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(frame(4)).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        let sent = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(!sent.unwrap().unwrap());
        assert!(matches!(
            tx.try_send(frame(5)),
            Err(TrySendError::Closed(_))
        ));
    }

    #[tokio::test]
    async fn a_drained_batch_lets_a_grown_allocation_go() {
        let (tx, mut rx) = queue(1000);
        for i in 0..500 {
            tx.try_send(frame(i)).unwrap();
        }
        let mut batch = VecDeque::new();
        while rx.len() > 0 {
            rx.recv_many(&mut batch, 1000).await;
            batch.clear();
        }
        tx.try_send(frame(0)).unwrap();
        rx.recv_many(&mut batch, 1000).await;
        // The big allocation went to the writer's side and was let go.
        assert!(batch.capacity() <= KEEP_SLOTS, "{}", batch.capacity());
        assert!(rx.0.lock().items.capacity() <= KEEP_SLOTS);
    }
}
