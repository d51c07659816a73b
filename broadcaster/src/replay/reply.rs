//! Writing a replay reply: streamed in chunks as it is encoded, every write
//! under a deadline, against a global budget of in-flight reply bytes.
//!
//! A reply's messages are refcount clones of history (no payload copy); only
//! frame headers and small bodies are copied, into one chunk of at most
//! [`CHUNK`] bytes at a time. A peer that stops reading stalls a write: after
//! the per-write deadline (or the whole-reply deadline) the connection is
//! dropped, which releases the reply and its in-flight bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::replay::ReplyHeader;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::metrics::CountGauge;
use crate::zmtp::{encode_frame_header, MAX_FRAME_HEADER};

/// Largest write: frames are gathered into chunks of this size, and larger
/// bodies are written in slices of it, each under the per-write deadline.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Slowest reader a reply waits for: a reply of `n` bytes must be written
/// within `write_timeout + n / MIN_RATE` seconds, whatever each write does.
pub(crate) const MIN_RATE: u64 = 1024 * 1024;

/// The global budget of bytes held by replies being written.
#[derive(Debug)]
pub(crate) struct InFlight {
    cap: usize,
    used: AtomicUsize,
    gauge: CountGauge,
}

/// Bytes of [`InFlight`] held by one reply until it is dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    pool: Arc<InFlight>,
    bytes: usize,
}

impl InFlight {
    /// A budget of `cap` bytes, reported in `gauge`.
    pub(crate) fn new(cap: usize, gauge: CountGauge) -> Arc<Self> {
        Arc::new(Self {
            cap,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// Takes `bytes` (at most the whole budget, so one reply larger than the
    /// budget still goes when it is alone), or `None` when they do not fit.
    pub(crate) fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let bytes = bytes.min(self.cap);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|&t| t <= self.cap)
            })
            .ok()?;
        self.gauge.inc_by(bytes as u64);
        Some(Reservation {
            pool: self.clone(),
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.pool.gauge.dec_by(self.bytes as u64);
    }
}

/// One reply, ready to be written.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Echo an empty delimiter first (REQ peers).
    pub(crate) envelope: bool,
    /// Echoed request id.
    pub(crate) req_id: Bytes,
    /// Status and position.
    pub(crate) header: ReplyHeader,
    /// `(topic, stamp, payload)` frames.
    pub(crate) messages: Vec<[Bytes; 3]>,
    /// Encoded size of `messages`.
    pub(crate) bytes: usize,
    /// In-flight bytes held while the reply exists (released on drop): of
    /// the global budget, and of the peer address's share of it.
    #[expect(dead_code, reason = "held only for its Drop")]
    pub(crate) held: Option<(Reservation, Option<Reservation>)>,
}

/// Why a write ended the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The peer did not take a write within its deadline.
    #[error("peer stopped reading: a reply write missed its deadline")]
    Stalled,
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes `bytes` (a PONG, say) under the per-write deadline.
pub(crate) async fn write_raw<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), WriteError> {
    put(w, bytes, timeout).await
}

/// Streams `reply` as one multipart message.
pub(crate) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
    timeout: Duration,
) -> Result<(), WriteError> {
    let total = timeout.saturating_add(Duration::from_secs_f64(
        reply.bytes as f64 / MIN_RATE as f64,
    ));
    tokio::time::timeout(total, stream(w, reply, timeout))
        .await
        .unwrap_or(Err(WriteError::Stalled))
}

async fn stream<W: AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
    timeout: Duration,
) -> Result<(), WriteError> {
    let head = reply.header.to_frames();
    let envelope: &[&[u8]] = if reply.envelope { &[&[]] } else { &[] };
    let frames = envelope
        .iter()
        .copied()
        .chain(std::iter::once(&reply.req_id[..]))
        .chain(head.iter().map(|b| &b[..]))
        .chain(reply.messages.iter().flatten().map(|b| &b[..]));
    let count = envelope.len() + 1 + head.len() + 3 * reply.messages.len();
    let mut chunk = Vec::with_capacity(CHUNK.min(reply.bytes + 256));
    for (i, body) in frames.enumerate() {
        encode_frame_header(&mut chunk, body.len(), i + 1 < count);
        if chunk.len() + body.len() <= CHUNK {
            chunk.extend_from_slice(body);
        } else {
            put(w, &chunk, timeout).await?;
            chunk.clear();
            for part in body.chunks(CHUNK) {
                put(w, part, timeout).await?;
            }
        }
        if chunk.len() + MAX_FRAME_HEADER >= CHUNK {
            put(w, &chunk, timeout).await?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        put(w, &chunk, timeout).await?;
    }
    Ok(())
}

async fn put<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), WriteError> {
    match tokio::time::timeout(timeout, w.write_all(bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(WriteError::Stalled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zmtp::encode_multipart;
    use fanfare_protocol::replay::Status;

    fn reply(bodies: &[usize], envelope: bool) -> Reply {
        let messages: Vec<[Bytes; 3]> = bodies
            .iter()
            .map(|&n| {
                let t = Bytes::from_static(b"topic");
                [t, Bytes::from_static(b"st"), Bytes::from(vec![7u8; n])]
            })
            .collect();
        Reply {
            envelope,
            req_id: Bytes::from_static(b"id"),
            header: ReplyHeader {
                status: Status::Ok,
                epoch: 1,
                oldest: 2,
                newest: 3,
                next: 4,
            },
            bytes: messages.iter().flatten().map(|b| b.len() + 9).sum(),
            messages,
            held: None,
        }
    }

    #[tokio::test]
    async fn streamed_bytes_equal_the_whole_encoding() {
        for (bodies, envelope) in [
            (vec![], false),
            (vec![1, 2, 3], true),
            (vec![CHUNK - 40, 10, 3 * CHUNK + 5, 0, CHUNK], false),
        ] {
            let r = reply(&bodies, envelope);
            let mut got = Vec::new();
            write(&mut got, &r, Duration::from_secs(5)).await.unwrap();
            let head = r.header.to_frames();
            let mut refs: Vec<&[u8]> = Vec::new();
            if envelope {
                refs.push(&[]);
            }
            refs.push(&r.req_id);
            refs.extend(head.iter().map(|b| &b[..]));
            refs.extend(r.messages.iter().flatten().map(|b| &b[..]));
            let mut want = Vec::new();
            encode_multipart(&mut want, &refs);
            assert!(got == want, "bodies {bodies:?}");
        }
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_stalls_the_write() {
        let (mut ours, _theirs) = tokio::io::duplex(1024);
        let r = reply(&[100_000], false);
        let e = write(&mut ours, &r, Duration::from_millis(50)).await;
        assert!(matches!(e, Err(WriteError::Stalled)), "{e:?}");
    }

    #[test]
    fn the_in_flight_budget_is_shared_and_released() {
        let pool = InFlight::new(100, CountGauge::default());
        let a = pool.try_reserve(60).unwrap();
        assert!(pool.try_reserve(50).is_none());
        let b = pool.try_reserve(40).unwrap();
        assert_eq!(pool.gauge.get(), 100);
        drop(a);
        // Larger than the whole budget: takes all of it, when alone.
        assert!(pool.try_reserve(1000).is_none());
        drop(b);
        let c = pool.try_reserve(1000).unwrap();
        assert_eq!(c.bytes, 100);
        drop(c);
        assert_eq!(pool.gauge.get(), 0);
    }
}
