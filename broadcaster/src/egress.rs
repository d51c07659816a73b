//! Egress (PUB): one connection per subscriber. Its reader applies
//! subscriptions; its writer drains the subscriber's bounded queue (see
//! [`crate::subscribers`] for the full-queue policy) in large writes.
//!
//! A subscriber whose socket takes no bytes for `write_stall` while data is
//! queued to it is disconnected (`write_stall_disconnects_total{socket="pub"}`):
//! its queue is bounded anyway, this bounds how long a dead peer keeps it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener::Conn;
use crate::liveness::Activity;
use crate::metrics::Metrics;
use crate::subscribers::{Chunk, Control, SubscriberQueue, QUEUE_CHUNKS};
use crate::zmtp::{pong_for, ReadError, SocketKind, Subscription, ZmtpFrame};

/// Largest frame a subscriber may send (a subscription message).
pub(crate) const MAX_SUBSCRIPTION_FRAME: usize = 1024;
const WRITE_BUFFER: usize = 64 * 1024;

/// What every subscriber connection shares.
pub(crate) struct EgressContext {
    /// Subscription changes to the forwarder.
    pub(crate) control: mpsc::Sender<Control>,
    /// Broadcaster shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Writer tasks run here.
    pub(crate) tracker: TaskTracker,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Longest time a write may make no progress.
    pub(crate) write_stall: Duration,
}

/// Serves one SUB peer.
pub(crate) async fn serve(conn: Conn, id: u64, ctx: EgressContext) -> Result<(), ReadError> {
    let Conn {
        mut reader,
        writer: half,
        activity,
        ..
    } = conn;
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    let queued = Arc::new(AtomicUsize::new(0));
    let queue = SubscriberQueue {
        tx,
        queued: queued.clone(),
    };
    let pongs = queue.clone();
    let control = ctx.control;
    if control.send(Control::Add { id, queue }).await.is_err() {
        return Ok(());
    }
    let writer = Writer {
        queued,
        activity: activity.clone(),
        stall: ctx.write_stall,
        metrics: ctx.metrics,
    };
    ctx.tracker.spawn(writer.run(rx, half));
    let stop = activity.stop().clone();
    let result = loop {
        let frame = tokio::select! {
            f = reader.next_frame() => f,
            // On shutdown the forwarder drains and closes our queue; the
            // writer flushes it. Nothing more to read.
            _ = ctx.shutdown.cancelled() => return Ok(()),
            // Evicted, or the writer gave up on a stalled peer.
            _ = stop.cancelled() => break Ok(()),
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
        // Copied out of the 64 KiB read chunk, which a slice would pin.
        let c = match change {
            Subscription::Subscribe(p) if p.starts_with(crate::federation::INTEREST_PREFIX) => {
                Control::Interest {
                    id,
                    body: Bytes::copy_from_slice(&p[crate::federation::INTEREST_PREFIX.len()..]),
                }
            }
            Subscription::Cancel(p) if p.starts_with(crate::federation::INTEREST_PREFIX) => {
                continue;
            }
            Subscription::Subscribe(p) => Control::Subscribe {
                id,
                prefix: Bytes::copy_from_slice(&p),
            },
            Subscription::Cancel(p) => Control::Unsubscribe {
                id,
                prefix: Bytes::copy_from_slice(&p),
            },
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
fn queue_pong(queue: &SubscriberQueue, pong: Bytes) {
    let bytes = pong.len();
    let chunk = Chunk {
        parts: vec![pong],
        bytes,
    };
    if queue.tx.try_send(chunk).is_ok() {
        queue.queued.fetch_add(bytes, Relaxed);
    }
}

/// The writing side of one subscriber.
struct Writer {
    queued: Arc<AtomicUsize>,
    activity: Arc<Activity>,
    stall: Duration,
    metrics: Arc<Metrics>,
}

/// Why the writer stopped early.
enum WriteEnd {
    /// The socket failed (peer gone).
    Failed,
    /// No byte was taken for `stall`.
    Stalled,
}

impl Writer {
    /// Writes queued chunks; flushes whenever the queue runs empty. Ends when
    /// the queue is closed (subscriber removed, or forwarder finished), a
    /// write fails or stalls, or the connection is stopped; an early end
    /// stops the connection (its reader then removes the subscriber).
    async fn run(self, mut rx: mpsc::Receiver<Chunk>, half: OwnedWriteHalf) {
        let mut w = BufWriter::with_capacity(WRITE_BUFFER, half);
        let stop = self.activity.stop().clone();
        let end = loop {
            let chunk = tokio::select! {
                c = rx.recv() => c,
                () = stop.cancelled() => return,
            };
            let Some(chunk) = chunk else {
                let _ = tokio::time::timeout(self.stall, async {
                    let _ = w.flush().await;
                    let _ = w.shutdown().await;
                })
                .await;
                return;
            };
            if let Err(e) = self.write_chunk(&mut w, &chunk).await {
                break e;
            }
            let mut failed = None;
            while let Ok(chunk) = rx.try_recv() {
                if let Err(e) = self.write_chunk(&mut w, &chunk).await {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break e;
            }
            if let Err(e) = self.progress(w.flush()).await {
                break e;
            }
        };
        if let WriteEnd::Stalled = end {
            self.metrics.socket(SocketKind::Pub).write_stall.inc();
            if self
                .metrics
                .log_allowed(crate::metrics::LogKind::Connection)
            {
                tracing::warn!(stall = ?self.stall, "subscriber took no bytes; disconnected");
            }
        }
        stop.cancel();
    }

    async fn write_chunk(
        &self,
        w: &mut BufWriter<OwnedWriteHalf>,
        chunk: &Chunk,
    ) -> Result<(), WriteEnd> {
        for part in &chunk.parts {
            let mut rest = &part[..];
            while !rest.is_empty() {
                let n = self.progress(w.write(rest)).await?;
                if n == 0 {
                    return Err(WriteEnd::Failed);
                }
                rest = &rest[n..];
            }
        }
        self.queued.fetch_sub(chunk.bytes, Relaxed);
        Ok(())
    }

    /// One write step, which must finish within `stall`; success is progress.
    async fn progress<T>(
        &self,
        step: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, WriteEnd> {
        match tokio::time::timeout(self.stall, step).await {
            Ok(Ok(v)) => {
                self.activity.touch();
                Ok(v)
            }
            Ok(Err(_)) => Err(WriteEnd::Failed),
            Err(_) => Err(WriteEnd::Stalled),
        }
    }
}
