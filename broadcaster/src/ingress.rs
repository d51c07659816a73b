//! Ingress (PULL): reads `[topic, payload]` / `[topic, meta, payload]`,
//! validates, and hands batches to the forwarder.
//!
//! Queue policy: the channel to the forwarder is bounded; when it is full the
//! connection stops reading, TCP pushes back and the publisher's PUSH socket
//! blocks at its high-water mark — ingress never drops an accepted message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::{meta::MetaRef, topic};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::listener::Conn;
use crate::metrics::{Metrics, Reject};
use crate::zmtp::ReadError;

/// Most messages per batch handed to the forwarder.
const MAX_BATCH: usize = 512;
/// During shutdown, a connection is drained until it is quiet this long.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// A validated ingress message. Frames are zero-copy slices of the read buffer.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    /// Topic (valid UTF-8, validated shape).
    pub(crate) topic: Bytes,
    /// Publisher metadata frame, if sent.
    pub(crate) meta: Option<Bytes>,
    /// Payload.
    pub(crate) payload: Bytes,
}

/// Serves one PUSH peer until it leaves, fails, or shutdown has drained it.
pub(crate) async fn serve(
    mut conn: Conn,
    tx: mpsc::Sender<Vec<Incoming>>,
    max_payload: usize,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), ReadError> {
    let peer = conn.peer.to_string();
    let stop = conn.activity.stop().clone();
    let mut frames = Vec::with_capacity(4);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Never wait on the network with accepted messages held back.
        let buffered = conn.reader.has_buffered_message();
        if !buffered && !flush(&tx, &mut batch, &metrics).await {
            break;
        }
        // A message already buffered is taken without a `select!`: no
        // cancellation futures built and dropped per message. Shutdown and
        // eviction are noticed when the buffer runs dry (≤ 64 KiB later).
        let read = conn.reader.next_message(&mut frames, 3);
        let msg = if buffered {
            read.await
        } else if shutdown.is_cancelled() {
            // Draining: take what the peer already sent, stop once it is quiet.
            match tokio::time::timeout(DRAIN_QUIET, read).await {
                Ok(r) => r,
                Err(_) => Ok(None),
            }
        } else {
            tokio::select! {
                r = read => r,
                _ = shutdown.cancelled() => continue,
                // Evicted at the cap (it was idle): forward what it sent, leave.
                _ = stop.cancelled() => break,
            }
        };
        let count = match msg {
            Ok(Some(0)) => {
                if let Some(pong) = conn.reader.take_pong() {
                    conn.writer.write_all(&pong).await?;
                }
                continue;
            }
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => {
                flush(&tx, &mut batch, &metrics).await;
                return Err(e);
            }
        };
        match check(&frames, count, max_payload) {
            Ok(m) => batch.push(m),
            Err(why) => metrics.reject(why, &peer),
        }
        if batch.len() >= MAX_BATCH && !flush(&tx, &mut batch, &metrics).await {
            break;
        }
    }
    flush(&tx, &mut batch, &metrics).await;
    Ok(())
}

/// Counts and sends the batch; false if the forwarder is gone.
async fn flush(
    tx: &mpsc::Sender<Vec<Incoming>>,
    batch: &mut Vec<Incoming>,
    metrics: &Metrics,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    // Counted per batch, not per message (one atomic add each).
    metrics.ingress_messages.inc_by(batch.len() as u64);
    let bytes: usize = batch.iter().map(|m| m.payload.len()).sum();
    metrics.ingress_bytes.inc_by(bytes as u64);
    // Size the next batch like this one: busy peers get big batches, quiet
    // peers don't pay for 512 empty slots per message.
    let hint = batch.len().next_power_of_two().min(MAX_BATCH);
    let full = std::mem::replace(batch, Vec::with_capacity(hint));
    tx.send(full).await.is_ok()
}

/// Validates one message's frames.
fn check(frames: &[Bytes], count: usize, max_payload: usize) -> Result<Incoming, Reject> {
    let (topic_f, meta, payload) = match (count, frames) {
        (2, [t, p]) => (t, None, p),
        (3, [t, m, p]) => (t, Some(m), p),
        _ => return Err(Reject::FrameCount),
    };
    match topic::validate(topic_f) {
        Ok(_) => {}
        Err(topic::TopicError::Reserved) => return Err(Reject::ReservedTopic),
        Err(_) => return Err(Reject::BadTopic),
    }
    if payload.len() > max_payload {
        return Err(Reject::OversizePayload);
    }
    if let Some(m) = meta {
        MetaRef::decode(m).map_err(|_| Reject::BadMeta)?;
    }
    Ok(Incoming {
        topic: topic_f.clone(),
        meta: meta.cloned(),
        payload: payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn validation() {
        assert!(check(&[b(b"a.b"), b(b"x")], 2, 10).is_ok());
        let meta = b(&fanfare_protocol::meta::encode("w", b"", 1));
        assert!(check(&[b(b"a.b"), meta, b(b"x")], 3, 10).is_ok());
        assert_eq!(check(&[b(b"a.b")], 1, 10).unwrap_err(), Reject::FrameCount);
        assert_eq!(
            check(&[b(b"a"), b(b"b"), b(b"c")], 4, 10).unwrap_err(),
            Reject::FrameCount
        );
        assert_eq!(
            check(&[b(b""), b(b"x")], 2, 10).unwrap_err(),
            Reject::BadTopic
        );
        assert_eq!(
            check(&[b(&[0xff]), b(b"x")], 2, 10).unwrap_err(),
            Reject::BadTopic
        );
        assert_eq!(
            check(&[b(b"_fanfare.hb.x"), b(b"x")], 2, 10).unwrap_err(),
            Reject::ReservedTopic
        );
        assert_eq!(
            check(&[b(b"a"), b(&[0; 11])], 2, 10).unwrap_err(),
            Reject::OversizePayload
        );
        assert_eq!(
            check(&[b(b"a"), b(b"zz"), b(b"x")], 3, 10).unwrap_err(),
            Reject::BadMeta
        );
    }
}
