//! Runs a connection's reader and writer in one task, each polled only when
//! its own waker fired.
//!
//! A plain `join` re-polls both futures on every wake-up of the task: each
//! queued event (a writer wake-up) then also cost a socket read attempt in
//! the reader, with tungstenite zeroing its read buffer (measured: more than
//! half of a worker's instructions per delivery). Here each side gets a
//! waker of its own that sets its bit and wakes the task; the task polls
//! only the sides whose bit is set. The futures stay inline in the task (no
//! allocation per side; three small `Arc`s per connection).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::AcqRel};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

const READER: u8 = 1;
const WRITER: u8 = 2;

struct Flags {
    ready: AtomicU8,
    task: AtomicWaker,
}

struct SideWaker {
    flags: Arc<Flags>,
    bit: u8,
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flags.ready.fetch_or(self.bit, AcqRel);
        self.flags.task.wake();
    }
}

/// Polls `reader` and `writer` to completion; returns the writer's output.
/// Both are pinned by the caller, so this future holds only references.
pub(super) async fn run_both(
    mut reader: Pin<&mut impl Future<Output = ()>>,
    mut writer: Pin<&mut impl Future<Output = bool>>,
) -> bool {
    let flags = Arc::new(Flags {
        ready: AtomicU8::new(READER | WRITER),
        task: AtomicWaker::new(),
    });
    let side = |bit| {
        Waker::from(Arc::new(SideWaker {
            flags: flags.clone(),
            bit,
        }))
    };
    let (reader_waker, writer_waker) = (side(READER), side(WRITER));
    let mut reader_done = false;
    let mut closed = None;
    poll_fn(|cx| {
        // Register first, then take the bits: a wake-up after the swap
        // wakes this registration.
        flags.task.register(cx.waker());
        let ready = flags.ready.swap(0, AcqRel);
        if !reader_done
            && ready & READER != 0
            && reader
                .as_mut()
                .poll(&mut Context::from_waker(&reader_waker))
                .is_ready()
        {
            reader_done = true;
        }
        if closed.is_none() && ready & WRITER != 0 {
            if let Poll::Ready(c) = writer
                .as_mut()
                .poll(&mut Context::from_waker(&writer_waker))
            {
                closed = Some(c);
            }
        }
        match (reader_done, closed) {
            (true, Some(c)) => Poll::Ready(c),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::time::Duration;

    use super::*;

    /// The reader is not polled again when only the writer is woken.
    #[tokio::test]
    async fn a_writer_wakeup_does_not_poll_the_reader() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(16);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let counted = polls.clone();
        let mut stop_rx = stop_rx;
        let reader = poll_fn(move |cx| {
            counted.fetch_add(1, Relaxed);
            Pin::new(&mut stop_rx).poll(cx).map(|_| ())
        });
        let writer = async move {
            let mut n = 0;
            while let Some(v) = rx.recv().await {
                n += v;
                if n >= 100 {
                    break;
                }
            }
            true
        };
        let run = tokio::spawn(async move {
            let (reader, writer) = (std::pin::pin!(reader), std::pin::pin!(writer));
            run_both(reader, writer).await
        });
        for _ in 0..100 {
            tx.send(1).await.unwrap();
            tokio::task::yield_now().await;
        }
        stop_tx.send(()).unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
        assert!(closed);
        // Polled once at the start and once when stopped, not per message.
        assert!(
            polls.load(Relaxed) <= 3,
            "reader polled {} times",
            polls.load(Relaxed)
        );
    }
}
