//! Accept loop shared by the three ZMTP sockets: connection cap (with
//! eviction of the longest-idle peer), handshake with a deadline, read time
//! bounds, then the socket's own connection handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::liveness::{Activity, ConnTable};
use crate::metrics::{Metrics, SocketCounters};
use crate::zmtp::{handshake, FrameReader, ReadError, SocketKind, Timeouts};

/// A peer must finish greeting and READY within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new peer waits for the slot of the peer it evicted.
const EVICT_WAIT: Duration = Duration::from_secs(2);
/// Most new peers waiting for an evicted peer's slot, per socket (their
/// descriptors are part of `fd_limit::FD_RESERVE`).
const EVICT_WAITERS: usize = 8;

/// A handshaken connection handed to a socket's handler.
pub(crate) struct Conn {
    /// Frame reader on the read half (limit and time bounds already set).
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    /// Write half.
    pub(crate) writer: OwnedWriteHalf,
    /// Peer address.
    pub(crate) peer: SocketAddr,
    /// Progress clock and stop token (eviction): the handler must end soon
    /// after `activity.stop()` is cancelled.
    pub(crate) activity: Arc<Activity>,
}

/// One listening socket and what its connections share.
pub(crate) struct Acceptor {
    /// Bound listener.
    pub(crate) listener: TcpListener,
    /// Which socket this is.
    pub(crate) kind: SocketKind,
    /// Frame size limit after the handshake.
    pub(crate) max_frame: usize,
    /// Most simultaneous connections.
    pub(crate) max_connections: usize,
    /// Read time bounds after the handshake.
    pub(crate) timeouts: Timeouts,
    /// At the cap, a peer idle this long may be evicted for a new one.
    pub(crate) evict_idle: Duration,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Stops accepting.
    pub(crate) shutdown: CancellationToken,
    /// Connection tasks run here.
    pub(crate) tracker: TaskTracker,
}

/// Accepts until `shutdown`; each connection runs `handler` in `tracker`.
/// `handler` returns how the connection ended; read errors are counted.
///
/// At the cap, the longest-idle open connection (nothing read from or
/// written to it for `evict_idle`) is stopped and the new peer takes its
/// slot; when no peer is idle enough the new one is closed at once
/// (`connections_refused_total`).
pub(crate) async fn accept_loop<H, F>(a: Acceptor, handler: H)
where
    H: Fn(Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), ReadError>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(a.max_connections));
    let waiters = Arc::new(Semaphore::new(EVICT_WAITERS));
    let table = Arc::new(ConnTable::default());
    let handler = Arc::new(handler);
    let counters = a.metrics.socket(a.kind);
    counters.limit.set(a.max_connections as u64);
    loop {
        let (stream, peer) = tokio::select! {
            _ = a.shutdown.cancelled() => break,
            r = a.listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(socket = a.kind.label(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match limit.clone().try_acquire_owned() {
            Ok(p) => Slot::Free(p),
            Err(_) => match waiters.clone().try_acquire_owned() {
                Ok(w) if table.evict_idlest(a.evict_idle) => {
                    counters.evicted.inc();
                    Slot::Evicted(w)
                }
                _ => {
                    counters.refused.inc();
                    if a.metrics.log_allowed(crate::metrics::LogKind::Connection) {
                        tracing::warn!(socket = a.kind.label(), %peer, "connection limit reached; refusing");
                    }
                    continue;
                }
            },
        };
        counters.accepted.inc();
        let conn = Connection {
            kind: a.kind,
            max_frame: a.max_frame,
            timeouts: a.timeouts,
            metrics: a.metrics.clone(),
            table: table.clone(),
        };
        let (limit, handler) = (limit.clone(), handler.clone());
        a.tracker.spawn(async move {
            let _permit = match slot {
                Slot::Free(p) => p,
                Slot::Evicted(waiting) => {
                    let p = tokio::time::timeout(EVICT_WAIT, limit.acquire_owned()).await;
                    drop(waiting);
                    match p {
                        Ok(Ok(p)) => p,
                        _ => {
                            conn.counters().refused.inc();
                            return;
                        }
                    }
                }
            };
            conn.serve(stream, peer, handler.as_ref()).await;
        });
    }
}

/// How a new connection got its place under the cap.
enum Slot {
    /// A free slot.
    Free(OwnedSemaphorePermit),
    /// It evicted an idle peer and waits for that peer's slot.
    Evicted(OwnedSemaphorePermit),
}

/// What one connection task needs of its socket.
struct Connection {
    kind: SocketKind,
    max_frame: usize,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    table: Arc<ConnTable>,
}

impl Connection {
    fn counters(&self) -> &SocketCounters {
        self.metrics.socket(self.kind)
    }

    /// Handshake, then the handler; counts how the connection ended.
    async fn serve<H, F>(self, stream: TcpStream, peer: SocketAddr, handler: &H)
    where
        H: Fn(Conn) -> F,
        F: Future<Output = Result<(), ReadError>>,
    {
        let kind = self.kind;
        let counters = self.counters();
        let _ = stream.set_nodelay(true);
        let (r, mut writer) = stream.into_split();
        let mut reader = FrameReader::new(r, self.max_frame);
        let shake = handshake(&mut reader, &mut writer, kind, self.max_frame);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                counters.handshake_failed.inc();
                if matches!(
                    e,
                    crate::zmtp::HandshakeError::Read(ReadError::Oversize { .. })
                ) {
                    counters.oversize_frame.inc();
                }
                tracing::debug!(socket = kind.label(), %peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                counters.handshake_failed.inc();
                tracing::debug!(socket = kind.label(), %peer, "handshake timed out");
                return;
            }
        }
        let activity = Activity::new();
        reader.set_timeouts(self.timeouts, activity.clone());
        let key = self.table.insert(activity.clone());
        counters.open.inc();
        let result = handler(Conn {
            reader,
            writer,
            peer,
            activity,
        })
        .await;
        counters.open.dec();
        self.table.remove(key);
        let counter = match &result {
            Ok(()) | Err(ReadError::Io(_)) => None,
            Err(ReadError::Oversize { .. }) => Some(&counters.oversize_frame),
            Err(ReadError::FrameDeadline(_)) => Some(&counters.frame_deadline),
            Err(ReadError::Idle(_)) => Some(&counters.idle),
            Err(ReadError::BadFlags(_) | ReadError::Truncated) => Some(&counters.protocol_error),
        };
        match (result, counter) {
            (Ok(()), _) => tracing::debug!(socket = kind.label(), %peer, "peer left"),
            (Err(e), None) => {
                tracing::debug!(socket = kind.label(), %peer, error = %e, "peer connection failed");
            }
            (Err(e), Some(c)) => {
                c.inc();
                if self
                    .metrics
                    .log_allowed(crate::metrics::LogKind::Connection)
                {
                    tracing::warn!(socket = kind.label(), %peer, error = %e, "peer disconnected");
                }
            }
        }
    }
}
