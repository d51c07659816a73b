//! The writer of one connection: drains its bounded queue into the socket,
//! writing every frame already queued (up to [`BATCH`]) before one flush,
//! pings on an interval, and ends with the close frame of the connection's
//! [`CloseCause`] (within the close timeout).
//!
//! Each live event's stamp time travels with its frame ([`Outgoing`]); the
//! writer observes stamp → hand-over to the socket in
//! `fanfare_hub_delivery_lag_seconds` (one clock read per batch, atomics).

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures::{Sink, SinkExt};
use std::collections::VecDeque;

use super::super::metrics::HubMetrics;
use super::super::HubInner;
use super::{CloseCause, ConnShared, QueueRx};

/// One frame in a connection's queue (48 bytes: the queue and the writer's
/// batch keep up to 16 slots each between batches, so its size is
/// per-connection memory).
#[derive(Debug)]
pub struct Outgoing {
    /// The text frame, shared with every other connection it goes to.
    pub frame: Utf8Bytes,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A reply or a recovered event: not counted as delivery lag.
    Other,
    /// A live event stamped at this time (µs since the Unix epoch).
    Live(u64),
    /// A resume frame's share of its connection's resume window: released
    /// when the writer hands the frame to the socket (the resume streams
    /// through the queue at most a window of bytes ahead of the writer).
    /// Boxed to keep every queue slot small; held only for its drop.
    Resumed {
        _window: Box<tokio::sync::OwnedSemaphorePermit>,
    },
    /// The answer to a browser's ping: a pong with its payload (boxed to
    /// keep every queue slot small; `frame` is empty).
    Pong(Box<Bytes>),
}

impl Outgoing {
    /// A live event frame stamped at `stamp_us`.
    pub fn live(frame: Utf8Bytes, stamp_us: u64) -> Self {
        Self {
            frame,
            kind: Kind::Live(stamp_us),
        }
    }

    /// A frame of a resume, holding `window` until it is written.
    pub fn resumed(frame: Utf8Bytes, window: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self {
            frame,
            kind: Kind::Resumed {
                _window: Box::new(window),
            },
        }
    }

    /// The pong answering a ping that carried `payload`.
    pub fn pong(payload: Bytes) -> Self {
        Self {
            frame: Utf8Bytes::from_static(""),
            kind: Kind::Pong(Box::new(payload)),
        }
    }

    /// The websocket message this queue slot is.
    fn into_message(self) -> Message {
        match self.kind {
            Kind::Pong(payload) => Message::Pong(*payload),
            _ => Message::Text(self.frame),
        }
    }

    /// Stamp time of a live event; `None` for replies and recovered events.
    pub fn live_stamp_us(&self) -> Option<u64> {
        match self.kind {
            Kind::Live(t) => Some(t),
            _ => None,
        }
    }
}

impl From<Utf8Bytes> for Outgoing {
    fn from(frame: Utf8Bytes) -> Self {
        Self {
            frame,
            kind: Kind::Other,
        }
    }
}

/// Most frames written before one flush.
pub const BATCH: usize = 64;

/// How long a slow consumer's close frame may wait behind what its socket
/// still holds (it is read if the browser reads again by then).
pub const SLOW_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs until the connection is cancelled or the socket fails. Returns true
/// when the close frame was written.
pub async fn write_loop<Si: Sink<Message> + Unpin>(
    mut sink: Si,
    mut rx: QueueRx,
    hub: &HubInner,
    shared: &ConnShared,
) -> bool {
    let o = &hub.options;
    let mut ping = tokio::time::interval(o.keepalive_interval);
    ping.tick().await;
    // The end of the connection, waited on without a lock (the token's
    // future takes two per poll): polled whenever the queue is empty or the
    // socket blocks, so an end is seen at once; while frames keep coming
    // the flag is checked once per batch instead.
    let mut cancelled = std::future::poll_fn(|cx| shared.poll_ended(cx));
    // The frames taken from the queue and not yet handed to the socket.
    let mut batch = VecDeque::new();
    while !shared.is_ended() {
        let frames = tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, BATCH) => match n {
                0 => break,
                _ => true,
            },
            _ = &mut cancelled => break,
            _ = ping.tick() => false,
        };
        let written = tokio::select! {
            biased;
            r = write_batch(&mut sink, frames, &mut batch, &hub.metrics) => r,
            _ = &mut cancelled => break,
        };
        match written {
            Ok(n) => {
                hub.metrics.frames_out.inc_by(n);
            }
            Err(()) => return false,
        }
    }
    // Boxed: the close's state (its timeout and writes) is allocated once,
    // when the connection ends, not inline in every connection's task.
    Box::pin(close(sink, batch, rx, o, shared)).await
}

/// Sends what explains the close (not a slow consumer's backlog) and the
/// close frame of the connection's cause, within the close timeout.
async fn close<Si: Sink<Message> + Unpin>(
    mut sink: Si,
    mut batch: VecDeque<Outgoing>,
    mut rx: QueueRx,
    o: &super::super::HubOptions,
    shared: &ConnShared,
) -> bool {
    let (code, reason) = shared
        .cause()
        .map(CloseCause::close_frame)
        .unwrap_or((1000, "closed"));
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let drain = !matches!(shared.cause(), Some(CloseCause::SlowConsumer) | None);
    // A slow consumer's close frame waits behind what its socket holds.
    let wait = match shared.cause() {
        Some(CloseCause::SlowConsumer) => SLOW_CLOSE_WAIT.min(o.close_timeout),
        _ => o.close_timeout,
    };
    let sent = tokio::time::timeout(wait, async {
        // Errors explaining the close go out before it; a slow consumer's
        // backlog does not.
        while let Some(f) = drain
            .then(|| batch.pop_front().or_else(|| rx.try_recv()))
            .flatten()
        {
            if sink.feed(f.into_message()).await.is_err() {
                return false;
            }
        }
        if sink.send(close).await.is_ok() {
            let _ = sink.close().await;
            return true;
        }
        false
    })
    .await;
    matches!(sent, Ok(true))
}

/// Writes the frames of `batch` (taken from the queue), or a ping when
/// `frames` is false, then flushes once.
async fn write_batch<Si: Sink<Message> + Unpin>(
    sink: &mut Si,
    frames: bool,
    batch: &mut VecDeque<Outgoing>,
    metrics: &HubMetrics,
) -> Result<u64, ()> {
    let now_us = fanfare_protocol::stamp::now_us();
    let hand_over = |f: Outgoing| {
        if let Some(stamp_us) = f.live_stamp_us() {
            metrics
                .delivery_lag
                .observe_us(now_us.saturating_sub(stamp_us));
        }
        f.into_message()
    };
    if !frames {
        sink.feed(Message::Ping(Bytes::new()))
            .await
            .map_err(|_| ())?;
    }
    let n = batch.len().max(1) as u64;
    while let Some(f) = batch.pop_front() {
        sink.feed(hand_over(f)).await.map_err(|_| ())?;
    }
    sink.flush().await.map_err(|_| ())?;
    Ok(n)
}
