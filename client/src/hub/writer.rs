//! The writer of one connection: drains its bounded queue into the socket,
//! writing every frame already queued (up to [`BATCH`]) before one flush,
//! pings on an interval, and ends with the close frame of the connection's
//! [`CloseCause`] (within the close timeout).

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures::{Sink, SinkExt};
use tokio::sync::mpsc;

use super::metrics::CloseCause;
use super::registry::ConnShared;
use super::HubInner;

/// Most frames written before one flush.
pub const BATCH: usize = 64;

/// Runs until the connection is cancelled or the socket fails.
pub async fn write_loop<Si: Sink<Message> + Unpin>(
    mut sink: Si,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    hub: &HubInner,
    shared: &ConnShared,
) {
    let o = &hub.options;
    let mut ping = tokio::time::interval(o.keepalive_interval);
    ping.tick().await;
    loop {
        let first = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            f = rx.recv() => match f {
                Some(f) => Message::Text(f),
                None => break,
            },
            _ = ping.tick() => Message::Ping(Bytes::new()),
        };
        let written = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            r = write_batch(&mut sink, first, &mut rx) => r,
        };
        match written {
            Ok(n) => {
                hub.metrics.frames_out.fetch_add(n, Relaxed);
            }
            Err(()) => return,
        }
    }
    let (code, reason) = shared
        .cause()
        .map(CloseCause::close_frame)
        .unwrap_or((1000, "closed"));
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let drain = !matches!(shared.cause(), Some(CloseCause::SlowConsumer) | None);
    let _ = tokio::time::timeout(o.close_timeout, async {
        // Errors explaining the close go out before it; a slow consumer's
        // backlog does not.
        while let (true, Ok(f)) = (drain, rx.try_recv()) {
            if sink.feed(Message::Text(f)).await.is_err() {
                return;
            }
        }
        if sink.send(close).await.is_ok() {
            let _ = sink.close().await;
        }
    })
    .await;
}

async fn write_batch<Si: Sink<Message> + Unpin>(
    sink: &mut Si,
    first: Message,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
) -> Result<u64, ()> {
    sink.feed(first).await.map_err(|_| ())?;
    let mut n = 1;
    while n < BATCH as u64 {
        match rx.try_recv() {
            Ok(f) => {
                sink.feed(Message::Text(f)).await.map_err(|_| ())?;
                n += 1;
            }
            Err(_) => break,
        }
    }
    sink.flush().await.map_err(|_| ())?;
    Ok(n)
}
