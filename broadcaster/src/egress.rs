//! Egress (PUB): one connection per subscriber. Its reader applies
//! subscriptions; its writer drains the subscriber's bounded queue (see
//! [`crate::subscribers`] for the full-queue policy) in large writes.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener::Conn;
use crate::subscribers::{Chunk, Control, SubscriberQueue, QUEUE_CHUNKS};
use crate::zmtp::{pong_for, ReadError, Subscription, ZmtpFrame};

/// Largest frame a subscriber may send (a subscription message).
pub(crate) const MAX_SUBSCRIPTION_FRAME: usize = 1024;
const WRITE_BUFFER: usize = 64 * 1024;

/// Serves one SUB peer.
pub(crate) async fn serve(
    conn: Conn,
    id: u64,
    control: mpsc::Sender<Control>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<(), ReadError> {
    let Conn {
        mut reader, writer, ..
    } = conn;
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    let queued = Arc::new(AtomicUsize::new(0));
    let queue = SubscriberQueue {
        tx,
        queued: queued.clone(),
    };
    let pongs = queue.clone();
    if control.send(Control::Add { id, queue }).await.is_err() {
        return Ok(());
    }
    tracker.spawn(write_loop(rx, writer, queued));
    let result = loop {
        let frame = tokio::select! {
            f = reader.next_frame() => f,
            // On shutdown the forwarder drains and closes our queue; the
            // writer flushes it. Nothing more to read.
            _ = shutdown.cancelled() => return Ok(()),
        };
        let change = match frame {
            Ok(Some(ZmtpFrame::Message { more: false, body })) => Subscription::from_message(&body),
            Ok(Some(ZmtpFrame::Message { more: true, .. })) => None,
            Ok(Some(ZmtpFrame::Command(body))) => {
                let change = Subscription::from_command(&body);
                if change.is_none() {
                    if let Some(pong) = pong_for(&body) {
                        queue_pong(&pongs, pong);
                    }
                }
                change
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        // Not a subscription: a PUB ignores its peers' other messages.
        let Some(change) = change else { continue };
        let c = match change {
            Subscription::Subscribe(prefix) => Control::Subscribe { id, prefix },
            Subscription::Cancel(prefix) => Control::Unsubscribe { id, prefix },
        };
        if control.send(c).await.is_err() {
            break Ok(());
        }
    };
    let _ = control.send(Control::Remove { id }).await;
    result
}

/// Queues a PONG through the subscriber's own queue, between whole
/// messages. If the queue is full the peer is too slow anyway: no PONG.
fn queue_pong(queue: &SubscriberQueue, pong: bytes::Bytes) {
    let bytes = pong.len();
    let chunk = Chunk {
        parts: vec![pong],
        bytes,
    };
    if queue.tx.try_send(chunk).is_ok() {
        queue.queued.fetch_add(bytes, Relaxed);
    }
}

/// Writes queued chunks; flushes whenever the queue runs empty. Ends when the
/// queue is closed (subscriber removed, or forwarder finished) or a write fails.
async fn write_loop(
    mut rx: mpsc::Receiver<Chunk>,
    writer: OwnedWriteHalf,
    queued: Arc<AtomicUsize>,
) {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, writer);
    while let Some(chunk) = rx.recv().await {
        if write_chunk(&mut w, &chunk, &queued).await.is_err() {
            return;
        }
        while let Ok(chunk) = rx.try_recv() {
            if write_chunk(&mut w, &chunk, &queued).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

async fn write_chunk(
    w: &mut BufWriter<OwnedWriteHalf>,
    chunk: &Chunk,
    queued: &AtomicUsize,
) -> std::io::Result<()> {
    for part in &chunk.parts {
        w.write_all(part).await?;
    }
    queued.fetch_sub(chunk.bytes, Relaxed);
    Ok(())
}
