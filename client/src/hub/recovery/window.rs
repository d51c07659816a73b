//! A resume's window into its connection's queue: at most [`WINDOW_BYTES`]
//! of resume frames queued and not yet handed to the socket. Each frame
//! carries its share of the window (a semaphore permit inside
//! [`Outgoing`]), released when the writer takes it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Semaphore;

use super::super::connection::{Outgoing, QueueTx};

/// Bytes of resume frames a connection may have queued and not yet written.
pub const WINDOW_BYTES: usize = 256 * 1024;

/// Why a resume stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A frame waited longer than the slow-consumer cut for room.
    Slow,
    /// The connection's queue is closed.
    Gone,
}

/// Where a resume's frames go: the connection's queue, through its window.
pub struct Out {
    tx: QueueTx,
    window: Arc<Semaphore>,
    slow_cut: Duration,
}

impl Out {
    /// A window of [`WINDOW_BYTES`] into `tx`; a frame waits at most `slow_cut`.
    pub fn new(tx: QueueTx, slow_cut: Duration) -> Self {
        Self {
            tx,
            window: Arc::new(Semaphore::new(WINDOW_BYTES)),
            slow_cut,
        }
    }

    /// Queues `frame` once the window and the queue have room for it.
    pub async fn send(&self, frame: Utf8Bytes) -> Result<(), Stopped> {
        // A frame larger than the window takes all of it.
        let need = frame.len().clamp(1, WINDOW_BYTES) as u32;
        let queued = tokio::time::timeout(self.slow_cut, async {
            let permit = self
                .window
                .clone()
                .acquire_many_owned(need)
                .await
                .map_err(|_| Stopped::Gone)?;
            self.tx
                .send(Outgoing::resumed(frame, permit))
                .await
                .map_err(|_| Stopped::Gone)
        })
        .await;
        queued.unwrap_or(Err(Stopped::Slow))
    }

    /// Waits until every resume frame has been handed to the socket: the
    /// window comes back piece by piece, each piece within the slow-consumer
    /// cut (progress, as for [`Out::send`], not the whole window at once).
    pub async fn drained(&self) -> Result<(), Stopped> {
        const PIECE: usize = 16 * 1024;
        let mut back = Vec::with_capacity(WINDOW_BYTES / PIECE);
        for _ in 0..WINDOW_BYTES / PIECE {
            let piece = tokio::time::timeout(self.slow_cut, self.window.acquire_many(PIECE as u32));
            match piece.await {
                Ok(Ok(p)) => back.push(p),
                Ok(Err(_)) => return Err(Stopped::Gone),
                Err(_) => return Err(Stopped::Slow),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_window_bounds_what_a_resume_queues_ahead_of_the_writer() {
        let (tx, mut rx) = super::super::super::connection::queue(100_000);
        let out = Out::new(tx, Duration::from_millis(50));
        let frame = Utf8Bytes::from("x".repeat(1024));
        for _ in 0..WINDOW_BYTES / 1024 {
            out.send(frame.clone()).await.unwrap();
        }
        // Nothing written: the next frame waits for the window, then is slow.
        assert_eq!(out.send(frame.clone()).await, Err(Stopped::Slow));
        assert_eq!(out.drained().await, Err(Stopped::Slow));
        // The writer hands one frame over: room for one more.
        drop(rx.try_recv());
        out.send(frame.clone()).await.unwrap();
        while rx.try_recv().is_some() {}
        assert_eq!(out.drained().await, Ok(()));
    }
}
