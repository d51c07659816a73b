//! The subscriber task's data SUB: one ZMTP 3 (NULL mechanism) connection
//! to one broadcaster's PUB, spoken here rather than through zmq.rs.
//!
//! Why: zmq.rs's SUB costs several mutex locks, a boxed future, a waker
//! allocation and a `VecDeque` per message, and allocates whatever a frame
//! header announces. Here a read fills a 64 KiB buffer, whole messages are
//! cut out of it as zero-copy slices ([`frames`]), the task takes every
//! message already buffered in one go ([`SubConn::buffered`]), and every
//! frame header is checked against [`MAX_FRAME`] before its body is waited
//! for. The bytes are those of `broadcaster/src/zmtp/` (client side of a
//! SUB), which the broadcaster's tests and pyzmq interop cover.
//!
//! It does not reconnect by itself: an error or the end of the stream ends
//! the connection, and the task connects a new one with backoff. So a
//! connection is one session (PROTOCOL.md, "Sessions"): it subscribes
//! [`SESSION_TOPIC`] before anything else and counts the subscription
//! commands it writes ([`SubConn::sent`]), which a session marker's count
//! of applied changes is compared with.

mod frames;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use fanfare_protocol::SESSION_TOPIC;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub(crate) use frames::Broadcast;
pub(crate) use frames::FrameError;
use frames::{Frames, Item, GREETING_LEN};

/// One read takes up to this much (and a buffer is allocated per this much).
const READ_CHUNK: usize = 64 * 1024;
/// Largest frame a broadcaster may send: its own payload ceiling (256 MiB,
/// `max-payload`'s upper bound) plus room for a stamp. A header announcing
/// more ends the connection before anything is allocated for it.
pub(crate) const MAX_FRAME: usize = 256 * 1024 * 1024 + 64 * 1024;
/// Largest frame during the handshake (the peer's READY).
const MAX_HANDSHAKE_FRAME: usize = 8 * 1024;
/// Most bytes reserved for one frame before they arrive (a large frame's
/// buffer grows as its bytes come, not at its header's word).
const MAX_RESERVE: usize = 1024 * 1024;
/// A subscription change must be written within this time.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection ended or could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubError {
    /// Not `tcp://host:port`.
    #[error("bad endpoint `{0}` (expected tcp://host:port)")]
    Endpoint(String),
    /// Connect and handshake took longer than the connect timeout.
    #[error("connect and handshake not done within {0:?}")]
    Timeout(Duration),
    /// A subscription change could not be written in time.
    #[error("subscription write stalled for {0:?}")]
    WriteStalled(Duration),
    /// The broadcaster closed the connection.
    #[error("connection closed by the broadcaster")]
    Closed,
    /// A frame-level violation (handshake, size limit, flags).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A connected, handshaken SUB.
pub(crate) struct SubConn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    frames: Frames,
    /// Subscription commands written (a failed write ends the connection).
    sent: u64,
}

impl SubConn {
    /// Connects to `endpoint`, runs the handshake and subscribes `prefixes`,
    /// all within `timeout`.
    pub(crate) async fn connect(
        endpoint: &str,
        prefixes: impl IntoIterator<Item = String>,
        timeout: Duration,
    ) -> Result<SubConn, SubError> {
        let addr = endpoint
            .strip_prefix("tcp://")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| SubError::Endpoint(endpoint.to_owned()))?
            .to_owned();
        let work = async move {
            let stream = TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            let (read, mut write) = stream.into_split();
            let mut hello = frames::greeting().to_vec();
            hello.extend_from_slice(&frames::ready());
            write.write_all(&hello).await?;
            let mut conn = SubConn {
                read,
                write,
                frames: Frames::new(MAX_HANDSHAKE_FRAME),
                sent: 0,
            };
            while conn.frames.buf.len() < GREETING_LEN {
                if conn.read.read_buf(&mut conn.frames.buf).await? == 0 {
                    return Err(SubError::Closed);
                }
            }
            frames::check_greeting(&conn.frames.buf[..GREETING_LEN])?;
            conn.frames.buf.advance(GREETING_LEN);
            let ready = loop {
                match conn.frames.next()? {
                    Some(Item::Command(body)) => break body,
                    Some(_) => return Err(FrameError::Handshake("a message before READY").into()),
                    None => conn.read_some().await?,
                }
            };
            frames::check_ready(&ready)?;
            conn.frames.set_limit(MAX_FRAME);
            // Sessions first: the marker precedes every message.
            let mut subs = frames::subscription(SESSION_TOPIC, true);
            conn.sent = 1;
            for p in prefixes {
                subs.extend_from_slice(&frames::subscription(&p, true));
                conn.sent += 1;
            }
            conn.write.write_all(&subs).await?;
            Ok(conn)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| SubError::Timeout(timeout))?
    }

    /// Subscribes (`true`) or cancels `prefix`.
    pub(crate) async fn set(&mut self, prefix: &str, subscribe: bool) -> Result<(), SubError> {
        let msg = frames::subscription(prefix, subscribe);
        self.sent += 1;
        tokio::time::timeout(WRITE_TIMEOUT, self.write.write_all(&msg))
            .await
            .map_err(|_| SubError::WriteStalled(WRITE_TIMEOUT))??;
        Ok(())
    }

    /// Subscription commands written on this connection ([`SESSION_TOPIC`]
    /// included).
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// The next broadcast already in the buffer, without reading; other
    /// messages and commands are skipped (a PUB sends neither; a PING is
    /// not answered: broadcasters do not ping).
    pub(crate) fn buffered(&mut self) -> Result<Option<Broadcast>, SubError> {
        loop {
            match self.frames.next()? {
                None => return Ok(None),
                Some(Item::Broadcast(m)) => return Ok(Some(m)),
                Some(Item::Other(n)) => {
                    tracing::debug!(frames = n, "skipping a message that is not a broadcast");
                }
                Some(Item::Command(_)) => {}
            }
        }
    }

    /// The next broadcast, reading as needed. Cancel-safe: what was read
    /// stays buffered.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Broadcast, SubError>> {
        loop {
            if let Some(m) = self.buffered()? {
                return Poll::Ready(Ok(m));
            }
            self.reserve();
            let read = pin!(self.read.read_buf(&mut self.frames.buf));
            match read.poll(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(SubError::Closed)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Makes room for the next read: a whole chunk, or what a large frame
    /// still needs (at most [`MAX_RESERVE`] at a time).
    fn reserve(&mut self) {
        let missing = self.frames.missing;
        let spare = self.frames.buf.capacity() - self.frames.buf.len();
        if spare < (READ_CHUNK / 4).max(missing.min(MAX_RESERVE)) {
            self.frames
                .buf
                .reserve(missing.clamp(READ_CHUNK, MAX_RESERVE));
        }
    }

    async fn read_some(&mut self) -> Result<(), SubError> {
        self.reserve();
        match self.read.read_buf(&mut self.frames.buf).await? {
            0 => Err(SubError::Closed),
            _ => Ok(()),
        }
    }
}
